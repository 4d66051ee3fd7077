// mbx-test-timeout: 60
/*
 * Issue 18 item 21: proxy.h says that when the caller of
 * mbx_proxy_callback exits before the outcome reaches it, neither callback
 * runs and arg is then the caller's to release (e.g. in a TSD destructor).
 * Following that rule must be safe: fn must not run on arg afterwards.
 * Here the caller "frees" arg at its exit (marks it dead; the memory stays
 * so the test sees the use instead of crashing) while the target has not
 * started fn yet; then the target drains.
 */
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
  CHECK_EQ(mbx_proxy_callback(g_target, fn, on_any, on_any, &g_work),
           MBX_OK);
  pthread_setspecific(g_key, &g_work);
  return NULL; /* exits before the outcome: drop; arg released */
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
  printf("PASS callback_caller_exit\n");
  return 0;
}
