/* Shared helpers for the C tests (and the benchmarks): assertions that
 * survive NDEBUG, a seeded RNG, argument parsing, sleeping and waiting for a
 * counter, and memory figures. Header-only. */
#ifndef MBX_TEST_CHECK_H
#define MBX_TEST_CHECK_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* barriers under -std=c11 */
#endif

#include <malloc.h>
#include <mbx/mailbox.h>
#ifndef __cplusplus /* C++ (before C++23) has no <stdatomic.h> */
#include <stdatomic.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
      fflush(stderr);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);            \
    if (check_a_ != check_b_) {                                                \
      fprintf(stderr, "FAIL %s:%d: %s == %s (%lld vs %lld)\n", __FILE__,       \
              __LINE__, #a, #b, check_a_, check_b_);                           \
      fflush(stderr);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* xorshift64*: reproducible from the seed printed on failure. */
typedef struct rng {
  uint64_t s;
} rng;
static inline void rng_seed(rng *r, uint64_t seed) {
  r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  if (!r->s)
    r->s = 1;
}
static inline uint64_t rng_next(rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 0x2545F4914F6CDD1Dull;
}
static inline uint32_t rng_below(rng *r, uint32_t n) {
  return n ? (uint32_t)(rng_next(r) % n) : 0;
}

/* --name S (or default). */
static inline const char *arg_str(int argc, char **argv, const char *name,
                                  const char *fallback) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return argv[i + 1];
  return fallback;
}

/* --name N (or default). */
static inline long arg_long(int argc, char **argv, const char *name,
                            long fallback) {
  const char *s = arg_str(argc, argv, name, NULL);
  return s ? strtol(s, NULL, 10) : fallback;
}

/* --name present (a flag without a value). */
static inline int arg_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}

/* Milliseconds on the monotonic clock. */
static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(double ms) {
  struct timespec ts = {
      (time_t)(ms / 1000),
      (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

#ifndef __cplusplus
/* Wait up to ~10 s for *counter to reach expected, then check it did. */
static inline void wait_for_count(_Atomic int *counter, int expected) {
  for (int i = 0; i < 10000 && atomic_load(counter) < expected; i++)
    sleep_ms(1);
  CHECK_EQ(atomic_load(counter), expected);
}
#endif

/* Bytes the C heap has handed out now (0 under native ASan, whose malloc
 * is its own). */
static inline size_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  return mallinfo2().uordblks;
#else
  return (size_t)mallinfo().uordblks;
#endif
}

#endif
