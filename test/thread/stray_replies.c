// mbx-test-args: --calls 20000
// mbx-test-args-wasm: --calls 5000
// mbx-test-args-native-tsan: --calls 3000
// mbx-test-timeout: 300
/*
 * Issue 18 item 8: a serving sync caller that saw the outcome itself must
 * not find the reply message in its mailbox afterwards. The caller sends
 * nothing to itself, so after every mbx_proxy_sync its mailbox must be
 * empty: mbx_poll() runs nothing and its pending count is 0 (today stray
 * replies pile up: 175-525 per 2,000 calls).
 */
#include "watchdog.h"

#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

static _Atomic int g_stop;

static void *target(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop))
    mbx_wait(5);
  return NULL;
}
static void quick(void *arg) { (void)arg; }
static void stop(void *arg) {
  (void)arg;
  atomic_store(&g_stop, 1);
}

static long g_calls, g_strays;
static void *caller(void *arg) {
  mbx_handle to = *(mbx_handle *)arg;
  for (long i = 0; i < g_calls; i++) {
    CHECK_EQ(mbx_proxy_sync(to, quick, NULL), MBX_OK);
    int n = mbx_poll();
    CHECK(n >= 0);
    g_strays += n;
  }
  mbx_stats s;
  CHECK_EQ(mbx_stats_get(mbx_self(), &s), MBX_OK);
  g_strays += (long)s.pending;
  return NULL;
}

int main(int argc, char **argv) {
  g_calls = arg_long(argc, argv, "--calls", 20000);
  watchdog_start(240000, "stray_replies");
  pthread_t t, c;
  CHECK_EQ(pthread_create(&t, NULL, target, NULL), 0);
  mbx_handle to = mbx_thread_handle(t);
  CHECK_EQ(pthread_create(&c, NULL, caller, &to), 0);
  pthread_join(c, NULL);
  CHECK_EQ(mbx_send(to, stop, NULL, NULL), MBX_OK);
  pthread_join(t, NULL);
  printf("calls=%ld stray_replies=%ld\n", g_calls, g_strays);
  CHECK_EQ(g_strays, 0);
  printf("PASS stray_replies\n");
  return 0;
}
