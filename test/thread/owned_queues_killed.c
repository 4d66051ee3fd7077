// mbx-test-flavors: wasm
// mbx-test-timeout: 60
/*
 * A worker killed while it drains a queue of its own (issue 18 item 22b,
 * for queues). The main thread closes the dead worker's mailbox and its
 * queues as orphans; a sync caller of the queue must get MBX_ECANCELED
 * exactly once, never wait forever, never be settled twice:
 * (a) killed after it popped the request from its queue, before the
 *     request was on its running list (test hook mbx__test_park_after_pop):
 *     the queue's last pop goes to the proxy layer's on_orphan;
 * (b) killed while the request's fn runs: the request is on the thread's
 *     running list, and the queue's pop is no longer reported (its drain
 *     clears it, mbx__self_popped_clear), so it is canceled once: no call
 *     record is disposed of twice (abandoned stays, calls_live returns to
 *     where it was).
 */
#include "test_support.h"
#include "watchdog.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <mbx/proxy.h>
#include <mbx/queue.h>
#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_park_after_pop(_Atomic int *parked);

static _Atomic int g_ready, g_caller_done, g_in_fn, g_park, g_parked;
static int g_caller_rc;
static mbx_handle g_q;
static pthread_t g_victim;
static uint64_t g_live_before, g_abandoned_before;

static void work(void *arg) {
  (void)arg;
  atomic_store(&g_in_fn, 1);
  for (;;) /* until the worker is killed */
    sleep_ms(1000);
}
static void *victim(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_queue_create(&g_q), MBX_OK);
  if (atomic_load(&g_park))
    mbx__test_park_after_pop(&g_parked);
  atomic_store(&g_ready, 1);
  mbx_queue_wait(g_q, -1); /* pops the request, then parks or runs it */
  return NULL;
}
static void *caller(void *arg) {
  (void)arg;
  g_caller_rc = mbx_proxy_sync(g_q, work, NULL);
  atomic_store(&g_caller_done, 1);
  return NULL;
}
static _Atomic int g_terminated;
static void terminate_on_main(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_test_terminate_thread(g_victim), 1);
  atomic_store(&g_terminated, 1);
}

static void scenario(int park) {
  atomic_store(&g_ready, 0);
  atomic_store(&g_caller_done, 0);
  atomic_store(&g_in_fn, 0);
  atomic_store(&g_terminated, 0);
  atomic_store(&g_park, park);
  atomic_store(&g_parked, 0);
  CHECK_EQ(pthread_create(&g_victim, NULL, victim, NULL), 0);
  while (!atomic_load(&g_ready))
    sleep_ms(1);
  pthread_t c;
  CHECK_EQ(pthread_create(&c, NULL, caller, NULL), 0);
  /* popped, then parked; or inside fn */
  CHECK(wait_flag_ms(park ? &g_parked : &g_in_fn, 10000));
  CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, NULL), MBX_OK);
  if (!wait_flag_ms(&g_caller_done, 3000)) {
    fprintf(stderr, "FAIL (%s) sync caller still blocked 3 s after the kill\n",
            park ? "popped" : "running");
    fflush(stderr);
    _exit(1);
  }
  CHECK_EQ(pthread_join(c, NULL), 0);
  CHECK_EQ(g_caller_rc, MBX_ECANCELED);
  /* The caller may return before main has closed the queue: the dead
   * owner's running work is canceled first (its mailbox's orphan close),
   * its queues next. */
  int held = MBX_OK;
  for (int i = 0; i < 3000 && held == MBX_OK; i++) {
    held = mbx_hold(g_q);
    if (held == MBX_OK) {
      CHECK_EQ(mbx_release(g_q), MBX_OK);
      sleep_ms(1);
    }
  }
  CHECK_EQ(held, MBX_ECLOSED);
  CHECK_EQ(mbx_send(g_q, work, NULL, NULL), MBX_ECLOSED);
  printf("killed while its queue's request was %s: caller %s\n",
         park ? "popped, not started" : "running", mbx_strerror(g_caller_rc));
}

static void finish(void *arg) {
  (void)arg;
  printf("PASS owned_queues_killed\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
static void *coordinator(void *arg) {
  (void)arg;
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  g_live_before = ps.calls_live;
  g_abandoned_before = ps.abandoned;
  scenario(1);
  scenario(0);
  mbx_proxy_stats_get(&ps);
  CHECK_EQ(ps.calls_live, g_live_before);
  /* Nothing disposed of twice: a second cancel of a settled call would
   * count it as abandoned (and drop a reference it does not hold). */
  CHECK_EQ(ps.abandoned, g_abandoned_before);
  CHECK_EQ(mbx_send(mbx_main_thread(), finish, NULL, NULL), MBX_OK);
  return NULL;
}

int main(void) {
  watchdog_start(30000, "owned_queues_killed");
  test_main_serves_loop(coordinator, NULL);
  return 99; /* not reached */
}
#else
int main(void) {
  printf("PASS owned_queues_killed (Emscripten only)\n");
  return 0;
}
#endif
