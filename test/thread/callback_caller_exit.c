// mbx-test-timeout: 60
/*
 * Issue 18 item 21: proxy.h says that when the caller of
 * mbx_proxy_callback exits before the outcome reaches it, neither callback
 * runs and arg is then the caller's to release (e.g. in a TSD destructor).
 * Following that rule must be safe: fn must not run on arg afterwards.
 * Here the caller "frees" arg at its exit (marks it dead; the memory stays
 * so the test sees the use instead of crashing) while the target has not
 * started fn yet; then the target drains.
 *
 * Then a caller that exits while fn is running waits for fn's end (fn may
 * still use arg), asleep: spinning is off on that thread, as after a long
 * spin. The report of a callback's outcome never woke such a sleeper (it
 * sent the outcome message and returned before looking at `sleeper`), so
 * the exit slept forever: a rare hang of cpp_api under TSan in CI, where
 * a spin ran out before fn returned. Fails (watchdog) before the fix.
 */
#include "test_threads.h"
#include "watchdog.h"

#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

enum { ALIVE = 0x600d, DEAD = 0xdead };
typedef struct work {
  _Atomic int magic;
} work;

static _Atomic int g_target_go, g_fn_ran_on_dead, g_fn_ran, g_done_or_cancel;
static mbx_handle g_target;
static pthread_key_t g_key;

static void fn(void *arg) {
  work *w = arg;
  atomic_fetch_add(&g_fn_ran, 1);
  if (atomic_load(&w->magic) != ALIVE)
    atomic_fetch_add(&g_fn_ran_on_dead, 1);
}
static void on_any(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_done_or_cancel, 1);
}
static void release_at_exit(void *arg) { /* as the docs suggest */
  atomic_store(&((work *)arg)->magic, DEAD);
}

static void *target(void *arg) {
  (void)arg;
  while (!atomic_load(&g_target_go))
    sleep_ms(1);
  while (mbx_wait(50) > 0) {
  }
  return NULL;
}

static work g_work = {ALIVE};
static void *caller(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_proxy_callback(g_target, fn, on_any, on_any, &g_work), MBX_OK);
  pthread_setspecific(g_key, &g_work);
  return NULL; /* exits before the outcome: drop; arg released */
}

/* The second case: fn runs until main lets it go, after the caller's exit
 * has gone to sleep waiting for it. */
static _Atomic int g_fn2_started, g_fn2_go, g_fn2_returned, g_target2_stop;
static void fn2(void *arg) {
  (void)arg;
  atomic_store(&g_fn2_started, 1);
  while (!atomic_load(&g_fn2_go))
    sleep_ms(1);
  atomic_store(&g_fn2_returned, 1);
}
static void *sleepy_caller(void *arg) {
  mbx_handle to = *(mbx_handle *)arg;
  mbx_set_spinning(0);
  CHECK_EQ(mbx_proxy_callback(to, fn2, on_any, on_any, NULL), MBX_OK);
  while (!atomic_load(&g_fn2_started))
    sleep_ms(1);
  return NULL; /* its exit waits for fn2 to return */
}

static void check_exit_waits_for_running_fn(void) {
  pthread_t t, c;
  CHECK_EQ(pthread_create(&t, NULL, serve_until, &g_target2_stop), 0);
  mbx_handle to = mbx_thread_handle(t);
  CHECK_EQ(pthread_create(&c, NULL, sleepy_caller, &to), 0);
  while (!atomic_load(&g_fn2_started))
    sleep_ms(1);
  sleep_ms(50); /* the caller's exit is asleep by now */
  CHECK_EQ(atomic_load(&g_fn2_returned), 0);
  atomic_store(&g_fn2_go, 1);
  CHECK_EQ(pthread_join(c, NULL), 0); /* hung here before the fix */
  CHECK_EQ(atomic_load(&g_fn2_returned), 1);
  atomic_store(&g_target2_stop, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  printf("a caller exiting during fn waited for it asleep, and was woken\n");
}

int main(void) {
  watchdog_start(30000, "callback_caller_exit");
  CHECK_EQ(pthread_key_create(&g_key, release_at_exit), 0);
  pthread_t t, c;
  CHECK_EQ(pthread_create(&t, NULL, target, NULL), 0);
  g_target = mbx_thread_handle(t);
  CHECK_EQ(pthread_create(&c, NULL, caller, NULL), 0);
  pthread_join(c, NULL);
  CHECK_EQ(atomic_load(&g_work.magic), DEAD);
  atomic_store(&g_target_go, 1);
  pthread_join(t, NULL);
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  printf("fn_ran=%d fn_ran_on_released_arg=%d callbacks=%d dropped=%llu\n",
         atomic_load(&g_fn_ran), atomic_load(&g_fn_ran_on_dead),
         atomic_load(&g_done_or_cancel),
         (unsigned long long)ps.callbacks_dropped);
  CHECK_EQ(atomic_load(&g_fn_ran_on_dead), 0);
  CHECK_EQ(atomic_load(&g_done_or_cancel), 0);
  check_exit_waits_for_running_fn();
  CHECK_EQ(atomic_load(&g_done_or_cancel), 0);
  printf("PASS callback_caller_exit\n");
  return 0;
}
