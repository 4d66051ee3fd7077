// mbx-test-args: --rounds 300
// mbx-test-args-wasm-asan: --rounds 40
// mbx-test-timeout: 120
// (Emscripten < 3.1.14 under ASan leaks each exited thread's stack: see
//  test/thread/churn.c; 300 thread lifetimes exhaust 3.1.6's ASan heap.)
/*
 * Lifecycle hooks, watches and the broadcast's deadline (issue 14):
 * start hooks run on the new thread before its code; close hooks once per
 * closed mailbox on the dying thread; a watch fires exactly once, also when
 * registered after the close (MBX_WATCH_WAS_CLOSED), after reuse
 * (MBX_WATCH_WAS_STALE), or concurrently with the close; unwatch stops it;
 * a watcher's exit drops its watches. A target blocked in pthread_cond_wait
 * (outside the library) makes a broadcast time out and is reported late,
 * and the latency it adds is measured.
 */
#include "check.h"

#include <mbx/broadcast.h>
#include <mbx/lifecycle.h>
#include <mbx/thread.h>
#include <pthread.h>

static _Thread_local int tls_started;
static _Atomic int g_start_runs, g_close_runs, g_close_on_owner;
static void on_start(void *arg) {
  (void)arg;
  tls_started = 1;
  atomic_fetch_add(&g_start_runs, 1);
}
static void on_close(mbx_handle h, int reason, void *arg) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_close_runs, 1);
  if (mbx_handle_equal(h, mbx_self())) /* still bound: on the dying thread */
    atomic_fetch_add(&g_close_on_owner, 1);
}
static void *check_started(void *arg) {
  (void)arg;
  CHECK_EQ(tls_started, 1);
  return NULL;
}
static void *just_exit(void *arg) {
  (void)arg;
  return NULL;
}

static _Atomic int g_fires;
static int g_last_reason;
static void on_fire(mbx_handle t, int reason, void *arg) {
  (void)t;
  (void)arg;
  g_last_reason = reason;
  atomic_fetch_add(&g_fires, 1);
}

/* Drains our mailbox for ms, at least once: a thread descheduled past the
 * end drained nothing, and a watch's message went unrun (CI, stop 22). */
static void drain_for(double ms) {
  double end = now_ms() + ms;
  do
    mbx_wait(1);
  while (now_ms() < end);
}

/* Drains until want watches fired (their messages may still be on their
 * way from the closing threads) or 10 s passed, then briefly on, so that
 * one too many shows. */
static void drain_until_fires(int want) {
  double end = now_ms() + 10000;
  while (atomic_load(&g_fires) < want && now_ms() < end)
    mbx_wait(1);
  drain_for(5);
}

/* A thread that sets up watches and exits without draining. */
static void *watch_and_exit(void *arg) {
  pthread_t *target = arg;
  CHECK_EQ(mbx_watch(mbx_thread_handle(*target), on_fire, NULL, NULL), MBX_OK);
  return NULL;
}
static void do_exit(void *arg) {
  (void)arg;
  pthread_exit(NULL);
}
static void *wait_forever(void *arg) {
  (void)arg;
  while (mbx_wait(-1) >= 0)
    ;
  return NULL;
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static _Atomic int g_blocked, g_release;
static void *blocked_in_cond(void *arg) {
  double ms = *(double *)arg;
  pthread_mutex_lock(&g_mu);
  atomic_store(&g_blocked, 1);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long ns = ts.tv_nsec + (long long)(ms * 1e6); /* long: 32 bits */
  ts.tv_sec += (time_t)(ns / 1000000000LL);
  ts.tv_nsec = (long)(ns % 1000000000LL);
  while (!atomic_load(&g_release))
    if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) != 0)
      break;
  pthread_mutex_unlock(&g_mu);
  mbx_poll(); /* back in the library: answers */
  return NULL;
}
static _Atomic int g_bc_runs;
static void bc_fn(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_bc_runs, 1);
}

int main(int argc, char **argv) {
  int rounds = (int)arg_long(argc, argv, "--rounds", 300);
  /* Start and close hooks. */
  uint32_t sid, cid;
  CHECK_EQ(mbx_on_thread_start(on_start, NULL, &sid), MBX_OK);
  CHECK_EQ(mbx_on_mailbox_close(on_close, NULL, &cid), MBX_OK);
  CHECK_EQ(mbx_on_thread_start(NULL, NULL, NULL), MBX_EINVAL);
  pthread_t t;
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(pthread_create(&t, NULL, check_started, NULL), 0);
    pthread_join(t, NULL);
  }
  CHECK_EQ(atomic_load(&g_start_runs), 4);
  CHECK_EQ(atomic_load(&g_close_runs), 4);
  CHECK_EQ(atomic_load(&g_close_on_owner), 4);
  CHECK_EQ(mbx_lifecycle_remove(sid), MBX_OK);
  CHECK_EQ(mbx_lifecycle_remove(cid), MBX_OK);
  CHECK_EQ(mbx_lifecycle_remove(cid), MBX_EINVAL);

  /* Watch of an already closed mailbox: fires at once. */
  CHECK_EQ(pthread_create(&t, NULL, wait_forever, NULL), 0);
  mbx_handle h = mbx_thread_handle(t); /* alive: not null */
  CHECK_EQ(mbx_send(h, do_exit, NULL, NULL), MBX_OK);
  pthread_join(t, NULL);
  CHECK_EQ(mbx_watch(h, on_fire, NULL, NULL), MBX_OK);
  drain_until_fires(1);
  CHECK_EQ(atomic_load(&g_fires), 1);
  CHECK(g_last_reason == MBX_WATCH_WAS_CLOSED ||
        g_last_reason == MBX_WATCH_WAS_STALE);
  CHECK_EQ(mbx_watch(MBX_NULL_HANDLE, on_fire, NULL, NULL), MBX_EINVAL);

  /* Stale: reuse the record (no quarantine), then watch the old handle. */
  mbx_set_quarantine(0);
  for (int i = 0; i < 8 && mbx_hold(h) != MBX_ESTALE; i++) {
    CHECK_EQ(pthread_create(&t, NULL, just_exit, NULL), 0);
    pthread_join(t, NULL);
  }
  if (mbx_hold(h) == MBX_ESTALE) {
    atomic_store(&g_fires, 0);
    CHECK_EQ(mbx_watch(h, on_fire, NULL, NULL), MBX_OK);
    drain_until_fires(1);
    CHECK_EQ(atomic_load(&g_fires), 1);
    CHECK_EQ(g_last_reason, MBX_WATCH_WAS_STALE);
  }
  mbx_set_quarantine(64);

  /* Unwatch: armed, and fired but not yet delivered. */
  atomic_store(&g_fires, 0);
  CHECK_EQ(pthread_create(&t, NULL, wait_forever, NULL), 0);
  mbx_handle live = mbx_thread_handle(t);
  mbx_watch_id id;
  CHECK_EQ(mbx_watch(live, on_fire, NULL, &id), MBX_OK);
  CHECK_EQ(mbx_unwatch(id), MBX_OK);
  CHECK_EQ(mbx_unwatch(id), MBX_EINVAL);
  CHECK_EQ(mbx_watch(live, on_fire, NULL, &id), MBX_OK);
  CHECK_EQ(mbx_send(live, do_exit, NULL, NULL), MBX_OK);
  pthread_join(t, NULL); /* fired: the message waits in our mailbox */
  CHECK_EQ(mbx_unwatch(id), MBX_OK);
  drain_for(5);
  CHECK_EQ(atomic_load(&g_fires), 0);

  /* Watch racing with the close, and a watcher that exits first. */
  for (int i = 0; i < rounds; i++) {
    CHECK_EQ(pthread_create(&t, NULL, just_exit, NULL), 0);
    mbx_handle th = mbx_thread_handle(t);
    if (!mbx_handle_is_null(th))
      CHECK_EQ(mbx_watch(th, on_fire, NULL, NULL), MBX_OK);
    else
      atomic_fetch_add(&g_fires, 1); /* already gone before the lookup */
    pthread_join(t, NULL);
  }
  drain_until_fires(rounds);
  CHECK_EQ(atomic_load(&g_fires), rounds);
  pthread_t target, watcher;
  CHECK_EQ(pthread_create(&target, NULL, wait_forever, NULL), 0);
  CHECK_EQ(pthread_create(&watcher, NULL, watch_and_exit, &target), 0);
  pthread_join(watcher, NULL); /* its armed watch is dropped at its exit */
  CHECK_EQ(mbx_send(mbx_thread_handle(target), do_exit, NULL, NULL), MBX_OK);
  pthread_join(target, NULL);
  drain_for(5);
  CHECK_EQ(atomic_load(&g_fires), rounds);

  /* Foreign wait: a target in pthread_cond_timedwait until we release it
   * (10 s at most). It used to wait a fixed 200 ms: a main thread
   * descheduled for 150 ms before its broadcast would have found it
   * answering. */
  double block_ms = 10000;
  CHECK_EQ(pthread_create(&t, NULL, blocked_in_cond, &block_ms), 0);
  while (!atomic_load(&g_blocked))
    sleep_ms(1);
  mbx_broadcast_report r;
  mbx_handle late[4];
  double t0 = now_ms();
  int rc = mbx_broadcast(bc_fn, NULL, 0, 50, &r, late, 4);
  double waited = now_ms() - t0;
  CHECK_EQ(rc, MBX_ETIMEDOUT);
  CHECK(r.late >= 1);
  int found = 0;
  for (uint32_t i = 0; i < r.late && i < 4; i++)
    found |= mbx_handle_equal(late[i], mbx_thread_handle(t));
  CHECK(found);
  CHECK(waited >= 45 && waited < 1000);
  /* Released, the target answers (or exits, which counts too): without a
   * deadline the broadcast then completes. */
  pthread_mutex_lock(&g_mu);
  atomic_store(&g_release, 1);
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  t0 = now_ms();
  rc = mbx_broadcast(bc_fn, NULL, 0, -1, &r, NULL, 0);
  double full = now_ms() - t0;
  CHECK_EQ(rc, MBX_OK);
  pthread_join(t, NULL);
  printf("foreign wait: broadcast with 50 ms deadline returned after %.1f ms "
         "(late=1 reported); released, the target answered one without "
         "deadline in %.1f ms\n",
         waited, full);
  printf("PASS lifecycle_watch\n");
  return 0;
}
