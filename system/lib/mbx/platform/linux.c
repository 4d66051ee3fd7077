/* Native Linux platform hooks: futex wait/wake. */
#ifndef __EMSCRIPTEN__
#define _GNU_SOURCE
#include "platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Longer timeouts (INFINITY, 1e300, ...) sleep a day at a time (callers
 * re-check their deadline after every return): keeps the double -> time_t
 * conversion defined (UBSan) and the futex away from EINVAL, which made
 * such waiters busy-loop. */
#define MAX_TIMED_WAIT_MS (86400.0 * 1000)

int mbx__platform_wait(_Atomic int32_t *word, int32_t expected,
                       double timeout_ms) {
  struct timespec ts, *tsp = NULL;
  if (timeout_ms >= 0) { /* false for NaN too: no limit */
    if (timeout_ms > MAX_TIMED_WAIT_MS)
      timeout_ms = MAX_TIMED_WAIT_MS;
    ts.tv_sec = (time_t)(timeout_ms / 1000);
    ts.tv_nsec = (long)((timeout_ms - (double)ts.tv_sec * 1000) * 1e6);
    if (ts.tv_nsec > 999999999) /* rounding */
      ts.tv_nsec = 999999999;
    tsp = &ts;
  }
  long rc = syscall(SYS_futex, (int32_t *)word, FUTEX_WAIT_PRIVATE, expected,
                    tsp, NULL, 0);
  return rc != 0 && errno == ETIMEDOUT;
}

void mbx__platform_wake_all(_Atomic int32_t *word) {
  syscall(SYS_futex, (int32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
          0);
}

double mbx__platform_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void mbx__platform_yield(void) { sched_yield(); }

#endif
