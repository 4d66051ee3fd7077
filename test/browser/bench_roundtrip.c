/*
 * Round trips to and from the main thread's event loop, the same program
 * under Node and on a web page (js/bench-browser.mjs runs both and prints
 * the ratios):
 * - callback: main -> event-loop worker -> main (mbx_proxy_callback from
 *   main, its on_done starting the next);
 * - sync: a pthread blocked in mbx_proxy_sync to main, served from main's
 *   event loop.
 * Each is warmed up, then timed for --ms milliseconds (default 500).
 * --hide-wait-async: main and both pthreads hide Atomics.waitAsync before
 * attaching (mbx then posts wakeups), in Node and in a page alike.
 * Prints "BENCH callback_us=<per round trip> sync_us=<per call> ..." and
 * PASS.
 */
#include "../support/check.h"

#include <emscripten/emscripten.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

int mbx_test_hide_wait_async(void); /* test/support/test_support.js */

enum { WARMUP = 200 };

static int g_hide;
static double g_ms = 500;
static mbx_handle g_main_h, g_worker_h;
static long g_cb_count;
static double g_cb_start, g_cb_us, g_sync_us;
static long g_sync_count;

static void nop(void *arg) { (void)arg; }

static void *worker_main(void *arg) {
  (void)arg;
  if (g_hide)
    CHECK_EQ(mbx_test_hide_wait_async(), 1);
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  emscripten_exit_with_live_runtime();
  return NULL;
}

static void finish(void *arg) {
  (void)arg;
  printf("BENCH callback_us=%.3f sync_us=%.3f callbacks=%ld syncs=%ld "
         "wait_async=%s\n",
         g_cb_us, g_sync_us, g_cb_count, g_sync_count,
         g_hide ? "hidden" : "native");
  printf("PASS bench_roundtrip\n");
  fflush(stdout);
  emscripten_force_exit(0);
}

static void *syncer_main(void *arg) {
  (void)arg;
  if (g_hide)
    CHECK_EQ(mbx_test_hide_wait_async(), 1);
  for (int i = 0; i < WARMUP; i++)
    CHECK_EQ(mbx_proxy_sync(g_main_h, nop, NULL), MBX_OK);
  double start = emscripten_get_now(), now;
  long n = 0;
  do {
    for (int i = 0; i < 20; i++, n++)
      CHECK_EQ(mbx_proxy_sync(g_main_h, nop, NULL), MBX_OK);
    now = emscripten_get_now();
  } while (now - start < g_ms);
  g_sync_count = n;
  g_sync_us = (now - start) * 1000.0 / (double)n;
  CHECK_EQ(mbx_proxy_async(g_main_h, finish, NULL, NULL), MBX_OK);
  return NULL;
}

/* On main: one round trip is over; start the next, or the sync phase. */
static void on_done(void *arg) {
  (void)arg;
  long n = ++g_cb_count;
  if (n == WARMUP)
    g_cb_start = emscripten_get_now();
  double elapsed = n > WARMUP ? emscripten_get_now() - g_cb_start : 0;
  if (elapsed < g_ms) {
    CHECK_EQ(mbx_proxy_callback(g_worker_h, nop, on_done, NULL, NULL), MBX_OK);
    return;
  }
  g_cb_count = n - WARMUP;
  g_cb_us = elapsed * 1000.0 / (double)g_cb_count;
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, syncer_main, NULL), 0);
  CHECK_EQ(pthread_detach(t), 0);
}

int main(int argc, char **argv) {
  g_hide = arg_flag(argc, argv, "--hide-wait-async");
  g_ms = (double)arg_long(argc, argv, "--ms", 500);
  if (g_hide)
    CHECK_EQ(mbx_test_hide_wait_async(), 1);
  g_main_h = mbx_main_thread();
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  pthread_t w;
  CHECK_EQ(pthread_create(&w, NULL, worker_main, NULL), 0);
  CHECK_EQ(pthread_detach(w), 0);
  g_worker_h = mbx_thread_handle(w);
  /* Queued until the worker attaches: the first round trip. */
  CHECK_EQ(mbx_proxy_callback(g_worker_h, nop, on_done, NULL, NULL), MBX_OK);
  emscripten_exit_with_live_runtime();
  return 99;
}
