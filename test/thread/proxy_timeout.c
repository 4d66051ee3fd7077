// mbx-test-args: --iterations 3000
// mbx-test-args-native-tsan: --iterations 1000
// mbx-test-args-wasm-asan: --iterations 500
// mbx-test-timeout: 120
/*
 * Timed sync. A timeout fires on time when the target is busy, for a caller
 * that sleeps (no mailbox) and one that serves; the work then never runs,
 * even when the target becomes free later. Then a race: timeouts of a few
 * microseconds against a target that starts the work at random moments,
 * with the argument on the heap and freed as soon as the call returns
 * ETIMEDOUT: a late run would be a use after free (ASan flavours), and the
 * per-call record shows fn ran for exactly the calls that returned MBX_OK.
 */
#include "proxy_util.h"

static _Atomic int g_busy;
static _Atomic long g_runs;
static void hold_busy(void *p) {
  (void)p;
  while (atomic_load(&g_busy))
    sleep_ms(0.2);
}
static void write_arg(void *p) {
  *(volatile long *)p = 42;
  atomic_fetch_add(&g_runs, 1);
}

static _Thread_local double tls_elapsed;
static int timed_call_on_stack(mbx_handle h, double timeout_ms) {
  long on_stack = 0;
  double t0 = now_ms();
  int rc = mbx_proxy_sync_timed(h, write_arg, &on_stack, timeout_ms);
  tls_elapsed = now_ms() - t0;
  return rc;
}
static void scribble_stack(void) {
  volatile char junk[256];
  for (int i = 0; i < 256; i++)
    junk[i] = (char)i;
  (void)junk[7];
}

static void *serving_caller(void *p) {
  mbx_handle h = *(mbx_handle *)p;
  CHECK_EQ(timed_call_on_stack(h, 30), MBX_ETIMEDOUT);
  CHECK(tls_elapsed >= 29 && tls_elapsed < 5000);
  scribble_stack();
  return NULL;
}

/* ---- the race */
static long *_Atomic g_ran; /* per call: 1 if fn ran */
typedef struct racy {
  long id;
  long value;
} racy;
static void racy_write(void *p) {
  racy *r = p;
  r->value = 42; /* heap freed by a caller that timed out: ASan would stop */
  g_ran[r->id] = 1;
}
static void spin_us(uint32_t us) {
  double until = now_ms() + us / 1000.0;
  while (now_ms() < until) {
  }
}
static void random_delay(void *p) { spin_us((uint32_t)(uintptr_t)p); }

int main(int argc, char **argv) {
  long iterations = arg_long(argc, argv, "--iterations", 3000);
  pthread_t server;
  mbx_handle h = start_server(&server);

  /* Busy target: the timeout fires, for a sleeping and a serving caller. */
  atomic_store(&g_busy, 1);
  CHECK_EQ(mbx_proxy_async(h, hold_busy, NULL, NULL), MBX_OK);
  CHECK_EQ(timed_call_on_stack(h, 30), MBX_ETIMEDOUT);
  CHECK(tls_elapsed >= 29 && tls_elapsed < 5000);
  scribble_stack();
  pthread_t caller;
  CHECK_EQ(pthread_create(&caller, NULL, serving_caller, &h), 0);
  CHECK_EQ(pthread_join(caller, NULL), 0);
  CHECK_EQ(timed_call_on_stack(h, 0), MBX_ETIMEDOUT); /* zero: no wait */
  atomic_store(&g_busy, 0);
  CHECK_EQ(mbx_proxy_sync(h, random_delay, NULL), MBX_OK); /* after them */
  CHECK_EQ(atomic_load(&g_runs), 0);
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  CHECK_EQ(ps.sync_timed_out, 3);
  CHECK_EQ(ps.abandoned, 3);
  /* A generous limit does not fire. */
  long value = 0;
  CHECK_EQ(mbx_proxy_sync_timed(h, write_arg, &value, 10000), MBX_OK);
  CHECK_EQ(value, 42);

  /* The race: start vs timeout. */
  long *ran = calloc((size_t)iterations, sizeof *ran);
  CHECK(ran);
  atomic_store(&g_ran, ran);
  rng r;
  rng_seed(&r, 11);
  long ok = 0, timed_out = 0;
  long timed_out_ids_count = 0;
  long *timed_out_ids = calloc((size_t)iterations, sizeof *timed_out_ids);
  CHECK(timed_out_ids);
  for (long i = 0; i < iterations; i++) {
    CHECK_EQ(mbx_proxy_async(h, random_delay, NULL,
                             (void *)(uintptr_t)rng_below(&r, 40)),
             MBX_OK);
    racy *arg = malloc(sizeof *arg);
    CHECK(arg);
    arg->id = i;
    arg->value = 0;
    int rc = mbx_proxy_sync_timed(h, racy_write, arg,
                                  (double)rng_below(&r, 40) / 1000.0);
    if (rc == MBX_OK) {
      CHECK_EQ(arg->value, 42);
      ok++;
    } else {
      CHECK_EQ(rc, MBX_ETIMEDOUT);
      timed_out_ids[timed_out_ids_count++] = i;
      timed_out++;
    }
    free(arg);
  }
  stop_server(server, h); /* every queued work has been run or skipped */
  for (long i = 0; i < timed_out_ids_count; i++)
    CHECK_EQ(ran[timed_out_ids[i]], 0);
  long ran_count = 0;
  for (long i = 0; i < iterations; i++)
    ran_count += ran[i];
  CHECK_EQ(ran_count, ok);
  check_no_live_calls();
  mbx_proxy_stats_get(&ps);
  CHECK_EQ(ps.abandoned, 3 + timed_out);
  free(ran);
  free(timed_out_ids);
  printf("timeouts fire on time; race: %ld calls, ok=%ld timed_out=%ld "
         "(none of them ran)\n",
         iterations, ok, timed_out);
  printf("PASS proxy_timeout\n");
  return 0;
}
