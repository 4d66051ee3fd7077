// mbx-test-flavors: wasm wasm-asan
// mbx-test-args: --rounds 6
// mbx-test-timeout: 120
/*
 * Abnormal death (Emscripten): the worker of a live pthread is terminated,
 * so the thread never runs its exit path. The mailbox must still close and
 * every queued message must be canceled, on the main thread, with
 * MBX_CANCEL_ABNORMAL_EXIT, so that nobody waits forever: here a sender
 * thread blocks until its message is run or canceled. Victims alternate
 * between a thread blocked in pthread_cond_wait (never polling) and an
 * event-loop thread terminated in the middle of a handler. Afterwards sends
 * to the dead thread fail with MBX_ECLOSED, and new threads keep working.
 * Proxied work (<mbx/proxy.h>) is not left hanging either: a sync call
 * whose fn is running when the worker dies, and a context the dead thread
 * left unfinished, both return MBX_ECANCELED to their blocked callers.
 * A worker killed before its thread's start routine ran (a test hook holds
 * it there) gets the same: its queue canceled on main, and its start
 * record freed (before, it stayed allocated for good).
 * (Natively threads cannot be killed one by one: wasm only.)
 */
#include "check.h"
#include "test_support.h"
#include "test_threads.h"

#ifdef __EMSCRIPTEN__

#include <emscripten/emscripten.h>
#include <emscripten/threading.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

enum { QUEUED = 20 };

void mbx__test_prestart_point_ms(int ms, _Atomic int *reached);
int mbx__starts_pending(void);

static pthread_t g_main;
static _Atomic int g_ready, g_in_handler, g_runs, g_cancels, g_bad_cancels;
static _Atomic int g_waiter_sent, g_waiter_released;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_runs, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  if (reason != MBX_CANCEL_ABNORMAL_EXIT ||
      !pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_bad_cancels, 1);
  atomic_fetch_add(&g_cancels, 1);
}

static void endless_handler(void *arg) {
  (void)arg;
  atomic_store(&g_in_handler, 1);
  for (;;)
    sleep_ms(5);
}

/* A sender that blocks until its message is run or canceled. */
static _Atomic int g_done_word;
static void done_run(void *arg) {
  (void)arg;
  atomic_store(&g_done_word, 1);
  emscripten_futex_wake((void *)&g_done_word, 1);
}
static void done_cancel(void *arg, int reason) {
  on_cancel(arg, reason);
  done_run(arg);
}
static void *blocking_sender(void *to) {
  atomic_store(&g_done_word, 0);
  CHECK_EQ(mbx_send(*(mbx_handle *)to, done_run, done_cancel, NULL), MBX_OK);
  atomic_store(&g_waiter_sent, 1);
  while (!atomic_load(&g_done_word))
    emscripten_futex_wait((void *)&g_done_word, 0, 10000);
  atomic_store(&g_waiter_released, 1);
  return NULL;
}

/* Proxied work on a victim: fn never returns, or a context fn returns
 * without finishing. The caller thread blocks until the victim is killed. */
static void endless_fn(void *arg) { endless_handler(arg); }
static void unfinished_ctx_fn(mbx_proxy_ctx *ctx, void *arg) {
  (void)ctx; /* never finished: the victim dies first */
  (void)arg;
  atomic_store(&g_in_handler, 1);
}
static _Atomic int g_caller_rc = 1;
static void *sync_caller(void *to) {
  atomic_store(&g_caller_rc,
               mbx_proxy_sync(*(mbx_handle *)to, endless_fn, NULL));
  return NULL;
}
static void *ctx_caller(void *to) {
  atomic_store(&g_caller_rc, mbx_proxy_sync_with_ctx(*(mbx_handle *)to,
                                                     unfinished_ctx_fn, NULL));
  return NULL;
}

/* Runs on main: Emscripten terminates workers from the main thread. */
static _Atomic int g_terminated;
static void terminate_on_main(void *victim) {
  CHECK_EQ(mbx_test_terminate_thread(*(pthread_t *)victim), 1);
  atomic_fetch_add(&g_terminated, 1);
}

static void finish(void *arg) {
  printf("rounds=%ld: every queued message canceled on main with "
         "MBX_CANCEL_ABNORMAL_EXIT; blocked senders released; sync calls "
         "running or outstanding on killed workers canceled\n",
         (long)(intptr_t)arg);
  printf("PASS abnormal_death\n");
  fflush(stdout);
  emscripten_force_exit(0);
}

static void *coordinator(void *arg) {
  long rounds = (long)(intptr_t)arg;
  for (long round = 0; round < rounds; round++) {
    int in_event_loop = round % 2;
    atomic_store(&g_ready, 0);
    atomic_store(&g_in_handler, 0);
    atomic_store(&g_cancels, 0);
    atomic_store(&g_waiter_released, 0);
    atomic_store(&g_waiter_sent, 0);
    pthread_t victim;
    CHECK_EQ(
        pthread_create(&victim, NULL,
                       in_event_loop ? test_event_loop_thread : block_forever,
                       (void *)&g_ready),
        0);
    mbx_handle to = mbx_thread_handle(victim);
    CHECK(!mbx_handle_is_null(to));
    while (!atomic_load(&g_ready))
      sleep_ms(1);
    if (in_event_loop) { /* terminate it in the middle of a handler */
      CHECK_EQ(mbx_send(to, endless_handler, NULL, NULL), MBX_OK);
      while (!atomic_load(&g_in_handler))
        sleep_ms(1);
    }
    for (int i = 0; i < QUEUED; i++)
      CHECK_EQ(mbx_send(to, on_run, on_cancel, NULL), MBX_OK);
    pthread_t waiter;
    CHECK_EQ(pthread_create(&waiter, NULL, blocking_sender, &to), 0);
    while (!atomic_load(&g_waiter_sent))
      sleep_ms(1);
    CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, &victim),
             MBX_OK);
    CHECK_EQ(pthread_join(waiter, NULL), 0); /* released by the cancel */
    CHECK_EQ(atomic_load(&g_waiter_released), 1);
    CHECK_EQ(atomic_load(&g_cancels), QUEUED + 1);
    CHECK_EQ(mbx_send(to, on_run, on_cancel, NULL), MBX_ECLOSED);
  }
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  /* Proxied work running or outstanding on a killed worker. */
  mbx_proxy_stats before, after;
  mbx_proxy_stats_get(&before);
  for (int with_ctx = 0; with_ctx < 2; with_ctx++) {
    atomic_store(&g_ready, 0);
    atomic_store(&g_in_handler, 0);
    atomic_store(&g_caller_rc, 1);
    pthread_t victim, caller;
    CHECK_EQ(pthread_create(&victim, NULL, test_event_loop_thread, &g_ready),
             0);
    mbx_handle to = mbx_thread_handle(victim);
    while (!atomic_load(&g_ready))
      sleep_ms(1);
    CHECK_EQ(
        pthread_create(&caller, NULL, with_ctx ? ctx_caller : sync_caller, &to),
        0);
    while (!atomic_load(&g_in_handler))
      sleep_ms(1);
    if (with_ctx)
      sleep_ms(20); /* back in its event loop, the context outstanding */
    CHECK_EQ(atomic_load(&g_caller_rc), 1); /* still blocked */
    CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, &victim),
             MBX_OK);
    CHECK_EQ(pthread_join(caller, NULL), 0); /* released by the death */
    CHECK_EQ(atomic_load(&g_caller_rc), MBX_ECANCELED);
  }
  /* The orphan closer on main counts a canceled context, and drops the
   * references, only after the settle that released its caller: poll. */
  for (int i = 0; i < 10000; i++) {
    mbx_proxy_stats_get(&after);
    if (after.contexts_canceled - before.contexts_canceled == 1 &&
        after.calls_live == before.calls_live + 1)
      break;
    sleep_ms(1);
  }
  CHECK_EQ(after.sync_canceled - before.sync_canceled, 2);
  CHECK_EQ(after.contexts_canceled - before.contexts_canceled, 1);
  /* The sync call's record is freed. The context's is not: it stays valid
   * until its mbx_proxy_finish (which any thread may still call), and
   * here nobody will. */
  CHECK_EQ(after.calls_live, before.calls_live + 1);
  /* Killed before its start routine ran. */
  for (int round = 0; round < 2; round++) {
    atomic_store(&g_cancels, 0);
    _Atomic int reached = 0;
    mbx__test_prestart_point_ms(60000, &reached);
    pthread_t victim;
    CHECK_EQ(pthread_create(&victim, NULL, block_forever, (void *)&g_ready), 0);
    mbx_handle to = mbx_thread_handle(victim);
    CHECK(!mbx_handle_is_null(to));
    while (!atomic_load(&reached))
      sleep_ms(1);
    for (int i = 0; i < QUEUED; i++)
      CHECK_EQ(mbx_send(to, on_run, on_cancel, NULL), MBX_OK);
    CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, &victim),
             MBX_OK);
    for (int i = 0; i < 10000 && atomic_load(&g_cancels) < QUEUED; i++)
      sleep_ms(1);
    CHECK_EQ(atomic_load(&g_cancels), QUEUED);
    CHECK_EQ(mbx_send(to, on_run, on_cancel, NULL), MBX_ECLOSED);
    CHECK_EQ(mbx__starts_pending(), 0); /* its start record freed */
  }
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  /* Threads created after the deaths still work. */
  for (int i = 0; i < 4; i++) {
    pthread_t t;
    atomic_store(&g_ready, 0);
    CHECK_EQ(pthread_create(&t, NULL, block_forever, (void *)&g_ready), 0);
    while (!atomic_load(&g_ready))
      sleep_ms(1);
    CHECK(!mbx_handle_is_null(mbx_thread_handle(t)));
    int terminated = atomic_load(&g_terminated);
    CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, &t), MBX_OK);
    while (atomic_load(&g_terminated) == terminated) /* it reads t */
      sleep_ms(1);
  }
  CHECK_EQ(mbx_send(mbx_main_thread(), finish, NULL, (void *)(intptr_t)rounds),
           MBX_OK);
  return NULL;
}

int main(int argc, char **argv) {
  long rounds = arg_long(argc, argv, "--rounds", 6);
  g_main = pthread_self();
  test_main_serves_loop(coordinator, (void *)(intptr_t)rounds);
  return 99; /* not reached */
}
#else
int main(void) {
  puts("abnormal_death: wasm only (see mbx-test-flavors)");
  return 1;
}
#endif
