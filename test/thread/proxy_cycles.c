// mbx-test-args: --rounds 300
// mbx-test-args-native-tsan: --rounds 100
// mbx-test-args-wasm-asan: --rounds 100
// mbx-test-timeout: 120
/*
 * Blocked callers keep serving: A sync-proxying to B while B sync-proxies to
 * A completes, and so does the chain A->B->C->A (each hop made from inside
 * the handler of the previous one), also with all three chains running at
 * once. On Emscripten one of the three threads serves from its JS event
 * loop. Every round is counted; nothing is left allocated.
 */
#include "proxy_util.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

#define N 3
static mbx_handle g_h[N];
static pthread_t g_t[N];
static long g_rounds;
static _Atomic int g_ready, g_drivers_done;
static _Atomic long g_leaf_runs;

static void *worker_main(void *p) {
  int index = (int)(intptr_t)p;
  (void)index;
#ifdef __EMSCRIPTEN__
  if (index == N - 1) {
    CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
    atomic_fetch_add(&g_ready, 1);
    emscripten_exit_with_live_runtime();
  }
#endif
  atomic_fetch_add(&g_ready, 1);
  return serve_until_stopped(NULL);
}

static int index_of_self(void) {
  for (int i = 0; i < N; i++)
    if (mbx_handle_equal(mbx_self(), g_h[i]))
      return i;
  CHECK(0);
  return -1;
}

static void leaf(void *p) {
  (void)p;
  atomic_fetch_add(&g_leaf_runs, 1);
}

/* Mutual: i syncs to j, whose fn syncs back to i. */
static void back_to_caller(void *p) {
  int caller = (int)(intptr_t)p;
  CHECK_EQ(mbx_proxy_sync(g_h[caller], leaf, NULL), MBX_OK);
}

/* Chain: hop to the next thread until `hops` is used up. */
static void hop(void *p) {
  intptr_t hops = (intptr_t)p;
  if (hops == 0) {
    leaf(NULL);
    return;
  }
  int next = (index_of_self() + 1) % N;
  CHECK_EQ(mbx_proxy_sync(g_h[next], hop, (void *)(hops - 1)), MBX_OK);
}

/* Runs on thread i, as a message: its syncs are made from a handler. */
static void drive_mutual(void *p) {
  int other = (int)(intptr_t)p;
  int self = index_of_self();
  for (long r = 0; r < g_rounds; r++) {
    /* Both threads do this at once: each waits for the other and serves it. */
    CHECK_EQ(mbx_proxy_sync(g_h[other], leaf, NULL), MBX_OK);
    CHECK_EQ(mbx_proxy_sync(g_h[other], back_to_caller, (void *)(intptr_t)self),
             MBX_OK);
  }
  atomic_fetch_add(&g_drivers_done, 1);
}

static void drive_chain(void *p) {
  (void)p;
  for (long r = 0; r < g_rounds; r++)
    hop((void *)(intptr_t)N); /* i -> i+1 -> i+2 -> i, then the leaf */
  atomic_fetch_add(&g_drivers_done, 1);
}

int main(int argc, char **argv) {
  g_rounds = arg_long(argc, argv, "--rounds", 300);
  for (int i = 0; i < N; i++) {
    CHECK_EQ(pthread_create(&g_t[i], NULL, worker_main, (void *)(intptr_t)i),
             0);
    g_h[i] = mbx_thread_handle(g_t[i]);
  }
  await_int(&g_ready, N);

  /* A <-> B, started on both at once; then B <-> C (C: event loop). */
  for (int pair = 0; pair < 2; pair++) {
    atomic_store(&g_drivers_done, 0);
    int a = pair, b = pair + 1;
    CHECK_EQ(mbx_proxy_async(g_h[a], drive_mutual, NULL, (void *)(intptr_t)b),
             MBX_OK);
    CHECK_EQ(mbx_proxy_async(g_h[b], drive_mutual, NULL, (void *)(intptr_t)a),
             MBX_OK);
    await_int(&g_drivers_done, 2);
  }
  long mutual = atomic_load(&g_leaf_runs);
  CHECK_EQ(mutual, 2 * 2 * 2 * g_rounds);

  /* One chain A -> B -> C -> A, then all three chains at once. */
  atomic_store(&g_drivers_done, 0);
  CHECK_EQ(mbx_proxy_async(g_h[0], drive_chain, NULL, NULL), MBX_OK);
  await_int(&g_drivers_done, 1);
  atomic_store(&g_drivers_done, 0);
  for (int i = 0; i < N; i++)
    CHECK_EQ(mbx_proxy_async(g_h[i], drive_chain, NULL, NULL), MBX_OK);
  await_int(&g_drivers_done, N);
  long chains = atomic_load(&g_leaf_runs) - mutual;
  CHECK_EQ(chains, (1 + N) * g_rounds);

  for (int i = 0; i < N; i++) {
#ifdef __EMSCRIPTEN__
    if (i == N - 1) {
      CHECK_EQ(mbx_proxy_async(g_h[i], exit_thread, NULL, NULL), MBX_OK);
      CHECK_EQ(pthread_join(g_t[i], NULL), 0);
      continue;
    }
#endif
    stop_server(g_t[i], g_h[i]);
  }
  check_no_live_calls();
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  CHECK_EQ(ps.sync_canceled, 0);
  printf("mutual rounds: %ld leaf runs; chains: %ld leaf runs; sync_done=%llu\n",
         mutual, chains, (unsigned long long)ps.sync_done);
  printf("PASS proxy_cycles\n");
  return 0;
}
