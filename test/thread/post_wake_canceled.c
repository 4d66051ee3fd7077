// mbx-test-flavors: wasm wasm-asan
// mbx-test-timeout: 60
/*
 * A sender canceled while it posts a wakeup must still deliver its
 * message. Without a native Atomics.waitAsync, the first send to an idle
 * event-loop thread posts it a task while the sender is counted in the
 * mailbox's pending (the owner's close waits for such senders). The post
 * allocates and locks, and on Emscripten 5.x a futex wait there is a
 * cancellation point (the allocator's under ASan, for one), so a
 * pthread_cancel could end the sender there: its message counted, never
 * queued, never run, and the owner's close waiting for it for good. A test
 * hook (core/test_hooks.c) stops the sender in its post and reaches a
 * cancellation point there. Before the fix the sender ended there and the
 * message never ran; now the post finishes, the message runs, and the
 * sender ends at its next cancellation point.
 */
#include "watchdog.h"

#ifdef __EMSCRIPTEN__
#include "test_support.h"

#include <emscripten/emscripten.h>
#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_post_delay_ms(double ms, _Atomic int *posting);

static _Atomic int g_ready, g_posting, g_run;
static mbx_handle g_worker;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_run, 1);
}

static void *sender(void *arg) {
  (void)arg;
  mbx__test_post_delay_ms(100, &g_posting);
  CHECK_EQ(mbx_send(g_worker, on_run, NULL, NULL), MBX_OK);
  for (;;)
    pthread_testcancel();
  return NULL;
}

int main(void) {
  watchdog_start(30000, "post_wake_canceled");
  pthread_t w;
  CHECK_EQ(pthread_create(&w, NULL, test_posted_event_loop_thread, &g_ready),
           0);
  g_worker = mbx_thread_handle(w);
  wait_for_count(&g_ready, 1);
  sleep_ms(20); /* the worker is back in its event loop, idle */
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_posting, 0);
    pthread_t s;
    CHECK_EQ(pthread_create(&s, NULL, sender, NULL), 0);
    wait_for_count(&g_posting, 1);
    CHECK_EQ(pthread_cancel(s), 0);
    void *result = NULL;
    CHECK_EQ(pthread_join(s, &result), 0);
    CHECK(result == PTHREAD_CANCELED);
    wait_for_count(&g_run, round + 1);
    test_wait_drained(g_worker);
    mbx_stats st;
    CHECK_EQ(mbx_stats_get(g_worker, &st), MBX_OK);
    CHECK_EQ(st.pending, 0);
  }
  printf("PASS post_wake_canceled: 3 senders canceled while posting a "
         "wakeup; each message ran\n");
  emscripten_force_exit(0);
  return 0;
}
#else
int main(void) {
  printf("PASS post_wake_canceled (Emscripten only)\n");
  return 0;
}
#endif
