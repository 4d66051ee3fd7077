// mbx-test-timeout: 120
/*
 * Why a thread wants a queue of its own (emscripten #20059, #15186,
 * #12309): work that takes a lock which the target thread holds around its
 * own drain deadlocks when it is sent to the thread's automatic mailbox,
 * and does not when it is sent to a queue the thread drains at a point of
 * its choosing. The lock is an error-checking mutex, so the deadlock shows
 * as pthread_mutex_lock returning EDEADLK on the thread that already holds
 * it, instead of a hang. Three places where a thread drains with the lock
 * held:
 *   1. a library loop that holds its lock around mbx_wait;
 *   2. a blocking mbx_proxy_sync made with the lock held (the caller serves
 *      its automatic mailbox while it waits);
 *   3. (Emscripten) the JS event loop, while an asynchronous job holds the
 *      lock across event-loop turns.
 * In each, every work item sent to the automatic mailbox would have
 * deadlocked, and every one sent to the queue ran with the lock free.
 */
#include "check.h"
#include "test_support.h"

#include <errno.h>
#include <mbx/proxy.h>
#include <mbx/queue.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

enum { ITEMS = 10 };

static pthread_mutex_t g_lock;
static _Atomic int g_deadlocks, g_clean;

/* The work: needs the lock. */
static void needs_lock(void *arg) {
  (void)arg;
  int rc = pthread_mutex_lock(&g_lock);
  if (rc == EDEADLK) { /* a plain mutex would hang here forever */
    atomic_fetch_add(&g_deadlocks, 1);
    return;
  }
  CHECK_EQ(rc, 0);
  atomic_fetch_add(&g_clean, 1);
  CHECK_EQ(pthread_mutex_unlock(&g_lock), 0);
}
static void reset(void) {
  atomic_store(&g_deadlocks, 0);
  atomic_store(&g_clean, 0);
}
static void wait_for_items(int n) {
  for (int i = 0;
       i < 10000 && atomic_load(&g_deadlocks) + atomic_load(&g_clean) < n; i++)
    sleep_ms(1);
  CHECK_EQ(atomic_load(&g_deadlocks) + atomic_load(&g_clean), n);
}

typedef struct worker {
  int use_queue;
  mbx_handle q, self;
  _Atomic int ready, stop;
} worker;

static mbx_handle target_of(worker *w) { return w->use_queue ? w->q : w->self; }

/* ---- 1: a loop holding its lock around mbx_wait */
static void *wait_loop(void *p) {
  worker *w = p;
  if (w->use_queue)
    CHECK_EQ(mbx_queue_create(&w->q), MBX_OK);
  w->self = mbx_self();
  atomic_store(&w->ready, 1);
  while (!atomic_load(&w->stop)) {
    CHECK_EQ(pthread_mutex_lock(&g_lock), 0);
    mbx_wait(2); /* drains the automatic mailbox with the lock held */
    CHECK_EQ(pthread_mutex_unlock(&g_lock), 0);
    if (w->use_queue)
      mbx_queue_poll(w->q); /* our own safe point */
  }
  return NULL;
}

static int scenario_wait_loop(int use_queue) {
  worker w = {.use_queue = use_queue};
  pthread_t t;
  reset();
  CHECK_EQ(pthread_create(&t, NULL, wait_loop, &w), 0);
  while (!atomic_load(&w.ready))
    sleep_ms(1);
  for (int i = 0; i < ITEMS; i++)
    CHECK_EQ(mbx_send(target_of(&w), needs_lock, NULL, NULL), MBX_OK);
  wait_for_items(ITEMS);
  atomic_store(&w.stop, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  return atomic_load(&g_deadlocks);
}

/* ---- 2: a blocking proxy call made with the lock held */
static mbx_handle g_server;
static _Atomic int g_in_call;
static _Atomic int g_call_linger_ms;
static void slow_fn(void *arg) {
  (void)arg;
  atomic_store(&g_in_call, 1);
  /* Return once the work has run on the caller (it serves while it
   * waits), or after a while if it does not. */
  int linger = atomic_load(&g_call_linger_ms);
  for (int i = 0;
       i < linger && atomic_load(&g_deadlocks) + atomic_load(&g_clean) < ITEMS;
       i++)
    sleep_ms(1);
}
static void *server_main(void *p) {
  worker *w = p;
  g_server = mbx_self();
  atomic_store(&w->ready, 1);
  while (!atomic_load(&w->stop))
    mbx_wait(5);
  return NULL;
}
static void *caller_main(void *p) {
  worker *w = p;
  if (w->use_queue)
    CHECK_EQ(mbx_queue_create(&w->q), MBX_OK);
  w->self = mbx_self();
  atomic_store(&w->ready, 1);
  CHECK_EQ(pthread_mutex_lock(&g_lock), 0);
  CHECK_EQ(mbx_proxy_sync(g_server, slow_fn, NULL), MBX_OK);
  CHECK_EQ(pthread_mutex_unlock(&g_lock), 0);
  for (int n = 0; w->use_queue && n < ITEMS;) { /* our own safe point */
    int rc = mbx_queue_wait(w->q, 10000);
    CHECK(rc > 0);
    n += rc;
  }
  while (!atomic_load(&w->stop)) /* what is left on the automatic one */
    mbx_wait(5);
  return NULL;
}

static int scenario_blocking_call(int use_queue) {
  worker server = {0}, w = {.use_queue = use_queue};
  pthread_t s, t;
  reset();
  atomic_store(&g_in_call, 0);
  atomic_store(&g_call_linger_ms, use_queue ? 100 : 5000);
  CHECK_EQ(pthread_create(&s, NULL, server_main, &server), 0);
  while (!atomic_load(&server.ready))
    sleep_ms(1);
  CHECK_EQ(pthread_create(&t, NULL, caller_main, &w), 0);
  while (!atomic_load(&g_in_call)) /* t holds the lock, blocked in the call */
    sleep_ms(1);
  for (int i = 0; i < ITEMS; i++)
    CHECK_EQ(mbx_send(target_of(&w), needs_lock, NULL, NULL), MBX_OK);
  wait_for_items(ITEMS);
  atomic_store(&w.stop, 1);
  atomic_store(&server.stop, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_EQ(pthread_join(s, NULL), 0);
  return atomic_load(&g_deadlocks);
}

/* ---- 3 (Emscripten): the event loop, with a job holding the lock */
#ifdef __EMSCRIPTEN__
static worker g_looper;
static void job_begin(void *arg) { /* takes the lock across loop turns */
  (void)arg;
  CHECK_EQ(pthread_mutex_lock(&g_lock), 0);
}
static void job_end(void *arg) {
  (void)arg;
  CHECK_EQ(pthread_mutex_unlock(&g_lock), 0);
  if (g_looper.use_queue)
    CHECK_EQ(mbx_queue_poll(g_looper.q), ITEMS); /* our own safe point */
}
static void looper_quit(void *arg) {
  (void)arg;
  pthread_exit(NULL);
}
static void *looper_main(void *p) {
  worker *w = p;
  if (w->use_queue)
    CHECK_EQ(mbx_queue_create(&w->q), MBX_OK);
  w->self = mbx_self();
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store(&w->ready, 1);
  emscripten_exit_with_live_runtime();
  return NULL;
}
static int scenario_event_loop(int use_queue) {
  g_looper = (worker){.use_queue = use_queue};
  pthread_t t;
  reset();
  CHECK_EQ(pthread_create(&t, NULL, looper_main, &g_looper), 0);
  while (!atomic_load(&g_looper.ready))
    sleep_ms(1);
  CHECK_EQ(mbx_send(g_looper.self, job_begin, NULL, NULL), MBX_OK);
  for (int i = 0; i < ITEMS; i++)
    CHECK_EQ(mbx_send(target_of(&g_looper), needs_lock, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_send(g_looper.self, job_end, NULL, NULL), MBX_OK);
  wait_for_items(ITEMS);
  CHECK_EQ(mbx_send(g_looper.self, looper_quit, NULL, NULL), MBX_OK);
  CHECK_EQ(pthread_join(t, NULL), 0);
  return atomic_load(&g_deadlocks);
}
#endif

static void report(const char *where, int auto_deadlocks, int queue_deadlocks) {
  printf("%s: automatic mailbox %d/%d would deadlock, own queue %d/%d\n", where,
         auto_deadlocks, ITEMS, queue_deadlocks, ITEMS);
  CHECK_EQ(auto_deadlocks, ITEMS);
  CHECK_EQ(queue_deadlocks, 0);
}

int main(void) {
  pthread_mutexattr_t attr;
  CHECK_EQ(pthread_mutexattr_init(&attr), 0);
  CHECK_EQ(pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK), 0);
  CHECK_EQ(pthread_mutex_init(&g_lock, &attr), 0);
  report("lock held around mbx_wait", scenario_wait_loop(0),
         scenario_wait_loop(1));
  report("lock held across mbx_proxy_sync", scenario_blocking_call(0),
         scenario_blocking_call(1));
#ifdef __EMSCRIPTEN__
  report("lock held across event-loop turns", scenario_event_loop(0),
         scenario_event_loop(1));
#endif
  printf("PASS owned_queues_deadlock\n");
  return 0;
}
