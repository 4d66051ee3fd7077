// mbx-test-args: --callers 1000 --calls 1 --rounds 2
// mbx-test-args-native-tsan: --callers 1000 --calls 1 --rounds 1
// mbx-test-args-wasm: --callers 14 --calls 72 --rounds 2
// mbx-test-args-wasm-asan: --callers 14 --calls 72 --rounds 1
// mbx-test-timeout: 180
/*
 * Many concurrent sync callers to one thread that exits mid-stream. Natively
 * 1,000 caller threads start together and make one call each; on Emscripten
 * (a 16-worker pool) 14 callers make 72 calls each. The target starts
 * serving once half the callers are waiting and ends itself inside the
 * call that brings its run count to half the total. Every call returns
 * MBX_OK (fn ran and returned), MBX_ECANCELED (queued when the target went,
 * or the call that ended it) or MBX_ECLOSED (sent after): the counts add up
 * exactly and match the target's own run count. Callers mix serving and
 * sleeping waits, plain and context calls.
 */
#include "proxy_util.h"

static long g_calls_per_caller;
static long g_exit_at;
static _Atomic long g_runs;
static _Atomic long g_ok, g_canceled, g_closed, g_other;
static _Atomic int g_started;
static _Atomic int g_serve;

static void work(void *p) {
  (void)p;
  if (atomic_fetch_add(&g_runs, 1) + 1 == g_exit_at)
    pthread_exit(NULL); /* mid-stream, from inside a call */
}
/* A context left unfinished by the exit must still be finished (by main). */
static mbx_proxy_ctx *_Atomic g_exit_ctx;
static void ctx_work(mbx_proxy_ctx *ctx, void *p) {
  (void)p;
  if (atomic_fetch_add(&g_runs, 1) + 1 == g_exit_at) {
    atomic_store(&g_exit_ctx, ctx);
    pthread_exit(NULL);
  }
  CHECK_EQ(mbx_proxy_finish(ctx), MBX_OK);
}

static void *target_main(void *p) {
  (void)p;
  while (!atomic_load(&g_serve))
    sleep_ms(0.2);
  while (atomic_load(&g_runs) < g_exit_at)
    mbx_wait(-1); /* work() ends the thread first */
  return NULL;
}

typedef struct caller_args {
  mbx_handle target;
  int index;
} caller_args;

static void *caller_main(void *p) {
  caller_args *a = p;
  mbx_proxy_set_serving(a->index % 2);
  atomic_fetch_add(&g_started, 1);
  for (long i = 0; i < g_calls_per_caller; i++) {
    int rc = (a->index + i) % 3 == 0
                 ? mbx_proxy_sync_with_ctx(a->target, ctx_work, NULL)
                 : mbx_proxy_sync(a->target, work, NULL);
    if (rc == MBX_OK)
      atomic_fetch_add(&g_ok, 1);
    else if (rc == MBX_ECANCELED)
      atomic_fetch_add(&g_canceled, 1);
    else if (rc == MBX_ECLOSED || rc == MBX_ESTALE)
      atomic_fetch_add(&g_closed, 1);
    else
      atomic_fetch_add(&g_other, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  long callers = arg_long(argc, argv, "--callers", 1000);
  g_calls_per_caller = arg_long(argc, argv, "--calls", 1);
  long rounds = arg_long(argc, argv, "--rounds", 1);
  long total = callers * g_calls_per_caller;
  pthread_t *threads = calloc((size_t)callers, sizeof *threads);
  caller_args *args = calloc((size_t)callers, sizeof *args);
  CHECK(threads && args);
  pthread_attr_t attr;
  CHECK_EQ(pthread_attr_init(&attr), 0);
#ifndef __EMSCRIPTEN__
  CHECK_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
#endif
  for (long round = 0; round < rounds; round++) {
    atomic_store(&g_runs, 0);
    atomic_store(&g_ok, 0);
    atomic_store(&g_canceled, 0);
    atomic_store(&g_closed, 0);
    atomic_store(&g_started, 0);
    atomic_store(&g_serve, 0);
    g_exit_at = total / 2;
    pthread_t target;
    CHECK_EQ(pthread_create(&target, NULL, target_main, NULL), 0);
    mbx_handle h = mbx_thread_handle(target);
    for (long i = 0; i < callers; i++) {
      args[i] = (caller_args){h, (int)i};
      CHECK_EQ(pthread_create(&threads[i], &attr, caller_main, &args[i]), 0);
      if (i == callers / 2)
        atomic_store(&g_serve, 1);
    }
    for (long i = 0; i < callers; i++)
      CHECK_EQ(pthread_join(threads[i], NULL), 0);
    CHECK_EQ(pthread_join(target, NULL), 0);
    mbx_proxy_ctx *unfinished = atomic_exchange(&g_exit_ctx, NULL);
    if (unfinished)
      CHECK_EQ(mbx_proxy_finish(unfinished), MBX_ECANCELED);
    long ok = atomic_load(&g_ok), canceled = atomic_load(&g_canceled),
         closed = atomic_load(&g_closed);
    CHECK_EQ(atomic_load(&g_other), 0);
    CHECK_EQ(ok + canceled + closed, total);
    CHECK_EQ(atomic_load(&g_runs), g_exit_at);
    CHECK_EQ(ok, g_exit_at - 1); /* the call that ended the target: canceled */
    CHECK(canceled >= 1);
    printf("round %ld: %ld callers x %ld calls: ok=%ld canceled=%ld "
           "closed=%ld\n",
           round, callers, g_calls_per_caller, ok, canceled, closed);
  }
  check_no_live_calls();
  free(threads);
  free(args);
  printf("PASS proxy_storm\n");
  return 0;
}
