/*
 * JS promise round trips (<mbx/promise.h>): from the Node main thread, in
 * its event loop, to a worker in its event loop, beside the callback form
 * they are built on. Contenders are interleaved inside each repetition and
 * each prints one RESULT line (bench_common.h):
 *   js-rt-event-loop  mbx-promise    await Module.mbxCall(...), one at a
 *                                    time: microseconds per round trip
 *                     mbx-callback   mbx_proxy_callback whose on_done (on
 *                                    the main thread's drain) sends the next
 *   js-batch-event-loop mbx-promise  Promise.all of 64 Module.mbxCall at a
 *                                    time: microseconds per call
 * main() runs on a pthread (PROXY_TO_PTHREAD, as every benchmark here):
 * it starts the driver on the main browser thread, which ends the process.
 * wasm only. Usage: bench_promise [--reps R] [--rts K]
 */
#include "bench_common.h"

#include <mbx/promise.h>
#include <mbx/thread.h>
#include <pthread.h>

#ifdef __EMSCRIPTEN__
static mbx_handle g_loop;
static completion g_loop_ready, g_done;
static long g_reps, g_rts;

static void *loop_main(void *unused) {
  (void)unused;
  BENCH_CHECK(mbx_event_loop_attach() == MBX_OK);
  g_loop = mbx_self();
  completion_signal(&g_loop_ready);
  emscripten_exit_with_live_runtime();
  return NULL;
}

static void *nothing(void *arg) { return arg; }
static void nothing_run(void *arg) { (void)arg; }

/* The callback contender: a chain of g_rts round trips. */
static long g_cb_left;
void bench_callback_done(void); /* EM_JS below */
static void cb_next(void *arg);
static void cb_start(void) {
  BENCH_CHECK(mbx_proxy_callback(g_loop, nothing_run, cb_next, NULL, NULL) ==
              MBX_OK);
}
static void cb_next(void *arg) {
  (void)arg;
  if (--g_cb_left > 0)
    cb_start();
  else
    bench_callback_done();
}
EMSCRIPTEN_KEEPALIVE void bench_callback_chain(long n) {
  g_cb_left = n;
  cb_start();
}
/* From the main thread's drain, where emscripten_force_exit may unwind. */
static void exit_on_main(void *unused) {
  (void)unused;
  printf("DONE\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
EMSCRIPTEN_KEEPALIVE void bench_finished(void) {
  BENCH_CHECK(mbx_proxy_async(mbx_self(), exit_on_main, NULL, NULL) == MBX_OK);
}

// clang-format off
EM_JS(void, bench_callback_done, (void), {
  var r = Module.benchCallbackResolve;
  Module.benchCallbackResolve = null;
  r();
});

EM_JS(void, bench_drive, (uint32_t lo, uint32_t hi, int fn, int reps, int rts), {
  runtimeKeepalivePush();
  var target = Module.mbxHandle(lo, hi);
  var now = function() { return performance.now() * 1000; };
  async function promiseRts() {
    var t0 = now();
    for (var i = 0; i < rts; i++) await Module.mbxCall(target, fn, 0);
    return (now() - t0) / rts;
  }
  async function callbackRts() {
    var t0 = now();
    await new Promise(function(resolve) {
      Module.benchCallbackResolve = resolve;
      _bench_callback_chain(rts);
    });
    return (now() - t0) / rts;
  }
  async function batch() {
    var n = 0, t0 = now();
    while (n < rts * 4) {
      var ps = [];
      for (var i = 0; i < 64; i++) ps.push(Module.mbxCall(target, fn, 0));
      await Promise.all(ps);
      n += 64;
    }
    return (now() - t0) / n;
  }
  (async function() {
    await promiseRts(); await callbackRts(); await batch(); /* warm up */
    for (var r = 0; r < reps; r++) {
      var order = r % 2 ? ['callback', 'promise'] : ['promise', 'callback'];
      for (var k = 0; k < 2; k++) {
        var us = order[k] == 'promise' ? await promiseRts() : await callbackRts();
        console.log('RESULT js-rt-event-loop mbx-' + order[k] + ' ' + us.toFixed(3) + ' us');
      }
      console.log('RESULT js-batch-event-loop mbx-promise ' + (await batch()).toFixed(3) + ' us');
    }
    _bench_finished();
  })();
});
// clang-format on

/* On the main browser thread. Attaching holds no runtime keepalive there,
 * and with PROXY_TO_PTHREAD nothing else does: the first drain would end
 * the runtime (callUserCallback's maybeExit), so the driver holds one
 * (runtimeKeepalivePush is in the build: src/mbx.js depends on it). */
static void start_on_main(void) {
  BENCH_CHECK(mbx_event_loop_attach() == MBX_OK);
  bench_drive((uint32_t)g_loop.bits, (uint32_t)(g_loop.bits >> 32),
              (int)(uintptr_t)nothing, (int)g_reps, (int)g_rts);
}

int main(int argc, char **argv) {
  g_reps = arg_long(argc, argv, "--reps", 9);
  g_rts = arg_long(argc, argv, "--rts", 2000);
  completion_reset(&g_loop_ready);
  completion_reset(&g_done);
  pthread_t t;
  BENCH_CHECK(pthread_create(&t, NULL, loop_main, NULL) == 0);
  completion_wait(&g_loop_ready);
  emscripten_async_run_in_main_runtime_thread(EM_FUNC_SIG_V, start_on_main);
  completion_wait(&g_done); /* never: the driver ends the process */
  return 1;
}
#else
int main(void) {
  printf("bench_promise: wasm only\nDONE\n");
  return 0;
}
#endif
