// mbx-test-args: --iterations 2000
// mbx-test-args-native-tsan: --iterations 1000
// mbx-test-args-native-asan: --iterations 1000
// mbx-test-args-wasm: --iterations 300
// mbx-test-args-wasm-asan: --iterations 150
// mbx-test-timeout: 180
/*
 * Races, hammered (native TSan is the judge of the memory orders):
 * 1. A caller blocked in sync leaves (pthread_cancel, or pthread_exit from a
 *    message it serves while waiting) at a random moment against the target
 *    starting and completing its work. fn writes into the caller's stack
 *    frame: it must either never run or finish before the caller's stack
 *    goes. Every call's work ran or was skipped: runs + abandoned equals the
 *    number of calls, and callers that returned got MBX_OK.
 * 2. mbx_proxy_finish against the target's exit canceling the same
 *    context: exactly one wins, and the caller's result agrees with what
 *    finish returned.
 */
#include "proxy_util.h"

static mbx_handle g_server;
static _Atomic long g_runs;
static rng g_rng;

static void spin_us(uint32_t us) {
  double until = now_ms() + us / 1000.0;
  while (now_ms() < until) {
  }
}

typedef struct frame {
  uint32_t delay_us;
  long value;
} frame;
static void work(void *p) {
  frame *f = p; /* on the caller's stack */
  spin_us(f->delay_us);
  f->value = 42;
  atomic_fetch_add(&g_runs, 1);
}

typedef struct caller_args {
  uint32_t delay_us;
  _Atomic int rc;
} caller_args;
static void *caller_main(void *p) {
  caller_args *a = p;
  frame f = {a->delay_us, 0};
  int rc = mbx_proxy_sync(g_server, work, &f);
  if (rc == MBX_OK)
    CHECK_EQ(f.value, 42);
  atomic_store(&a->rc, rc);
  return NULL;
}
static void leave(void *p) {
  (void)p;
  pthread_exit(NULL);
}
static void wake_only(void *p) { (void)p; }

static void caller_leaves_vs_completion(long iterations, long *left,
                                        long *completed) {
  pthread_t server;
  g_server = start_server(&server);
  mbx_proxy_stats before, after;
  mbx_proxy_stats_get(&before);
  for (long i = 0; i < iterations; i++) {
    caller_args a = {rng_below(&g_rng, 30), 1};
    pthread_t caller;
    CHECK_EQ(pthread_create(&caller, NULL, caller_main, &a), 0);
    mbx_handle ch = mbx_thread_handle(caller);
    spin_us(rng_below(&g_rng, 60));
    switch (rng_below(&g_rng, 3)) {
    case 0:
      pthread_cancel(caller);
      mbx_proxy_async(ch, wake_only, NULL, NULL); /* may be gone: fine */
      break;
    case 1:
      mbx_proxy_async(ch, leave, NULL, NULL);
      break;
    default:
      break;
    }
    CHECK_EQ(pthread_join(caller, NULL), 0);
    int rc = atomic_load(&a.rc);
    if (rc == 1) {
      ++*left;
    } else {
      CHECK_EQ(rc, MBX_OK);
      ++*completed;
    }
  }
  stop_server(server, g_server); /* every queued work ran or was skipped */
  mbx_proxy_stats_get(&after);
  CHECK_EQ(atomic_load(&g_runs) + (long)(after.abandoned - before.abandoned),
           iterations);
  CHECK(atomic_load(&g_runs) >= *completed);
}

/* ---- finish vs exit */
static mbx_proxy_ctx *_Atomic g_ctx;
static void park(mbx_proxy_ctx *ctx, void *p) {
  (void)p;
  atomic_store(&g_ctx, ctx);
}
static void *ctx_caller(void *p) {
  caller_args *a = p;
  atomic_store(&a->rc, mbx_proxy_sync_with_ctx(g_server, park, NULL));
  return NULL;
}

static void finish_vs_exit(long iterations, long *finished, long *canceled) {
  for (long i = 0; i < iterations; i++) {
    pthread_t target, caller;
    g_server = start_server(&target);
    caller_args a = {0, 1};
    CHECK_EQ(pthread_create(&caller, NULL, ctx_caller, &a), 0);
    mbx_proxy_ctx *ctx;
    while (!(ctx = atomic_load(&g_ctx)))
      sched_yield();
    atomic_store(&g_ctx, NULL);
    CHECK_EQ(mbx_proxy_async(g_server, exit_thread, NULL, NULL), MBX_OK);
    spin_us(rng_below(&g_rng, 25)); /* about the target's wakeup time */
    int rc = mbx_proxy_finish(ctx);
    CHECK_EQ(pthread_join(caller, NULL), 0);
    CHECK_EQ(pthread_join(target, NULL), 0);
    CHECK_EQ(atomic_load(&a.rc), rc); /* both saw the same single outcome */
    if (rc == MBX_OK)
      ++*finished;
    else
      ++*canceled;
  }
}

int main(int argc, char **argv) {
  long iterations = arg_long(argc, argv, "--iterations", 2000);
  long seed = arg_long(argc, argv, "--seed", 5);
  rng_seed(&g_rng, (uint64_t)seed);
  long left = 0, completed = 0, finished = 0, canceled = 0;
  caller_leaves_vs_completion(iterations, &left, &completed);
  finish_vs_exit(iterations / 2, &finished, &canceled);
  check_no_live_calls();
  printf("seed %ld: callers left=%ld completed=%ld (runs=%ld); finish won "
         "%ld, exit won %ld\n",
         seed, left, completed, atomic_load(&g_runs), finished, canceled);
  printf("PASS proxy_race\n");
  return 0;
}
