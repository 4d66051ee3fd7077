// mbx-test-timeout: 120
// mbx-test-args-wasm-asan: --threads 60
// (Emscripten < 3.1.14 under ASan leaks each exited thread's stack: 300
//  threads ran 3.1.6 out of memory.)
/*
 * Issue 17: a quick sync call (the caller's spin saw the outcome) that
 * returned stays parked, its caller's reference kept until the thread's
 * next call drops it (once that call's work is sent, while the target
 * works) or until the thread exits; and it is never counted live. Pinned:
 * - the allocator's live allocations stay flat over hundreds of caller
 *   threads, each exiting with a call parked: the exit frees it (with the
 *   unpark left out of the exit, each thread leaked its record and its
 *   reply node's block: 622 live allocations after 300 threads, 28 after
 *   the warm-up);
 * - sync_done counts every call, quick or not, and calls_live returns to
 *   0 after each one;
 * - a call abandoned by its timeout (not quick: never parked) counts live
 *   while its work waits in the target's queue, across the caller's next
 *   call, and the count returns to 0 once the target drops the last
 *   reference.
 */
#include "proxy_util.h"
#include "watchdog.h"

static _Atomic long g_live_allocs;
static void *counting_alloc(size_t size, void *ctx) {
  (void)ctx;
  void *p = malloc(size);
  if (p)
    atomic_fetch_add(&g_live_allocs, 1);
  return p;
}
static void counting_free(void *ptr, void *ctx) {
  (void)ctx;
  if (ptr)
    atomic_fetch_sub(&g_live_allocs, 1);
  free(ptr);
}

static void nothing(void *arg) { (void)arg; }

#define CALLS_PER_THREAD 20
#define WARM_THREADS 20

static mbx_handle g_server;
static void *caller(void *unused) {
  (void)unused;
  for (int i = 0; i < CALLS_PER_THREAD; i++) {
    CHECK_EQ(mbx_proxy_sync(g_server, nothing, NULL), MBX_OK);
    await_calls_live(0);
  }
  return NULL; /* exits with its last call parked */
}

/* Holds the server until released. */
static _Atomic int g_release;
static void hold(void *unused) {
  (void)unused;
  await_int(&g_release, 1);
}

static void *timed_caller(void *other_server) {
  /* The server is held: the work waits in its queue, and the timeout
   * abandons it; the queue still holds its reference. */
  CHECK_EQ(mbx_proxy_sync_timed(g_server, nothing, NULL, 5), MBX_ETIMEDOUT);
  await_calls_live(1);
  /* A quick call elsewhere, which unparks what the thread parked. */
  CHECK_EQ(mbx_proxy_sync(*(mbx_handle *)other_server, nothing, NULL), MBX_OK);
  await_calls_live(1);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, "--threads", 300);
  CHECK_EQ(mbx_set_allocator(counting_alloc, counting_free, NULL), MBX_OK);
  watchdog_start(100000, "proxy_parked");
  pthread_t server;
  g_server = start_server(&server);
  mbx_proxy_stats before, after;
  mbx_proxy_stats_get(&before);

  long warm_high = 0, late_high = 0;
  for (int t = 0; t < WARM_THREADS + threads; t++) {
    pthread_t c;
    CHECK_EQ(pthread_create(&c, NULL, caller, NULL), 0);
    CHECK_EQ(pthread_join(c, NULL), 0);
    long live = atomic_load(&g_live_allocs);
    if (t < WARM_THREADS)
      warm_high = live > warm_high ? live : warm_high;
    else
      late_high = live > late_high ? live : late_high;
  }
  mbx_proxy_stats_get(&after);
  printf("live allocations: %ld after warm-up, at most %ld over %d caller "
         "threads\n",
         warm_high, late_high, threads);
  fflush(stdout);
  /* Bounded caches (stashed records and node blocks) move by a few; a leak
   * per thread would add hundreds. */
  CHECK(late_high <= warm_high + 16);
  CHECK_EQ(after.sync_done - before.sync_done,
           (uint64_t)(WARM_THREADS + threads) * CALLS_PER_THREAD);
  CHECK(after.replies_skipped - before.replies_skipped <=
        (uint64_t)(WARM_THREADS + threads) * CALLS_PER_THREAD);
  CHECK_EQ(after.calls_live, 0);

  pthread_t other, c;
  mbx_handle other_server = start_server(&other);
  CHECK_EQ(mbx_proxy_async(g_server, hold, NULL, NULL), MBX_OK);
  CHECK_EQ(pthread_create(&c, NULL, timed_caller, &other_server), 0);
  CHECK_EQ(pthread_join(c, NULL), 0);
  atomic_store(&g_release, 1);
  check_no_live_calls(); /* the server dropped the abandoned record */

  stop_server(other, other_server);
  stop_server(server, g_server);
  printf("PASS proxy_parked\n");
  return 0;
}
