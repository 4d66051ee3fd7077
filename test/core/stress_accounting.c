// mbx-test-args: --iterations 40000 --seed 11
// mbx-test-args-native-tsan: --iterations 10000 --seed 12
// mbx-test-args-native-asan: --iterations 20000 --seed 13
// mbx-test-args-wasm: --iterations 10000 --seed 14
// mbx-test-args-wasm-asan: --iterations 2000 --seed 15
/*
 * Exactly-once accounting under a racing close.
 *
 * Each iteration: producers send numbered messages to the owner's mailbox
 * while the owner polls a random number of times and then exits its mailbox
 * (closing it), then immediately opens a new one, possibly on the same
 * record (quarantine 0 forces reuse) while producers are still sending
 * through the old handle. Afterwards, for every message: accepted => exactly
 * one of run/cancel called once (or dropped, for messages without a cancel
 * function); refused => nothing called. Runs happen in per-producer send
 * order, and only on the mailbox life the message was sent to.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define MAX_PRODUCERS 8
#define MAX_QUOTA 256
#define MAX_MESSAGES (MAX_PRODUCERS * MAX_QUOTA)

static int g_producers = 3;
static long g_iterations;
static uint64_t g_seed;
static pthread_barrier_t g_barrier;
static mbx_handle g_target; /* written before a barrier, read after it */
static int g_quota;

static _Atomic int g_run[MAX_MESSAGES];
static _Atomic int g_cancel[MAX_MESSAGES];
static int g_result[MAX_MESSAGES];     /* send return code, per message */
static int g_has_cancel[MAX_MESSAGES]; /* 0: sent with cancel == NULL */
static int g_last_seq[MAX_PRODUCERS];  /* owner only */
static _Atomic int g_cancel_reason_bad;
static _Atomic int g_wrong_life;

static struct {
  uint64_t attempted, ok, run, canceled, dropped, closed, stale, full;
} g_total;

static void on_run(void *arg) {
  int id = (int)(uintptr_t)arg;
  int producer = id / MAX_QUOTA, seq = id % MAX_QUOTA;
  CHECK(seq > g_last_seq[producer]); /* per-sender FIFO */
  g_last_seq[producer] = seq;
  if (!mbx_handle_equal(mbx_self(), g_target))
    atomic_fetch_add(&g_wrong_life, 1);
  atomic_fetch_add_explicit(&g_run[id], 1, memory_order_relaxed);
}

static void on_cancel(void *arg, int reason) {
  int id = (int)(uintptr_t)arg;
  if (reason != MBX_CANCEL_THREAD_EXIT)
    atomic_fetch_add(&g_cancel_reason_bad, 1);
  atomic_fetch_add_explicit(&g_cancel[id], 1, memory_order_relaxed);
}

static void *producer_main(void *arg) {
  int producer = (int)(uintptr_t)arg;
  rng r;
  rng_seed(&r, g_seed * 131 + (uint64_t)producer);
  for (long it = 0; it < g_iterations; it++) {
    pthread_barrier_wait(&g_barrier); /* B0: target published */
    mbx_handle target = g_target;
    for (int seq = 0; seq < g_quota; seq++) {
      int id = producer * MAX_QUOTA + seq;
      int with_cancel = rng_below(&r, 8) != 0;
      g_has_cancel[id] = with_cancel;
      int rc = mbx_send(target, on_run, with_cancel ? on_cancel : NULL,
                        (void *)(uintptr_t)id);
      g_result[id] = rc;
      if (rc != MBX_OK) {
        CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
        for (int rest = seq + 1; rest < g_quota; rest++)
          g_result[producer * MAX_QUOTA + rest] = 1; /* never attempted */
        break;
      }
      if (rng_below(&r, 16) == 0)
        sched_yield();
    }
    pthread_barrier_wait(&g_barrier); /* B1: iteration over */
    pthread_barrier_wait(&g_barrier); /* B2: owner has verified */
  }
  return NULL;
}

static void verify_iteration(void) {
  for (int p = 0; p < g_producers; p++) {
    for (int seq = 0; seq < g_quota; seq++) {
      int id = p * MAX_QUOTA + seq;
      int rc = g_result[id];
      int runs = atomic_load(&g_run[id]), cancels = atomic_load(&g_cancel[id]);
      if (rc == 1)
        continue; /* not attempted */
      g_total.attempted++;
      if (rc == MBX_OK) {
        g_total.ok++;
        if (g_has_cancel[id]) {
          CHECK_EQ(runs + cancels, 1);
        } else {
          CHECK_EQ(cancels, 0);
          CHECK(runs <= 1);
          g_total.dropped += (runs == 0);
        }
        g_total.run += runs;
        g_total.canceled += cancels;
      } else {
        CHECK_EQ(runs + cancels, 0);
        if (rc == MBX_ECLOSED)
          g_total.closed++;
        else
          g_total.stale++;
      }
      atomic_store(&g_run[id], 0);
      atomic_store(&g_cancel[id], 0);
      g_result[id] = 1;
    }
  }
}

int main(int argc, char **argv) {
  g_iterations = arg_long(argc, argv, "--iterations", 2000);
  g_producers = (int)arg_long(argc, argv, "--producers", 3);
  g_seed = (uint64_t)arg_long(argc, argv, "--seed", 1);
  CHECK(g_producers >= 1 && g_producers <= MAX_PRODUCERS);
  printf("stress_accounting seed=%llu iterations=%ld producers=%d\n",
         (unsigned long long)g_seed, g_iterations, g_producers);
  fflush(stdout);
  rng r;
  rng_seed(&r, g_seed);
  for (int i = 0; i < MAX_MESSAGES; i++)
    g_result[i] = 1;
  pthread_barrier_init(&g_barrier, NULL, (unsigned)g_producers + 1);
  pthread_t threads[MAX_PRODUCERS];
  for (int p = 0; p < g_producers; p++)
    CHECK_EQ(
        pthread_create(&threads[p], NULL, producer_main, (void *)(uintptr_t)p),
        0);

  /* The main thread is the owner. */
  mbx_handle current;
  CHECK_EQ(mbx_thread_attach(&current), MBX_OK);
  uint64_t reused = 0, any_reuse = 0;
  for (long it = 0; it < g_iterations; it++) {
    g_target = current;
    g_quota = 1 + (int)rng_below(&r, MAX_QUOTA);
    for (int p = 0; p < g_producers; p++)
      g_last_seq[p] = -1;
    pthread_barrier_wait(&g_barrier); /* B0 */
    int polls = (int)rng_below(&r, 6);
    for (int i = 0; i < polls; i++) {
      int n = mbx_poll();
      CHECK(n >= 0);
      for (uint32_t spin = rng_below(&r, 2000); spin; spin--)
        atomic_signal_fence(memory_order_seq_cst);
    }
    int canceled = mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
    CHECK(canceled >= 0);
    CHECK(mbx_handle_is_null(mbx_self()));
    CHECK_EQ(mbx_send(current, on_run, on_cancel, NULL), MBX_ECLOSED);
    /* Open the next life at once, racing the producers' stale sends. */
    /* First third: quarantine 0 with one retired record, so the record just
     * closed is reused at once (same index, next generation) while the
     * producers still send through the old handle. Later: mixed. */
    uint32_t quarantine =
        it < g_iterations / 3 ? 0 : (rng_below(&r, 3) == 0 ? 0 : 64);
    mbx_set_quarantine(quarantine);
    mbx_handle next;
    CHECK_EQ(mbx_thread_attach(&next), MBX_OK);
    if ((uint32_t)next.bits == (uint32_t)current.bits)
      reused++;
    if ((next.bits >> 32) > 1)
      any_reuse++;
    for (int i = 0; i < 3; i++)
      CHECK_EQ(mbx_poll(), 0);        /* nothing addressed to the old life */
    pthread_barrier_wait(&g_barrier); /* B1 */
    CHECK_EQ(mbx_poll(), 0);
    verify_iteration();
    CHECK_EQ(atomic_load(&g_wrong_life), 0);
    CHECK_EQ(atomic_load(&g_cancel_reason_bad), 0);
    current = next;
    pthread_barrier_wait(&g_barrier); /* B2 */
  }
  CHECK(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT) == 0);
  for (int p = 0; p < g_producers; p++)
    pthread_join(threads[p], NULL);

  mbx_stats s;
  mbx_stats_global(&s);
  uint64_t rejected = s.rejected_closed + s.rejected_stale;
  printf("attempted=%llu sent=%llu run=%llu canceled=%llu dropped=%llu "
         "rejected_closed=%llu rejected_stale=%llu same_record_reuses=%llu "
         "record_reuses=%llu\n",
         (unsigned long long)g_total.attempted, (unsigned long long)g_total.ok,
         (unsigned long long)g_total.run, (unsigned long long)g_total.canceled,
         (unsigned long long)g_total.dropped,
         (unsigned long long)g_total.closed, (unsigned long long)g_total.stale,
         (unsigned long long)reused, (unsigned long long)any_reuse);
  /* The library's own counters agree with ours, independently counted. */
  CHECK_EQ(s.sent, g_total.ok);
  CHECK_EQ(s.run, g_total.run);
  CHECK_EQ(s.canceled, g_total.canceled);
  CHECK_EQ(s.dropped, g_total.dropped);
  CHECK_EQ(s.pending, 0);
  /* +1 per iteration: the owner's own send to its closed mailbox. */
  CHECK_EQ(rejected, g_total.closed + g_total.stale + (uint64_t)g_iterations);
  CHECK_EQ(g_total.ok, g_total.run + g_total.canceled + g_total.dropped);
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  CHECK_EQ(m.nodes_live, 0);
  /* The run must have exercised both outcomes of the race. */
  if (g_iterations >= 200) {
    CHECK(g_total.run > 0 && g_total.canceled > 0 && g_total.closed > 0);
    CHECK(reused > 0 && any_reuse > reused && g_total.stale > 0);
  }
  printf("PASS stress_accounting lost=%lld\n",
         (long long)(g_total.ok - g_total.run - g_total.canceled -
                     g_total.dropped));
  return 0;
}
