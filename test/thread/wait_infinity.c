// mbx-test-timeout: 60
/*
 * Issue 18 item 10: mbx_wait(INFINITY), huge timeouts, and
 * mbx_proxy_sync_timed(..., INFINITY) must sleep like mbx_wait(-1): no
 * undefined double -> time_t cast (UBSan aborts in native-asan), no futex
 * EINVAL busy loop. Each waiter sleeps WAIT_MS before its message arrives
 * and must use far less CPU than that.
 */
#include "watchdog.h"

#include <math.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

enum { WAIT_MS = 300 };
static const double g_timeouts[] = {INFINITY, 1e300, 1e18, 9.3e15, 4e12};
enum { N = sizeof g_timeouts / sizeof g_timeouts[0] };

static _Atomic int g_ready;
static double g_cpu_ms;
static int g_rc;

static void nothing(void *arg) { (void)arg; }

static void *waiter(void *arg) {
  double timeout = *(double *)arg;
  atomic_store(&g_ready, 1);
  double cpu = thread_cpu_ms();
  g_rc = mbx_wait(timeout);
  g_cpu_ms = thread_cpu_ms() - cpu;
  return NULL;
}

static void slow(void *arg) {
  (void)arg;
  sleep_ms(WAIT_MS);
}
static _Atomic int g_stop;
static void *target(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop))
    mbx_wait(-1);
  return NULL;
}
static void stop(void *arg) {
  (void)arg;
  atomic_store(&g_stop, 1);
}

int main(void) {
  watchdog_start(40000, "wait_infinity");
  for (int i = 0; i < N; i++) {
    double timeout = g_timeouts[i];
    atomic_store(&g_ready, 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, waiter, &timeout), 0);
    mbx_handle h = mbx_thread_handle(t);
    wait_for_count(&g_ready, 1);
    sleep_ms(WAIT_MS);
    CHECK_EQ(mbx_send(h, nothing, NULL, NULL), MBX_OK);
    pthread_join(t, NULL);
    printf("mbx_wait(%g): rc=%d cpu=%.1f ms over %d ms\n", timeout, g_rc,
           g_cpu_ms, WAIT_MS);
    CHECK_EQ(g_rc, 1);
    CHECK(g_cpu_ms < WAIT_MS / 3.0);
  }
  /* A timed proxy call with an infinite limit: the caller (main, not
   * serving) sleeps on the call while the target runs a slow fn. */
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, target, NULL), 0);
  mbx_handle to = mbx_thread_handle(t);
  mbx_proxy_set_serving(0);
  for (int i = 0; i < N; i++) {
    double cpu = thread_cpu_ms();
    CHECK_EQ(mbx_proxy_sync_timed(to, slow, NULL, g_timeouts[i]), MBX_OK);
    cpu = thread_cpu_ms() - cpu;
    printf("mbx_proxy_sync_timed(%g): cpu=%.1f ms over %d ms\n",
           g_timeouts[i], cpu, WAIT_MS);
    CHECK(cpu < WAIT_MS / 3.0);
  }
  CHECK_EQ(mbx_send(to, stop, NULL, NULL), MBX_OK);
  pthread_join(t, NULL);
  printf("PASS wait_infinity\n");
  return 0;
}
