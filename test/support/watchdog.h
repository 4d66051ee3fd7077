/* Test helper: a watchdog that fails a test cleanly (FAIL line, exit code 3)
 * when a scenario that used to hang does not finish in time, and a timed
 * wait for a flag. Header-only; used by the issue-18 edge tests. */
#ifndef MBX_TEST_WATCHDOG_H
#define MBX_TEST_WATCHDOG_H

#include "check.h"

#include <pthread.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <unistd.h>

static const char *watchdog_what_;
static double watchdog_ms_;
static void (*watchdog_report_)(void);

static void *watchdog_main_(void *unused) {
  (void)unused;
  sleep_ms(watchdog_ms_);
  if (watchdog_report_) /* where everything stands, before the FAIL line */
    watchdog_report_();
  fprintf(stderr, "FAIL watchdog: %s (no progress after %.0f ms)\n",
          watchdog_what_, watchdog_ms_);
  fflush(stderr);
  _exit(3);
  return NULL;
}

/* Start a detached watchdog: after ms, call report (if not NULL: it prints
 * the test's state), print FAIL and _exit(3). */
static inline void watchdog_start_reporting(double ms, const char *what,
                                            void (*report)(void)) {
  watchdog_report_ = report;
  watchdog_what_ = what;
  watchdog_ms_ = ms;
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, watchdog_main_, NULL), 0);
  pthread_detach(t);
}
static inline void watchdog_start(double ms, const char *what) {
  watchdog_start_reporting(ms, what, NULL);
}

#ifndef __cplusplus /* C only: C++ before C++23 has no _Atomic */
/* Wait up to ms for *flag to become non-zero; returns whether it did. */
static inline int wait_flag_ms(_Atomic int *flag, double ms) {
  for (double waited = 0; waited < ms && !atomic_load(flag); waited += 1)
    sleep_ms(1);
  return atomic_load(flag) != 0;
}
#endif

/* CPU time of the calling thread, in ms (0 where unsupported or not a
 * CPU clock: the CPU checks then pass trivially). */
static inline double thread_cpu_ms(void) {
#ifdef __EMSCRIPTEN__
  return 0; /* Emscripten's thread CPU clock is wall time */
#endif
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return 0; /* not supported (some Emscripten releases): no check */
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#endif
