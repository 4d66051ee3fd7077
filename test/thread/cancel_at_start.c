// mbx-test-timeout: 60
/*
 * A thread canceled before its mailbox's exit handler is installed (a
 * pthread_cancel right after pthread_create, which on Emscripten acts at
 * the first futex wait, a contended lock while the thread binds) must
 * still close its mailbox when it ends: a message sent to it right after
 * creation is canceled (MBX_CANCEL_THREAD_EXIT) on the thread, sends after
 * the join are refused, and no mailbox stays open. Before the fix the
 * thread ended there with its mailbox open for good, and torture found
 * mbx_thread_handle() of a later thread that got the same pthread_t
 * naming that dead mailbox (5.0.7 wasm-asan). A test hook
 * (pthread/thread_hooks.c) stops the new thread in that window and then
 * reaches a cancellation point there, so the race is hit every time.
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_start_stall_ms(int ms, _Atomic int *reached);

static _Atomic int g_ran, g_canceled, g_reason, g_started;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  atomic_store(&g_reason, reason);
  atomic_fetch_add(&g_canceled, 1);
}

/* Ends at its cancellation point: the cancel was sent while it started. */
static void *target(void *arg) {
  (void)arg;
  atomic_store(&g_started, 1);
  for (;;)
    pthread_testcancel();
  return NULL;
}

static uint32_t open_mailboxes(void) {
  uint32_t n = 0;
  CHECK_EQ(mbx_mailboxes_list(NULL, 0, &n), MBX_OK);
  return n;
}

int main(void) {
  watchdog_start(30000, "cancel_at_start");
  uint32_t before = open_mailboxes();
  for (int round = 0; round < 5; round++) {
    atomic_store(&g_ran, 0);
    atomic_store(&g_canceled, 0);
    atomic_store(&g_reason, 0);
    atomic_store(&g_started, 0);
    _Atomic int reached = 0;
    mbx__test_start_stall_ms(50, &reached);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, target, NULL), 0);
    mbx_handle h = mbx_thread_handle(t);
    CHECK(!mbx_handle_is_null(h));
    CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
    wait_for_count(&reached, 1);
    CHECK_EQ(pthread_cancel(t), 0);
    void *result = NULL;
    CHECK_EQ(pthread_join(t, &result), 0);
    CHECK(result == PTHREAD_CANCELED);
    /* The start routine ran: the cancel waited for the handler. */
    CHECK_EQ(atomic_load(&g_started), 1);
    /* Its exit canceled the message on the thread, once. */
    CHECK_EQ(atomic_load(&g_ran), 0);
    CHECK_EQ(atomic_load(&g_canceled), 1);
    CHECK_EQ(atomic_load(&g_reason), MBX_CANCEL_THREAD_EXIT);
    int rc = mbx_send(h, on_run, on_cancel, NULL);
    CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
    CHECK_EQ(open_mailboxes(), before);
  }
  printf("PASS cancel_at_start: 5 threads canceled while they started, each "
         "closed its mailbox\n");
  return 0;
}
