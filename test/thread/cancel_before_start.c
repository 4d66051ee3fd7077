// mbx-test-flavors: wasm wasm-asan
// mbx-test-timeout: 60
/*
 * A thread canceled before its start routine runs at all (on Emscripten 5.x
 * under ASan the sanitizer's thread start waits on its locks first, and any
 * futex wait there acts on a pthread_cancel sent right after
 * pthread_create) never binds the mailbox its creator opened, and no exit
 * path of its own closes it. The library closes it on the main thread when
 * Emscripten takes the worker back (the join): the message sent to it is
 * canceled once with MBX_CANCEL_ABNORMAL_EXIT, later sends are refused, no
 * mailbox stays open, and a later thread is never handed the dead one's
 * mailbox by mbx_thread_handle(). Before, that mailbox stayed open for good
 * and torture (5.0.7 wasm-asan, under load) saw a later thread's handle
 * name it. A test hook (pthread/thread_hooks.c) puts cancellation points
 * before the start routine, so the window is hit every time, on 3.1.6
 * too. Natively there is no such window (no cancellation point precedes
 * the start routine), hence Emscripten only.
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

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

static void *never_started(void *arg) {
  (void)arg;
  atomic_store(&g_started, 1);
  return NULL;
}
static void *plain(void *arg) { return arg; }

static uint32_t open_mailboxes(void) {
  uint32_t n = 0;
  CHECK_EQ(mbx_mailboxes_list(NULL, 0, &n), MBX_OK);
  return n;
}

int main(void) {
  watchdog_start(30000, "cancel_before_start");
  uint32_t before = open_mailboxes();
  for (int round = 0; round < 5; round++) {
    atomic_store(&g_ran, 0);
    atomic_store(&g_canceled, 0);
    atomic_store(&g_reason, 0);
    atomic_store(&g_cancel_on_main, 0);
    _Atomic int reached = 0;
    mbx__test_prestart_point_ms(10000, &reached);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, never_started, NULL), 0);
    mbx_handle h = mbx_thread_handle(t);
    CHECK(!mbx_handle_is_null(h));
    CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
    wait_for_count(&reached, 1);
    CHECK_EQ(pthread_cancel(t), 0);
    void *result = NULL;
    CHECK_EQ(pthread_join(t, &result), 0);
    CHECK(result == PTHREAD_CANCELED);
    CHECK_EQ(atomic_load(&g_started), 0); /* ended before its routine */
    /* The join reclaimed the worker: the message was canceled, once, on
     * main, as for a thread that died without its exit path. */
    CHECK_EQ(atomic_load(&g_ran), 0);
    CHECK_EQ(atomic_load(&g_canceled), 1);
    CHECK_EQ(atomic_load(&g_reason), MBX_CANCEL_ABNORMAL_EXIT);
    CHECK_EQ(atomic_load(&g_cancel_on_main), 1);
    int rc = mbx_send(h, on_run, on_cancel, NULL);
    CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
    CHECK_EQ(open_mailboxes(), before);
    /* The next thread (often given the same pthread_t) has its own. */
    pthread_t next;
    CHECK_EQ(pthread_create(&next, NULL, plain, NULL), 0);
    mbx_handle next_h = mbx_thread_handle(next);
    CHECK(!mbx_handle_equal(next_h, h));
    CHECK_EQ(pthread_join(next, NULL), 0);
  }
  printf("PASS cancel_before_start: 5 threads canceled before their start "
         "routine ran; each one's mailbox was closed when it was joined, "
         "its message canceled once on main\n");
  return 0;
}
