// mbx-test-flavors: wasm wasm-asan
// mbx-test-broken-before: wasm-asan 3.1.14 the ASan build of 3.1.6 traps after
// PASS at runtime exit in dlfree from _emscripten_thread_free_data (likely:
// thread data allocated by ASan, freed past it, fixed upstream in emscripten PR
// 17090; see docs/emscripten-platform-notes.md) mbx-test-timeout: 60
/*
 * Issue 18 item 22 (b): a worker killed after it popped a sync request
 * but before the request is on its "running" list (an allocation and a
 * prune sit in between) must not leave the sync caller waiting forever:
 * killed workers' popped work is canceled (MBX_ECANCELED). The test-only
 * core hook mbx__test_park_after_pop stops the owner at exactly that point
 * and says when it is there; the kill comes only then (a kill inside the
 * pop is another case: <mbx/thread.h>, "Abnormal death").
 * The caller is joined before the program exits, so that the ASan flavour's
 * leak check runs with no caller in its exit: one preempted there with the
 * only pointer to its node block in a wasm local (not in memory the check
 * scans) made that block look leaked (CI, stop 22; core/nodes.c now drops
 * the block before it forgets it).
 */
#include "test_support.h"
#include "watchdog.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_park_after_pop(_Atomic int *parked) __attribute__((weak));

static _Atomic int g_ready, g_parked, g_caller_done;
static int g_caller_rc;
static mbx_handle g_target;
static pthread_t g_victim;

static void work(void *arg) { (void)arg; }
static void *victim(void *arg) {
  (void)arg;
  mbx__test_park_after_pop(&g_parked);
  atomic_store(&g_ready, 1);
  mbx_wait(-1); /* pops the request, then parks */
  return NULL;
}
static void *caller(void *arg) {
  (void)arg;
  g_caller_rc = mbx_proxy_sync(g_target, work, NULL);
  atomic_store(&g_caller_done, 1);
  return NULL;
}
static void terminate_on_main(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_test_terminate_thread(g_victim), 1);
}
static void check(void *arg) {
  (void)arg;
  if (!atomic_load(&g_caller_done)) {
    fprintf(stderr, "FAIL sync caller still blocked 3 s after the kill\n");
    fflush(stderr);
    emscripten_force_exit(1);
  }
  printf("caller=%s\n", mbx_strerror(g_caller_rc));
  CHECK_EQ(g_caller_rc, MBX_ECANCELED);
  printf("PASS kill_before_running\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
static void *coordinator(void *arg) {
  (void)arg;
  CHECK_EQ(pthread_create(&g_victim, NULL, victim, NULL), 0);
  g_target = mbx_thread_handle(g_victim);
  while (!atomic_load(&g_ready))
    sleep_ms(1);
  pthread_t c;
  CHECK_EQ(pthread_create(&c, NULL, caller, NULL), 0);
  CHECK(wait_flag_ms(&g_parked, 10000)); /* popped the request, parked */
  CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, NULL), MBX_OK);
  if (wait_flag_ms(&g_caller_done, 3000))
    CHECK_EQ(pthread_join(c, NULL), 0); /* its exit is over: see above */
  CHECK_EQ(mbx_send(mbx_main_thread(), check, NULL, NULL), MBX_OK);
  return NULL;
}

int main(void) {
  if (!mbx__test_park_after_pop) {
    fprintf(stderr, "FAIL hook missing: mbx__test_park_after_pop\n");
    return 1;
  }
  watchdog_start(30000, "kill_before_running");
  test_main_serves_loop(coordinator, NULL);
  return 99; /* not reached */
}
#else
int main(void) {
  printf("PASS kill_before_running (Emscripten only)\n");
  return 0;
}
#endif
