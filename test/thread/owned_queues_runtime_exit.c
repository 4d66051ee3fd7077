// mbx-test-timeout: 60
/*
 * Queues of one's own at runtime exit: main calls exit() while a thread
 * sleeps in mbx_queue_wait(q, -1) and owns a second queue with messages
 * queued, and main owns a queue with messages queued. The runtime exit
 * closes every queue with the other mailboxes (on main, with
 * MBX_CANCEL_RUNTIME_EXIT), wakes the waiter, whose mbx_queue_wait returns
 * MBX_ECLOSED, and main's own exit then drops its queue's hold. A check
 * registered before the library's handler runs after it.
 */
#include "check.h"

#include <mbx/queue.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <stdatomic.h>

static pthread_t g_main;
static _Atomic int g_cancels, g_bad, g_runs, g_ready, g_wait_rc = 1;
static mbx_handle g_waited, g_other, g_mine;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_runs, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  if (reason != MBX_CANCEL_RUNTIME_EXIT ||
      !pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_bad, 1);
  atomic_fetch_add(&g_cancels, 1);
}

static void *waiter(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_queue_create(&g_waited), MBX_OK);
  CHECK_EQ(mbx_queue_create(&g_other), MBX_OK);
  atomic_store(&g_ready, 1);
  atomic_store(&g_wait_rc, mbx_queue_wait(g_waited, -1));
  for (;;) /* not its own exit: the runtime exit closes g_other */
    sleep_ms(1000);
  return NULL;
}

static void after_runtime_exit(void) {
  for (int i = 0; i < 5000 && atomic_load(&g_wait_rc) == 1; i++)
    sleep_ms(1);
  CHECK_EQ(atomic_load(&g_wait_rc), MBX_ECLOSED);
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_cancels), 5);
  CHECK_EQ(atomic_load(&g_bad), 0);
  CHECK_EQ(mbx_send(g_waited, on_run, NULL, NULL), MBX_ECLOSED);
  CHECK_EQ(mbx_send(g_other, on_run, NULL, NULL), MBX_ECLOSED);
  int rc = mbx_send(g_mine, on_run, NULL, NULL);
  CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  printf("runtime exit: a thread asleep in mbx_queue_wait woken with "
         "MBX_ECLOSED; 5 messages of 2 queues canceled on main with "
         "MBX_CANCEL_RUNTIME_EXIT\n");
  printf("PASS owned_queues_runtime_exit\n");
  fflush(stdout);
}

/* Registered before the library's own handler (its constructor has the
 * default priority), so it runs after it. */
__attribute__((constructor(101))) static void register_check(void) {
  atexit(after_runtime_exit);
}

int main(void) {
  g_main = pthread_self();
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, waiter, NULL), 0);
  while (!atomic_load(&g_ready))
    sleep_ms(1);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mbx_send(g_other, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_queue_create(&g_mine), MBX_OK);
  for (int i = 0; i < 2; i++)
    CHECK_EQ(mbx_send(g_mine, on_run, on_cancel, NULL), MBX_OK);
  sleep_ms(20); /* the waiter is asleep */
  exit(0);
}
