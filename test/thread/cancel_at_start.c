// mbx-test-timeout: 60
/*
 * A thread canceled while it starts must not leave its mailbox open. Two
 * windows, each hit every time by a test hook (pthread/thread_hooks.c)
 * that puts a cancellation point there; the cancel is sent right after
 * pthread_create, as a message is:
 *
 * 1. Before its mailbox's exit handler is installed (on Emscripten 5.x the
 *    first futex wait acts on the cancel, such as a contended lock while
 *    the thread binds). The thread must still close its mailbox as it
 *    ends: the message is canceled on the thread with
 *    MBX_CANCEL_THREAD_EXIT. Before the fix the thread ended there with its
 *    mailbox open for good, and torture found mbx_thread_handle() of a
 *    later thread that got the same pthread_t naming that dead mailbox
 *    (5.0.7 wasm-asan).
 * 2. Before its start routine runs at all (Emscripten only: under ASan on
 *    5.x the sanitizer's own thread start waits on its locks first; natively
 *    no cancellation point comes before the start routine). No code of the
 *    library ran on the thread, so its mailbox is closed on the main thread
 *    when Emscripten takes the worker back (the join): the message is
 *    canceled there with MBX_CANCEL_ABNORMAL_EXIT. Before, that mailbox
 *    stayed open for good (torture, 5.0.7 wasm-asan under load: a later
 *    thread's handle named it).
 *
 * Either way the message is canceled once, later sends are refused, no
 * mailbox stays open, and the next thread's handle is its own.
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_start_stall_ms(int ms, _Atomic int *reached);
void mbx__test_prestart_point_ms(int ms, _Atomic int *reached);

static _Atomic int g_ran, g_canceled, g_reason, g_cancel_on_main, g_started;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  atomic_store(&g_reason, reason);
  atomic_store(&g_cancel_on_main,
               mbx_handle_equal(mbx_self(), mbx_main_thread()));
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
static void *plain(void *arg) { return arg; }

static uint32_t open_mailboxes(void) {
  uint32_t n = 0;
  CHECK_EQ(mbx_mailboxes_list(NULL, 0, &n), MBX_OK);
  return n;
}

/* One thread canceled in window 1 (before_start 0) or 2 (1). */
static void cancel_while_starting(int before_start) {
  uint32_t before = open_mailboxes();
  atomic_store(&g_ran, 0);
  atomic_store(&g_canceled, 0);
  atomic_store(&g_reason, 0);
  atomic_store(&g_cancel_on_main, -1);
  atomic_store(&g_started, 0);
  _Atomic int reached = 0;
  if (before_start)
    mbx__test_prestart_point_ms(10000, &reached);
  else
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
  /* 1: the start routine ran, the cancel waited for the exit handler;
   * 2: it never ran. */
  CHECK_EQ(atomic_load(&g_started), !before_start);
  /* Canceled once: on the thread by its exit, or on main (joining it). */
  CHECK_EQ(atomic_load(&g_ran), 0);
  CHECK_EQ(atomic_load(&g_canceled), 1);
  CHECK_EQ(atomic_load(&g_reason),
           before_start ? MBX_CANCEL_ABNORMAL_EXIT : MBX_CANCEL_THREAD_EXIT);
  CHECK_EQ(atomic_load(&g_cancel_on_main), before_start);
  int rc = mbx_send(h, on_run, on_cancel, NULL);
  CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  CHECK_EQ(open_mailboxes(), before);
  /* The next thread (often given the same pthread_t) has its own. */
  pthread_t next;
  CHECK_EQ(pthread_create(&next, NULL, plain, NULL), 0);
  CHECK(!mbx_handle_equal(mbx_thread_handle(next), h));
  CHECK_EQ(pthread_join(next, NULL), 0);
}

int main(void) {
  watchdog_start(30000, "cancel_at_start");
  for (int round = 0; round < 5; round++)
    cancel_while_starting(0);
#ifdef __EMSCRIPTEN__
  for (int round = 0; round < 5; round++)
    cancel_while_starting(1);
  printf("PASS cancel_at_start: 5 threads canceled before their exit "
         "handler was installed closed their mailboxes; 5 canceled before "
         "their start routine ran had theirs closed on main when joined\n");
#else
  printf("PASS cancel_at_start: 5 threads canceled before their exit "
         "handler was installed closed their mailboxes\n");
#endif
  return 0;
}
