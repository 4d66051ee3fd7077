// mbx-test-timeout: 60
/*
 * Issue 18 item 1: a thread with a pthread_cancel pending that reaches no
 * cancellation point and returns normally runs its exit drain with the
 * cancel still armed. Every cancel function here calls usleep (a
 * cancellation point); the drain must still cancel all QUEUED messages
 * (today the first usleep unwinds the thread out of the drain: canceled=1,
 * pending stays QUEUED-1).
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>


enum { QUEUED = 10 };

static _Atomic int g_go, g_started, g_run, g_canceled;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_run, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_canceled, 1);
  sleep_ms(0.1); /* nanosleep: a cancellation point */
}

/* Part 2: the first cancel function ends the thread (pthread_exit): the
 * close resumes from a cleanup handler and cancels the rest. */
static _Atomic int g_exit_canceled, g_exited_once;
static void cancel_and_exit(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_exit_canceled, 1);
  if (!atomic_exchange(&g_exited_once, 1))
    pthread_exit(NULL);
}
static void *idle_target(void *arg) {
  (void)arg;
  atomic_store(&g_started, 2);
  while (!atomic_load(&g_go)) {
  }
  return NULL;
}

static void *target(void *arg) {
  (void)arg;
  atomic_store(&g_started, 1);
  while (!atomic_load(&g_go)) { /* no cancellation point */
  }
  return NULL; /* returns normally, cancel still pending */
}

int main(void) {
  watchdog_start(30000, "cancel_pending_exit");
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, target, NULL), 0);
  mbx_handle h = mbx_thread_handle(t);
  CHECK(!mbx_handle_is_null(h));
  CHECK_EQ(mbx_hold(h), MBX_OK); /* keep its counters readable */
  for (int i = 0; i < QUEUED; i++)
    CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
  wait_for_count(&g_started, 1);
  CHECK_EQ(pthread_cancel(t), 0);
  atomic_store(&g_go, 1);
  pthread_join(t, NULL);
  mbx_stats s;
  CHECK_EQ(mbx_stats_get(h, &s), MBX_OK);
  printf("accepted=%d run=%d canceled=%d pending=%llu\n", QUEUED,
         atomic_load(&g_run), atomic_load(&g_canceled),
         (unsigned long long)s.pending);
  CHECK_EQ(atomic_load(&g_run) + atomic_load(&g_canceled), QUEUED);
  CHECK_EQ(s.pending, 0);
  CHECK_EQ(mbx_release(h), MBX_OK);
  /* Part 2. */
  atomic_store(&g_go, 0);
  CHECK_EQ(pthread_create(&t, NULL, idle_target, NULL), 0);
  h = mbx_thread_handle(t);
  CHECK_EQ(mbx_hold(h), MBX_OK);
  for (int i = 0; i < QUEUED; i++)
    CHECK_EQ(mbx_send(h, on_run, cancel_and_exit, NULL), MBX_OK);
  wait_for_count(&g_started, 2);
  atomic_store(&g_go, 1);
  pthread_join(t, NULL);
  CHECK_EQ(mbx_stats_get(h, &s), MBX_OK);
  printf("pthread_exit in a cancel function: canceled=%d pending=%llu\n",
         atomic_load(&g_exit_canceled), (unsigned long long)s.pending);
  CHECK_EQ(atomic_load(&g_exit_canceled), QUEUED);
  CHECK_EQ(s.pending, 0);
  CHECK_EQ(s.canceled, QUEUED);
  CHECK_EQ(mbx_release(h), MBX_OK);
  printf("PASS cancel_pending_exit\n");
  return 0;
}
