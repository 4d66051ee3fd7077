/*
 * Broadcast latency (issue 14): time for one mbx_broadcast of an empty
 * function to N idle threads (N = 4, 16, 64; each sleeping in mbx_wait)
 * to return, against the same work done as a loop of mbx_proxy_sync calls,
 * one thread after another. Prints
 *   RESULT broadcast-<N> broadcast <us> us
 *   RESULT broadcast-<N> sync-loop <us> us
 *   RATIO broadcast-<N> <sync-loop / broadcast>   (> 1: broadcast faster)
 * Where <emscripten/proxying.h> exists (5.0.7), also against upstream's
 * dlsync-style per-thread proxying: what _emscripten_dlsync_threads does,
 * one emscripten_proxy_sync on the system queue per thread, in turn (an
 * idle target runs both from its JS event loop there, natively it sleeps
 * in mbx_wait):
 *   RESULT broadcast-<N> upstream-sync-loop <us> us
 *   RATIO broadcast-<N>-vs-upstream <upstream / broadcast>
 *
 * Usage: bench_broadcast [--reps R] [--max-threads N]
 */
#include "bench_common.h"

#include <mbx/broadcast.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>
#if defined(__EMSCRIPTEN__) && __has_include(<emscripten/proxying.h>)
#include <emscripten/proxying.h>
#define HAVE_UPSTREAM 1
#endif

static _Atomic int g_stop;
static void noop(void *arg) { (void)arg; }
#ifdef __EMSCRIPTEN__
/* Idle in the JS event loop, where both mbx (Atomics.waitAsync) and
 * Emscripten's system queue (checkMailbox) deliver: a thread asleep in
 * mbx_wait does not run the system queue, so upstream-style proxying to
 * it would never complete. */
static void stop(void *arg) {
  (void)arg;
  pthread_exit(NULL);
}
static void *idle(void *arg) {
  (void)arg;
  BENCH_CHECK(mbx_event_loop_attach() == MBX_OK);
  emscripten_exit_with_live_runtime();
  return NULL;
}
#else
static void stop(void *arg) {
  (void)arg;
  atomic_store_explicit(&g_stop, 1, memory_order_relaxed);
}
static void *idle(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed))
    mbx_wait(-1);
  return NULL;
}
#endif

int main(int argc, char **argv) {
  long reps = arg_long(argc, argv, "--reps", 200);
  long max = arg_long(argc, argv, "--max-threads", 64);
  int upstream = !arg_flag(argc, argv, "--no-upstream");
  setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef __EMSCRIPTEN__
  /* PROXY_TO_PTHREAD: the browser's main thread has a mailbox but sits in
   * its event loop; a broadcast waits for every mailbox, so let that loop
   * serve it (the broadcast then reaches N + 1 threads, the loops N). */
  BENCH_CHECK(emscripten_sync_run_in_main_runtime_thread(
                  EM_FUNC_SIG_I, mbx_event_loop_attach) == MBX_OK);
#endif
  static const int sizes[] = {4, 16, 64};
  for (int s = 0; s < 3 && sizes[s] <= max; s++) {
    int n = sizes[s];
    pthread_t *t = malloc(sizeof *t * (size_t)n);
    mbx_handle *h = malloc(sizeof *h * (size_t)n);
    BENCH_CHECK(t && h);
    atomic_store(&g_stop, 0);
    for (int i = 0; i < n; i++) {
      BENCH_CHECK(pthread_create(&t[i], NULL, idle, NULL) == 0);
      h[i] = mbx_thread_handle(t[i]);
    }
    /* Warm up: every thread has run once and is idle. */
    for (int i = 0; i < n; i++)
      BENCH_CHECK(mbx_proxy_sync(h[i], noop, NULL) == MBX_OK);
    sleep_ms(5);
    double bc = 0, loop = 0, up = 0;
    for (long r = 0; r < reps; r++) {
      sleep_ms(0.2); /* let them fall asleep: idle targets */
      double t0 = now_us();
      mbx_broadcast_report rep;
      BENCH_CHECK(mbx_broadcast(noop, NULL, MBX_BROADCAST_SKIP_SELF, -1, &rep,
                                NULL, 0) == MBX_OK);
      if (!(rep.done == rep.targets && rep.targets >= (uint32_t)n))
        fprintf(stderr,
                "broadcast to %d threads, rep %ld: targets=%u done=%u "
                "exited=%u failed=%u late=%u\n",
                n, r, rep.targets, rep.done, rep.exited, rep.failed, rep.late);
      BENCH_CHECK(rep.done == rep.targets && rep.targets >= (uint32_t)n);
      double t1 = now_us();
      sleep_ms(0.2);
      double t2 = now_us();
      for (int i = 0; i < n; i++)
        BENCH_CHECK(mbx_proxy_sync(h[i], noop, NULL) == MBX_OK);
      double t3 = now_us();
      bc += t1 - t0;
      loop += t3 - t2;
#ifdef HAVE_UPSTREAM
      sleep_ms(0.2);
      double t4 = now_us();
      for (int i = 0; i < n * upstream; i++)
        BENCH_CHECK(emscripten_proxy_sync(emscripten_proxy_get_system_queue(),
                                          t[i], noop, NULL) == 1);
      up += now_us() - t4;
#endif
    }
    bc /= (double)reps;
    loop /= (double)reps;
    char name[32];
    snprintf(name, sizeof name, "broadcast-%d", n);
    result(name, "broadcast", bc, "us");
    result(name, "sync-loop", loop, "us");
    printf("RATIO %s %.2f\n", name, loop / bc);
#ifdef HAVE_UPSTREAM
    up /= (double)reps;
    result(name, "upstream-sync-loop", up, "us");
    printf("RATIO %s-vs-upstream %.2f\n", name, up / bc);
#else
    (void)up;
    (void)upstream;
#endif
    for (int i = 0; i < n; i++)
      mbx_proxy_async(h[i], stop, NULL, NULL);
    for (int i = 0; i < n; i++)
      pthread_join(t[i], NULL);
    free(t);
    free(h);
  }
  printf("DONE\n");
  return 0;
}
