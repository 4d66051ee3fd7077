/*
 * The library's browser claims, checked on a web page (run by
 * test/browser.test.mjs in headless Chromium through js/serve.mjs's harness
 * page, once as served and once from /no-wait-async/, where
 * Atomics.waitAsync is deleted on the page and in every worker):
 * - the page's main thread has a mailbox, served from its event loop;
 * - a pthread attached to its event loop is served from it;
 * - mbx_proxy_sync* from the page's main thread returns MBX_EWOULDBLOCK
 *   (also from inside a handler), and nothing runs;
 * - callbacks main -> event-loop worker -> main;
 * - a pthread (and an event-loop pthread) blocked in a sync call to main is
 *   served by main's event loop;
 * - a worker killed with worker.terminate() (and, on 3.1.6, with
 *   pthread_kill(SIGKILL)) has its queued messages canceled on main with
 *   MBX_CANCEL_ABNORMAL_EXIT and its blocked sync caller released with
 *   MBX_ECANCELED.
 * Args: --wait-async native|absent (what the page and workers must see).
 */
#include "../support/check.h"

#include <emscripten/emscripten.h>
#include <emscripten/threading.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <signal.h>
#if __has_include(<emscripten/version.h>)
#include <emscripten/version.h> /* __EMSCRIPTEN_MAJOR__ ... (newer releases) */
#endif

int mbx_test_terminate_thread(pthread_t thread); /* test_support.js */

/* pthread_kill(SIGKILL) terminates the worker on 3.1.6 (whose compiler
 * defines only the lowercase version macros); later releases raise the
 * signal on the thread instead (which ends the program). */
#if defined(__EMSCRIPTEN_MAJOR__)
#define KILL_IS_TERMINATE 0
#else
#define KILL_IS_TERMINATE                                                      \
  (__EMSCRIPTEN_major__ * 10000 + __EMSCRIPTEN_minor__ * 100 +                 \
       __EMSCRIPTEN_tiny__ <=                                                  \
   30106)
#endif

enum { BURST = 1000, SINGLES = 20, CALLBACKS = 200, SYNCS = 200, QUEUED = 20 };

/* 1 if this thread's JS realm has a native Atomics.waitAsync (what mbx
 * uses), 2 if it has a non-native one (a runtime's polyfill), 0 if none. */
static int wait_async_kind(void) {
  return EM_ASM_INT({
    var w = Atomics.waitAsync;
    if (typeof w != 'function')
      return 0;
    return Function.prototype.toString.call(w).indexOf('[native code]') >= 0
               ? 1
               : 2;
  });
}

static pthread_t g_main, g_worker;
static mbx_handle g_main_h, g_worker_h;
static int g_expect_native;
static _Atomic int g_worker_ready, g_worker_wait_async = -1;
static _Atomic int g_main_runs, g_worker_runs, g_wrong_thread;
static _Atomic int g_callbacks_done, g_callbacks_started, g_main_refusals;
static _Atomic int g_sync_on_main, g_cancels, g_bad_cancels, g_victim_ready;

static void expect_thread(pthread_t t) {
  if (!pthread_equal(pthread_self(), t))
    atomic_fetch_add(&g_wrong_thread, 1);
}
static void leaf(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_wrong_thread, 1000); /* must never run */
}

/* ---------------------------------------------------------- event-loop worker
 */
static void *worker_main(void *arg) {
  (void)arg;
  atomic_store(&g_worker_wait_async, wait_async_kind());
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store(&g_worker_ready, 1);
  emscripten_exit_with_live_runtime();
  return NULL;
}
static void run_on_main(void *arg) {
  (void)arg;
  expect_thread(g_main);
  atomic_fetch_add(&g_main_runs, 1);
}
static void run_on_worker(void *arg) {
  (void)arg;
  expect_thread(g_worker);
  atomic_fetch_add(&g_worker_runs, 1);
}

/* Burst and singles to `to`, each delivered from its event loop. */
static long burst_and_singles(mbx_handle to, mbx_run_fn fn, _Atomic int *runs) {
  mbx_stats before, after;
  mbx_stats_global(&before);
  int expected = atomic_load(runs);
  for (int i = 0; i < BURST; i++)
    CHECK_EQ(mbx_send(to, fn, NULL, NULL), MBX_OK);
  expected += BURST;
  wait_for_count(runs, expected);
  for (int i = 0; i < SINGLES; i++) {
    CHECK_EQ(mbx_send(to, fn, NULL, NULL), MBX_OK);
    wait_for_count(runs, ++expected);
  }
  mbx_stats_global(&after);
  long wakeups = (long)(after.wakeups - before.wakeups);
  CHECK(wakeups >= 1 && wakeups < BURST);
  return wakeups;
}

/* ---------------------------------------------------------- callbacks */
static void cb_on_worker(void *arg) {
  (void)arg;
  expect_thread(g_worker);
}
static void cb_canceled(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_wrong_thread, 1000);
}
/* On main: the outcome of one callback; start the next. */
static void cb_done_on_main(void *arg) {
  (void)arg;
  expect_thread(g_main);
  if (atomic_fetch_add(&g_callbacks_done, 1) + 1 < CALLBACKS) {
    atomic_fetch_add(&g_callbacks_started, 1);
    CHECK_EQ(mbx_proxy_callback(g_worker_h, cb_on_worker, cb_done_on_main,
                                cb_canceled, NULL),
             MBX_OK);
  }
}
static void start_callbacks_on_main(void *arg) {
  (void)arg;
  expect_thread(g_main);
  atomic_fetch_add(&g_callbacks_started, 1);
  CHECK_EQ(mbx_proxy_callback(g_worker_h, cb_on_worker, cb_done_on_main,
                              cb_canceled, NULL),
           MBX_OK);
}

/* ---------------------------------------------------------- sync to main */
/* On main, called by a pthread blocked on it: main itself may not block. */
static void sync_fn_on_main(void *caller) {
  expect_thread(g_main);
  atomic_fetch_add(&g_sync_on_main, 1);
  if (caller) {
    mbx_handle c = *(mbx_handle *)caller;
    if (mbx_proxy_sync(c, leaf, NULL) == MBX_EWOULDBLOCK &&
        mbx_proxy_sync_timed(c, leaf, NULL, 100) == MBX_EWOULDBLOCK)
      atomic_fetch_add(&g_main_refusals, 1);
  }
}
static void finish_ctx(void *ctx) { CHECK_EQ(mbx_proxy_finish(ctx), MBX_OK); }
static void ctx_fn_on_main(mbx_proxy_ctx *ctx, void *arg) {
  (void)arg;
  expect_thread(g_main);
  atomic_fetch_add(&g_sync_on_main, 1);
  /* Finished later, from main's next event-loop task. */
  CHECK_EQ(mbx_proxy_async(mbx_self(), finish_ctx, NULL, ctx), MBX_OK);
}
static _Atomic int g_worker_sync_rc = 1;
/* On the event-loop worker: block in a sync call to main. */
static void worker_syncs_main(void *arg) {
  (void)arg;
  expect_thread(g_worker);
  atomic_store(&g_worker_sync_rc,
               mbx_proxy_sync(g_main_h, sync_fn_on_main, NULL));
}

/* ---------------------------------------------------------- killed workers */
static void on_cancel(void *arg, int reason) {
  (void)arg;
  if (reason != MBX_CANCEL_ABNORMAL_EXIT ||
      !pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_bad_cancels, 1);
  atomic_fetch_add(&g_cancels, 1);
}
static void *blocked_victim(void *arg) {
  (void)arg;
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
  atomic_store(&g_victim_ready, 1);
  pthread_mutex_lock(&lock);
  for (;;)
    pthread_cond_wait(&never, &lock);
  return NULL;
}
static void *event_loop_victim(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store(&g_victim_ready, 1);
  emscripten_exit_with_live_runtime();
  return NULL;
}
static _Atomic int g_in_endless;
static void endless(void *arg) {
  (void)arg;
  atomic_store(&g_in_endless, 1);
  for (;;)
    sleep_ms(1); /* the worker dies in here */
}
static _Atomic int g_sync_victim_rc = 1;
static void *sync_caller(void *to) {
  atomic_store(&g_sync_victim_rc,
               mbx_proxy_sync(*(mbx_handle *)to, endless, NULL));
  return NULL;
}
static _Atomic int g_terminated;
static void terminate_on_main(void *victim) {
  expect_thread(g_main);
  CHECK_EQ(mbx_test_terminate_thread(*(pthread_t *)victim), 1);
  atomic_fetch_add(&g_terminated, 1);
}

/* Kill one victim (how = 0: worker.terminate() from main, 1:
 * pthread_kill(SIGKILL) from here) while QUEUED messages wait in its
 * mailbox and a pthread is blocked in a sync call running on it. */
static void kill_one(int how, int in_event_loop) {
  atomic_store(&g_victim_ready, 0);
  atomic_store(&g_cancels, 0);
  atomic_store(&g_sync_victim_rc, 1);
  pthread_t victim, caller;
  CHECK_EQ(pthread_create(&victim, NULL,
                          in_event_loop ? event_loop_victim : blocked_victim,
                          NULL),
           0);
  mbx_handle to = mbx_thread_handle(victim);
  CHECK(!mbx_handle_is_null(to));
  while (!atomic_load(&g_victim_ready))
    sleep_ms(1);
  if (in_event_loop) { /* a sync call runs on it when it dies */
    atomic_store(&g_in_endless, 0);
    CHECK_EQ(pthread_create(&caller, NULL, sync_caller, &to), 0);
    while (!atomic_load(&g_in_endless))
      sleep_ms(1);
  }
  for (int i = 0; i < QUEUED; i++)
    CHECK_EQ(mbx_send(to, leaf, on_cancel, NULL), MBX_OK);
  if (how == 0) {
    CHECK_EQ(mbx_send(g_main_h, terminate_on_main, NULL, &victim), MBX_OK);
  } else {
#if KILL_IS_TERMINATE
    CHECK_EQ(pthread_kill(victim, SIGKILL), 0);
#endif
  }
  wait_for_count(&g_cancels, QUEUED);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  if (in_event_loop) {
    CHECK_EQ(pthread_join(caller, NULL), 0); /* released by the death */
    CHECK_EQ(atomic_load(&g_sync_victim_rc), MBX_ECANCELED);
  }
  CHECK_EQ(mbx_send(to, leaf, on_cancel, NULL), MBX_ECLOSED);
}

/* ---------------------------------------------------------- coordinator */
static void finish(void *arg) {
  (void)arg;
  CHECK_EQ(atomic_load(&g_wrong_thread), 0);
  printf("PASS browser_claims\n");
  fflush(stdout);
  emscripten_force_exit(0);
}

static void *coordinator(void *arg) {
  (void)arg;
  while (!atomic_load(&g_worker_ready))
    sleep_ms(1);
  int kind = atomic_load(&g_worker_wait_async);
  printf("worker realm: waitAsync %s\n", kind == 1   ? "native"
                                         : kind == 2 ? "polyfilled"
                                                     : "absent");
  CHECK_EQ(kind == 1, g_expect_native);

  long w_main = burst_and_singles(g_main_h, run_on_main, &g_main_runs);
  printf("ok main-thread mailbox: %d-message burst + %d singles run from the "
         "page's event loop (%ld wakeups)\n",
         BURST, SINGLES, w_main);
  long w_worker = burst_and_singles(g_worker_h, run_on_worker, &g_worker_runs);
  printf("ok event-loop pthread: %d-message burst + %d singles run from its "
         "event loop (%ld wakeups)\n",
         BURST, SINGLES, w_worker);

  CHECK_EQ(mbx_send(g_main_h, start_callbacks_on_main, NULL, NULL), MBX_OK);
  wait_for_count(&g_callbacks_done, CALLBACKS);
  printf("ok callbacks main -> worker -> main: %d chained\n", CALLBACKS);

  mbx_handle self = mbx_self();
  for (int i = 0; i < SYNCS; i++)
    CHECK_EQ(mbx_proxy_sync(g_main_h, sync_fn_on_main, i ? NULL : &self),
             MBX_OK);
  CHECK_EQ(mbx_proxy_sync_timed(g_main_h, sync_fn_on_main, NULL, 30000),
           MBX_OK);
  CHECK_EQ(mbx_proxy_sync_with_ctx(g_main_h, ctx_fn_on_main, NULL), MBX_OK);
  CHECK_EQ(mbx_send(g_worker_h, worker_syncs_main, NULL, NULL), MBX_OK);
  for (int i = 0; i < 10000 && atomic_load(&g_worker_sync_rc) == 1; i++)
    sleep_ms(1);
  CHECK_EQ(atomic_load(&g_worker_sync_rc), MBX_OK);
  CHECK_EQ(atomic_load(&g_sync_on_main), SYNCS + 3);
  CHECK_EQ(atomic_load(&g_main_refusals), 1);
  printf("ok pthreads blocked in sync calls to main served (%d sync, timed, "
         "ctx, and from an event-loop pthread); main's own sync from a "
         "handler: MBX_EWOULDBLOCK\n",
         SYNCS);

  kill_one(0, 0);
  kill_one(0, 1);
  printf("ok worker.terminate(): %d queued canceled on main with "
         "MBX_CANCEL_ABNORMAL_EXIT (blocked and event-loop victims), a sync "
         "caller released with MBX_ECANCELED\n",
         QUEUED);
#if KILL_IS_TERMINATE
  kill_one(1, 0);
  kill_one(1, 1);
  printf("ok pthread_kill(SIGKILL): the same\n");
#else
  printf("skip pthread_kill(SIGKILL): raises the signal on this release, "
         "does not terminate the worker\n");
#endif
  CHECK_EQ(atomic_load(&g_wrong_thread), 0);
  CHECK_EQ(mbx_send(g_main_h, finish, NULL, NULL), MBX_OK);
  return NULL;
}

int main(int argc, char **argv) {
  const char *expect =
      argc > 2 && strcmp(argv[1], "--wait-async") == 0 ? argv[2] : "native";
  g_expect_native = strcmp(expect, "native") == 0;
  g_main = pthread_self();
  g_main_h = mbx_main_thread();
  CHECK(!mbx_handle_is_null(g_main_h));
  CHECK(emscripten_is_main_browser_thread()); /* a page, not Node */
  int kind = wait_async_kind();
  printf("page realm: waitAsync %s (expected %s)\n",
         kind == 1   ? "native"
         : kind == 2 ? "polyfilled"
                     : "absent",
         expect);
  CHECK_EQ(kind == 1, g_expect_native);
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);

  CHECK_EQ(pthread_create(&g_worker, NULL, worker_main, NULL), 0);
  CHECK_EQ(pthread_detach(g_worker), 0);
  g_worker_h = mbx_thread_handle(g_worker);
  CHECK(!mbx_handle_is_null(g_worker_h));

  /* The page's main thread must not block: refused, nothing queued. */
  mbx_stats before, after;
  mbx_stats_global(&before);
  CHECK_EQ(mbx_proxy_set_blocking(-1), -1);
  CHECK_EQ(mbx_proxy_sync(g_worker_h, leaf, NULL), MBX_EWOULDBLOCK);
  CHECK_EQ(mbx_proxy_sync_timed(g_worker_h, leaf, NULL, 1000), MBX_EWOULDBLOCK);
  mbx_stats_global(&after);
  CHECK_EQ(after.sent, before.sent);
  printf("ok mbx_proxy_sync from the page's main thread: MBX_EWOULDBLOCK\n");

  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, coordinator, NULL), 0);
  CHECK_EQ(pthread_detach(t), 0);
  emscripten_exit_with_live_runtime();
  return 99;
}
