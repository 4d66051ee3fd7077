/* Helpers shared by the proxy_*.c tests. Header-only. */
#ifndef MBX_TEST_PROXY_UTIL_H
#define MBX_TEST_PROXY_UTIL_H

#include "check.h"

#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

/* A server thread: runs its mailbox until told to stop (or to exit). */
static _Thread_local int tls_stop;
static inline void stop_serving(void *unused) {
  (void)unused;
  tls_stop = 1;
}
static inline void exit_thread(void *unused) {
  (void)unused;
  pthread_exit(NULL);
}
static inline void *serve_until_stopped(void *unused) {
  (void)unused;
  while (!tls_stop)
    mbx_wait(-1);
  return NULL;
}

/* Start a server and return its handle. */
static inline mbx_handle start_server(pthread_t *t) {
  CHECK_EQ(pthread_create(t, NULL, serve_until_stopped, NULL), 0);
  mbx_handle h = mbx_thread_handle(*t);
  CHECK(!mbx_handle_is_null(h));
  return h;
}

static inline void stop_server(pthread_t t, mbx_handle h) {
  CHECK_EQ(mbx_proxy_async(h, stop_serving, NULL, NULL), MBX_OK);
  CHECK_EQ(pthread_join(t, NULL), 0);
}

/* Spin (yielding) until *flag reaches value, at most ~10 s. */
static inline void await_int(_Atomic int *flag, int value) {
  for (long i = 0; atomic_load(flag) < value; i++) {
    CHECK(i < 10000000);
    if (i > 1000)
      sleep_ms(0.1);
    else
      sched_yield();
  }
}

/* calls_live settles at n within about 2 s: outcome messages may be in
 * flight, and a call that was not quick is held by its target for a moment
 * after it returned. */
static inline void await_calls_live(uint64_t n) {
  mbx_proxy_stats ps;
  for (int i = 0; i < 2000; i++) {
    mbx_proxy_stats_get(&ps);
    if (ps.calls_live == n)
      break;
    sleep_ms(1);
  }
  CHECK_EQ(ps.calls_live, n);
}

/* Every call record was freed. */
static inline void check_no_live_calls(void) { await_calls_live(0); }

#endif
