/*
 * Adaptive spinning before a futex sleep.
 *
 * Waking a sleeping thread costs the waker a futex wake (Atomics.notify)
 * and the sleeper a reschedule: microseconds natively, tens of them in a
 * Node worker. A request/reply partner running on another core usually
 * answers sooner than that, so a waiter first polls its word for a while.
 *
 * The budget is per thread and follows what happened. A spin that saw the
 * word change doubles it (up to MBX_SPIN_MAX_US). One that did not leaves
 * the verdict to the sleep that follows (mbx__spin_slept): if the answer
 * came within MBX_SPIN_MAX_US of the start, a longer spin would have caught
 * it, so the budget doubles; otherwise it halves (down to MBX_SPIN_MIN_US).
 * Judging only by the spin would ratchet down for good once the budget fell
 * below the partner's usual answer time. So a thread that keeps getting
 * quick answers spins, and one that sits idle pays at most MBX_SPIN_MAX_US
 * once per idle period and a few microseconds after that: an idle receiver
 * does not burn a core. Spinning never replaces the sleep, it only delays
 * it, so every wakeup protocol (the Dekker pairs on `waiting` and `sleeper`)
 * stays as it is.
 */
#include "layer.h"

#ifndef MBX_SPIN_MAX_US
#define MBX_SPIN_MAX_US 50.0
#endif
#define MBX_SPIN_MIN_US 1.0
/* Polls between clock reads. A poll is a load and a pause natively (about
 * 40 ns each on x86), a bare load in wasm (a nanosecond or two), where
 * reading the clock is a call out to JS that cost more than the polls
 * around it: a profile of round trips to a thread in mbx_wait put 10-15%
 * of each side in the clock (issue 17). */
#ifdef __wasm__
#define POLLS_PER_CLOCK_READ 2048
#else
#define POLLS_PER_CLOCK_READ 128
#endif

static _Thread_local double tls_spin_us = MBX_SPIN_MAX_US;
static _Thread_local double tls_spin_started_ms; /* of a spin that failed */
static _Thread_local int tls_spin_off;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void budget_grow(void) {
  tls_spin_us =
      tls_spin_us * 2 > MBX_SPIN_MAX_US ? MBX_SPIN_MAX_US : tls_spin_us * 2;
}

/* The spin loop. ready is a constant at each call site below, so the
 * compiler inlines it: a poll is one load. */
static inline __attribute__((always_inline)) int
spin_until(int (*ready)(const void *, int32_t, int32_t), const void *word,
           int32_t low, int32_t high, double remaining_ms) {
  tls_spin_started_ms = 0;
  if (tls_spin_off)
    return 0;
  double budget_ms = tls_spin_us / 1000.0;
  if (remaining_ms >= 0 && remaining_ms < budget_ms)
    budget_ms = remaining_ms;
  if (budget_ms <= 0)
    return 0;
  /* The clock is first read after POLLS_PER_CLOCK_READ polls, so a spin
   * that succeeds at once costs no clock read at all (a JS call in wasm);
   * the budget then runs from there, a fraction of a microsecond late. */
  double start = 0, end = 0;
  for (unsigned polls = 1;; polls++) {
    if (ready(word, low, high)) {
      budget_grow();
      return 1;
    }
    cpu_relax();
    if (polls % POLLS_PER_CLOCK_READ == 0) {
      double now = mbx__platform_now_ms();
      if (!start) {
        start = now;
        end = now + budget_ms;
      } else if (now >= end) {
        tls_spin_started_ms = start;
        return 0;
      }
    }
  }
}

static inline int outside(const void *word, int32_t low, int32_t high) {
  // Relaxed: only a hint to stop spinning; callers re-read the word with
  // the order their protocol needs.
  int32_t seen =
      atomic_load_explicit((_Atomic int32_t *)word, memory_order_relaxed);
  return seen < low || seen > high;
}

static inline int linked(const void *link, int32_t unused_low,
                         int32_t unused_high) {
  (void)unused_low;
  (void)unused_high;
  // Relaxed: a hint, as above; the pop that follows acquires.
  return atomic_load_explicit((_Atomic(mbx__node *) *)link,
                              memory_order_relaxed) != NULL;
}

int mbx__spin_while_equal(_Atomic int32_t *word, int32_t value,
                          double remaining_ms) {
  return spin_until(outside, (const void *)word, value, value, remaining_ms);
}

int mbx__spin_while_between(_Atomic int32_t *word, int32_t low, int32_t high,
                            double remaining_ms) {
  return spin_until(outside, (const void *)word, low, high, remaining_ms);
}

int mbx__spin_while_null(_Atomic(mbx__node *) *link, double remaining_ms) {
  return spin_until(linked, (const void *)link, 0, 0, remaining_ms);
}

static inline __attribute__((always_inline)) int
spin_briefly(int (*ready)(const void *, int32_t, int32_t), const void *word,
             int32_t low, int32_t high, int polls_max) {
  for (int polls = 0; polls < polls_max; polls++) {
    if (ready(word, low, high))
      return 1;
    cpu_relax();
  }
  return 0;
}

int mbx__spin_briefly_while_null(_Atomic(mbx__node *) *link, int polls) {
  return spin_briefly(linked, (const void *)link, 0, 0, polls);
}

void mbx__spin_slept(void) {
  if (!tls_spin_started_ms)
    return; /* no spin preceded this sleep */
  double waited_us = (mbx__platform_now_ms() - tls_spin_started_ms) * 1000.0;
  tls_spin_started_ms = 0;
  if (waited_us <= MBX_SPIN_MAX_US)
    budget_grow();
  else
    tls_spin_us =
        tls_spin_us / 2 < MBX_SPIN_MIN_US ? MBX_SPIN_MIN_US : tls_spin_us / 2;
}

int mbx_set_spinning(int on) {
  int previous = !tls_spin_off;
  tls_spin_off = !on;
  return previous;
}
