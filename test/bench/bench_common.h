/* Shared helpers for the benchmark programs (test/bench, built only with
 * -DMBX_BUILD_BENCH=ON, driven by js/bench.mjs). Header-only.
 *
 * Every program prints one line per measurement:
 *   RESULT <workload> <contender> <value> <unit>
 * and the driver takes medians over the repetitions. */
#ifndef MBX_BENCH_COMMON_H
#define MBX_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "../support/check.h" /* arg_*, sleep_ms, heap_in_use */

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <emscripten/threading.h>
#include <math.h>
/* Process CPU time (user + system, all threads) in microseconds:
 * process.cpuUsage() from test/bench/bench.js. */
double bench_cpu_usage_us(void);
#else
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
static inline double bench_cpu_usage_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
         (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}
#endif

static inline double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Sleep while *word == expected (spurious returns allowed). */
static inline void futex_wait_i32(_Atomic int32_t *word, int32_t expected) {
#ifdef __EMSCRIPTEN__
  emscripten_futex_wait((void *)word, (uint32_t)expected, INFINITY);
#else
  syscall(SYS_futex, (int32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL,
          0);
#endif
}

static inline void futex_wake_i32(_Atomic int32_t *word, int count) {
#ifdef __EMSCRIPTEN__
  emscripten_futex_wake((void *)word, count);
#else
  syscall(SYS_futex, (int32_t *)word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
#endif
}

/* A flood's consumer-only counters, on a cache line of their own: beside
 * what producers read per send (the target's handle, the queue), each
 * message's count took that line from them (perf natively: a fifth of a
 * 1-producer mbx run, and nothing for contenders that read no global). */
typedef struct flood_count {
  uint64_t consumed, target;
} __attribute__((aligned(64))) flood_count;

/* A one-shot completion: 0 = pending, 1 = done, 2 = pending with a sleeper.
 * The waiter spins a little first (a round trip to a hot thread is
 * short), then sleeps; the completer wakes only if someone sleeps. */
typedef struct completion {
  _Atomic int32_t state;
} completion;

#define COMPLETION_SPINS 2000

static inline void completion_reset(completion *c) {
  // Relaxed: published to the completer by the send that carries c.
  atomic_store_explicit(&c->state, 0, memory_order_relaxed);
}

static inline void completion_signal(completion *c) {
  // Release: the waiter's acquire sees what the handler did; acquire is not
  // needed (we only read the old state to decide on a wake).
  if (atomic_exchange_explicit(&c->state, 1, memory_order_release) == 2)
    futex_wake_i32(&c->state, 1);
}

static inline void completion_wait(completion *c) {
  for (int i = 0; i < COMPLETION_SPINS; i++)
    // Acquire: pairs with completion_signal's release.
    if (atomic_load_explicit(&c->state, memory_order_acquire) == 1)
      return;
  int32_t expected = 0;
  // Acquire on failure: the state is 1 and we read the handler's effects.
  if (!atomic_compare_exchange_strong_explicit(
          &c->state, &expected, 2, memory_order_acquire, memory_order_acquire))
    return;
  // Acquire: pairs with completion_signal's release.
  while (atomic_load_explicit(&c->state, memory_order_acquire) != 1)
    futex_wait_i32(&c->state, 2);
}

static inline void result(const char *workload, const char *contender,
                          double value, const char *unit) {
  printf("RESULT %s %s %.6g %s\n", workload, contender, value, unit);
  fflush(stdout);
}

#define BENCH_CHECK(cond)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "bench: check failed %s:%d: %s\n", __FILE__, __LINE__,   \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#ifndef __EMSCRIPTEN__
/* Thread placement, native only: a wasm pthread is a Worker, which neither
 * Node nor a browser lets a program place. */
#include <pthread.h>
#include <sched.h>

/* The CPUs this process may use, in order, into cpus[0..max); returns how
 * many. */
static inline int bench_cpus(int *cpus, int max) {
  cpu_set_t set;
  BENCH_CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
    if (CPU_ISSET(cpu, &set))
      cpus[n++] = cpu;
  return n;
}

/* Lets t run on the n CPUs in cpus only (n = 1: pins it). */
static inline void bench_pin(pthread_t t, const int *cpus, int n) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int i = 0; i < n; i++)
    CPU_SET(cpus[i], &set);
  BENCH_CHECK(pthread_setaffinity_np(t, sizeof set, &set) == 0);
}
#endif

#endif
