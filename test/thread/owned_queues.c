// mbx-test-timeout: 120
/*
 * Queues of one's own (<mbx/queue.h>): a thread's extra mailboxes run only
 * when it drains them explicitly (never from mbx_poll/mbx_wait on its
 * automatic mailbox); their own capacity and stats; nested drains; explicit
 * close (MBX_CANCEL_QUEUE_CLOSED); the owner's exit, also from inside a
 * queue handler, cancels every queued message on the dying thread
 * (MBX_CANCEL_THREAD_EXIT), also with a pthread_cancel pending and a
 * cancel function that calls pthread_exit (the queues' closes are the
 * mailbox's: cancellation disabled, resumed); mbx_queue_wait canceled
 * while asleep; stale handles; every refusal code; the
 * per-thread bound; proxy calls to a queue (sync, timed, callback,
 * EDEADLK, ECANCELED when the queue closes under a blocked caller); bounded
 * records over thread churn; and (Emscripten) a killed worker's queues
 * canceled on the main thread with MBX_CANCEL_ABNORMAL_EXIT.
 */
#include "check.h"
#include "test_support.h"
#include "test_threads.h"

#include <mbx/broadcast.h>
#include <mbx/lifecycle.h>
#include <mbx/proxy.h>
#include <mbx/queue.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

static _Atomic int g_runs, g_cancels, g_bad_cancels;
static _Atomic int g_expected_reason;
static pthread_t g_expected_thread;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_runs, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  if (reason != atomic_load(&g_expected_reason) ||
      !pthread_equal(pthread_self(), g_expected_thread))
    atomic_fetch_add(&g_bad_cancels, 1);
  atomic_fetch_add(&g_cancels, 1);
}
static void reset_counts(int reason, pthread_t on) {
  atomic_store(&g_runs, 0);
  atomic_store(&g_cancels, 0);
  atomic_store(&g_bad_cancels, 0);
  atomic_store(&g_expected_reason, reason);
  g_expected_thread = on;
}

/* Watches on queues fire once, with the close's reason. */
static _Atomic int g_watch_fired, g_watch_reason;
static void on_watch(mbx_handle target, int reason, void *arg) {
  (void)target;
  (void)arg;
  atomic_store(&g_watch_reason, reason);
  atomic_fetch_add(&g_watch_fired, 1);
}
static void expect_watch(int reason) {
  for (int i = 0; i < 5000 && !atomic_load(&g_watch_fired); i++)
    mbx_wait(1);
  CHECK_EQ(atomic_load(&g_watch_fired), 1);
  CHECK_EQ(atomic_load(&g_watch_reason), reason);
  atomic_store(&g_watch_fired, 0);
}

/* ---- nesting: a handler of q's drain */
static mbx_handle g_q, g_q2;
static _Atomic int g_nested_checked;
static void nested_handler(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_queue_poll(g_q), MBX_EBUSY);    /* its own queue */
  CHECK_EQ(mbx_queue_wait(g_q, 0), MBX_EBUSY); /* its own queue */
  CHECK_EQ(mbx_queue_close(g_q), MBX_EBUSY);   /* its own queue */
  CHECK_EQ(mbx_poll(), MBX_EBUSY);             /* as from any handler */
  CHECK_EQ(mbx_wait(0), MBX_EBUSY);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), MBX_EBUSY);
  CHECK_EQ(mbx_queue_poll(g_q2), 1); /* another queue: allowed */
  atomic_store(&g_nested_checked, 1);
}

/* A cancel handler that closes its own queue again: it is closed already
 * (MBX_ECLOSED, no double release). */
static void cancel_recloses(void *arg, int reason) {
  on_cancel(arg, reason);
  CHECK_EQ(mbx_queue_close(g_q), MBX_ECLOSED);
  CHECK_EQ(mbx_queue_poll(g_q), MBX_ECLOSED);
}

static void *send_later(void *q) {
  sleep_ms(30);
  CHECK_EQ(mbx_send(*(mbx_handle *)q, on_run, on_cancel, NULL), MBX_OK);
  return NULL;
}

static void *no_mailbox_thread(void *arg) {
  (void)arg;
  CHECK(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT) >= 0);
  mbx_handle q;
  CHECK_EQ(mbx_queue_create(&q), MBX_EPERM);
  CHECK_EQ(mbx_queue_poll(g_q2), MBX_EPERM); /* main's queue */
  return NULL;
}

/* On the calling (main) thread as owner. */
static void test_on_self(void) {
  mbx_handle q, forged = {((uint64_t)77 << 32) | 1000000};
  CHECK_EQ(mbx_queue_create(NULL), MBX_EINVAL);
  CHECK_EQ(mbx_queue_poll(MBX_NULL_HANDLE), MBX_EINVAL);
  CHECK_EQ(mbx_queue_poll(forged), MBX_EINVAL);
  CHECK_EQ(mbx_queue_close(forged), MBX_EINVAL);
  CHECK_EQ(mbx_queue_poll(mbx_self()), MBX_EPERM); /* not a queue */
  CHECK_EQ(mbx_queue_create(&q), MBX_OK);
  CHECK(!mbx_handle_equal(q, mbx_self()));
  CHECK_EQ(mbx_thread_bind(q), MBX_EINVAL); /* bound to us already */
  g_q = q;
  reset_counts(MBX_CANCEL_QUEUE_CLOSED, pthread_self());

  /* Drained only explicitly. */
  for (int i = 0; i < 5; i++)
    CHECK_EQ(mbx_send(q, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 0);
  CHECK_EQ(mbx_wait(20), MBX_ETIMEDOUT);
  CHECK_EQ(atomic_load(&g_runs), 0);
  mbx_stats st;
  CHECK_EQ(mbx_stats_get(q, &st), MBX_OK);
  CHECK_EQ(st.pending, 5);
  CHECK_EQ(mbx_queue_poll(q), 5);
  CHECK_EQ(atomic_load(&g_runs), 5);
  CHECK_EQ(mbx_queue_poll(q), 0);

  /* Its own capacity and stats. */
  CHECK_EQ(mbx_set_capacity(q, 2), MBX_OK);
  CHECK_EQ(mbx_send(q, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_send(q, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_send(q, on_run, on_cancel, NULL), MBX_EFULL);
  CHECK_EQ(mbx_send(mbx_self(), on_run, on_cancel, NULL), MBX_OK); /* not q's */
  CHECK_EQ(mbx_poll(), 1);
  CHECK_EQ(mbx_queue_poll(q), 2);
  CHECK_EQ(mbx_stats_get(q, &st), MBX_OK);
  CHECK_EQ(st.run, 7);
  CHECK_EQ(st.sent, 7);
  CHECK_EQ(st.rejected_full, 1);
  CHECK_EQ(st.queue_high_water, 5);
  CHECK_EQ(mbx_set_capacity(q, 0), MBX_OK);

  /* Timed wait, and a wait woken by a send from another thread. */
  CHECK_EQ(mbx_queue_wait(q, 10), MBX_ETIMEDOUT);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, send_later, &q), 0);
  CHECK_EQ(mbx_queue_wait(q, -1), 1);
  CHECK_EQ(pthread_join(t, NULL), 0);

  /* Nesting: another queue from q's handler, but not q itself. */
  CHECK_EQ(mbx_queue_create(&g_q2), MBX_OK);
  CHECK_EQ(mbx_send(g_q2, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_send(q, nested_handler, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_queue_poll(q), 1);
  CHECK_EQ(atomic_load(&g_nested_checked), 1);

  /* A broadcast reaches threads, not their queues: it neither waits for
   * this thread to drain q and g_q2 nor runs there. */
  mbx_stats before, before2;
  CHECK_EQ(mbx_stats_get(q, &before), MBX_OK);
  CHECK_EQ(mbx_stats_get(g_q2, &before2), MBX_OK);
  mbx_broadcast_report rep;
  CHECK_EQ(mbx_broadcast(on_run, NULL, 0, 2000, &rep, NULL, 0), MBX_OK);
  CHECK_EQ(rep.late, 0);
  CHECK_EQ(mbx_stats_get(q, &st), MBX_OK);
  CHECK_EQ(st.sent, before.sent);
  CHECK_EQ(mbx_stats_get(g_q2, &st), MBX_OK);
  CHECK_EQ(st.sent, before2.sent);

  /* A thread without a mailbox owns no queue; nor others' queues. */
  CHECK_EQ(pthread_create(&t, NULL, no_mailbox_thread, NULL), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);

  /* Explicit close: queued messages canceled here, in order, with
   * MBX_CANCEL_QUEUE_CLOSED; afterwards everything is refused. */
  int runs = atomic_load(&g_runs);
  CHECK_EQ(mbx_send(q, on_run, cancel_recloses, NULL), MBX_OK);
  CHECK_EQ(mbx_send(q, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_send(q, on_run, NULL, NULL), MBX_OK); /* dropped */
  CHECK_EQ(mbx_watch(q, on_watch, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_queue_close(q), 3);
  expect_watch(MBX_CANCEL_QUEUE_CLOSED);
  CHECK_EQ(atomic_load(&g_cancels), 2);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  CHECK_EQ(atomic_load(&g_runs), runs);
  CHECK_EQ(mbx_send(q, on_run, on_cancel, NULL), MBX_ECLOSED);
  CHECK_EQ(mbx_queue_poll(q), MBX_ECLOSED);
  CHECK_EQ(mbx_queue_wait(q, 0), MBX_ECLOSED);
  CHECK_EQ(mbx_queue_close(q), MBX_ECLOSED);
  CHECK_EQ(mbx_stats_get(q, &st), MBX_OK);
  CHECK_EQ(st.canceled, 2);
  CHECK_EQ(st.dropped, 1);

  /* The bound, counting g_q2 still open. */
  mbx_handle many[MBX_QUEUE_MAX_PER_THREAD];
  for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD - 1; i++)
    CHECK_EQ(mbx_queue_create(&many[i]), MBX_OK);
  mbx_handle extra;
  CHECK_EQ(mbx_queue_create(&extra), MBX_EAGAIN);
  CHECK_EQ(mbx_queue_close(g_q2), 0);
  CHECK_EQ(mbx_queue_create(&many[MBX_QUEUE_MAX_PER_THREAD - 1]), MBX_OK);
  for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD; i++)
    CHECK_EQ(mbx_queue_close(many[i]), 0);

  /* Stale: with no quarantine a new queue reuses the oldest retired
   * record; cycle through them until one of our closed queues' comes up. */
  CHECK_EQ(mbx_set_quarantine(0), MBX_OK);
  int stale_seen = 0;
  for (int round = 0; round < 1000 && !stale_seen; round++) {
    mbx_handle fresh;
    CHECK_EQ(mbx_queue_create(&fresh), MBX_OK);
    for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD; i++)
      if ((uint32_t)many[i].bits == (uint32_t)fresh.bits) {
        CHECK_EQ(mbx_queue_poll(many[i]), MBX_ESTALE);
        CHECK_EQ(mbx_queue_wait(many[i], 0), MBX_ESTALE);
        CHECK_EQ(mbx_queue_close(many[i]), MBX_ESTALE);
        CHECK_EQ(mbx_send(many[i], on_run, on_cancel, NULL), MBX_ESTALE);
        CHECK_EQ(mbx_queue_poll(fresh), 0); /* the new life is fine */
        stale_seen = 1;
      }
    CHECK_EQ(mbx_queue_close(fresh), 0);
  }
  CHECK_EQ(stale_seen, 1);
  CHECK_EQ(mbx_set_quarantine(64), MBX_OK);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
}

/* ---- the owner's exit cancels its queues on the dying thread */
typedef struct owner_args {
  mbx_handle q[3];
  _Atomic int ready, go;
  int exit_in_handler; /* end the thread from inside a queue handler */
} owner_args;

static void exit_from_handler(void *arg) {
  (void)arg;
  pthread_exit(NULL);
}

static void *owner_main(void *p) {
  owner_args *a = p;
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mbx_queue_create(&a->q[i]), MBX_OK);
  atomic_store(&a->ready, 1);
  while (!atomic_load(&a->go))
    sleep_ms(1);
  if (a->exit_in_handler)
    mbx_queue_poll(a->q[0]); /* runs exit_from_handler first */
  return NULL;
}

static void test_exit(int exit_in_handler) {
  owner_args a = {.exit_in_handler = exit_in_handler};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, owner_main, &a), 0);
  while (!atomic_load(&a.ready))
    sleep_ms(1);
  reset_counts(MBX_CANCEL_THREAD_EXIT, t);
  if (exit_in_handler)
    CHECK_EQ(mbx_send(a.q[0], exit_from_handler, on_cancel, NULL), MBX_OK);
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 4; k++)
      CHECK_EQ(mbx_send(a.q[i], on_run, on_cancel, NULL), MBX_OK);
  mbx_handle self = mbx_thread_handle(t);
  CHECK_EQ(mbx_send(self, on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_watch(a.q[1], on_watch, NULL, NULL), MBX_OK);
  atomic_store(&a.go, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  expect_watch(MBX_CANCEL_THREAD_EXIT);
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_cancels), 13);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  for (int i = 0; i < 3; i++) {
    int rc = mbx_send(a.q[i], on_run, on_cancel, NULL);
    CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  }
}

/* ---- the queues' closes are the mailbox's close: cancellation disabled
 * and resumable. A pthread_cancel is pending while the owner returns (each
 * cancel function reaches a cancellation point), and the first cancel
 * function of a queue ends the thread (pthread_exit): every other queued
 * message of every queue is still canceled, on the dying thread. */
static _Atomic int g_exited_once, g_hard_ready, g_hard_go;
static void cancel_sleeps(void *arg, int reason) {
  on_cancel(arg, reason);
  sleep_ms(0.1); /* nanosleep: a cancellation point */
}
static void cancel_then_exit(void *arg, int reason) {
  on_cancel(arg, reason);
  if (!atomic_exchange(&g_exited_once, 1))
    pthread_exit(NULL);
}
static mbx_handle g_hard_q[3];
static void *hard_owner(void *p) {
  (void)p;
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mbx_queue_create(&g_hard_q[i]), MBX_OK);
  atomic_store(&g_hard_ready, 1);
  while (!atomic_load(&g_hard_go)) { /* no cancellation point */
  }
  return NULL; /* returns normally, the cancel still pending */
}
static void test_exit_hard(void) {
  mbx_memory_stats before, after;
  mbx_memory_stats_get(&before);
  atomic_store(&g_exited_once, 0);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, hard_owner, NULL), 0);
  while (!atomic_load(&g_hard_ready))
    sleep_ms(1);
  reset_counts(MBX_CANCEL_THREAD_EXIT, t);
  CHECK_EQ(mbx_send(mbx_thread_handle(t), on_run, cancel_sleeps, NULL), MBX_OK);
  CHECK_EQ(mbx_send(g_hard_q[0], on_run, cancel_sleeps, NULL), MBX_OK);
  CHECK_EQ(mbx_send(g_hard_q[0], on_run, cancel_then_exit, NULL), MBX_OK);
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 3; k++)
      CHECK_EQ(mbx_send(g_hard_q[i], on_run, cancel_sleeps, NULL), MBX_OK);
  CHECK_EQ(pthread_cancel(t), 0);
  atomic_store(&g_hard_go, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_cancels), 12);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  for (int i = 0; i < 3; i++) {
    int rc = mbx_send(g_hard_q[i], on_run, on_cancel, NULL);
    CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  }
  /* Every life ended: the thread's mailbox and its queues released. */
  mbx_memory_stats_get(&after);
  CHECK_EQ(after.records_live, before.records_live);
}

/* ---- mbx_queue_wait is a cancellation point, as mbx_wait */
static _Atomic int g_waiter_ready;
static mbx_handle g_wait_q[2];
static void *queue_waiter(void *p) {
  (void)p;
  for (int i = 0; i < 2; i++)
    CHECK_EQ(mbx_queue_create(&g_wait_q[i]), MBX_OK);
  atomic_store(&g_waiter_ready, 1);
  for (;;)
    mbx_queue_wait(g_wait_q[0], -1);
  return NULL;
}
static void test_wait_canceled(void) {
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, queue_waiter, NULL), 0);
  while (!atomic_load(&g_waiter_ready))
    sleep_ms(1);
  reset_counts(MBX_CANCEL_THREAD_EXIT, t);
  for (int k = 0; k < 3; k++) /* the queue it does not wait on */
    CHECK_EQ(mbx_send(g_wait_q[1], on_run, on_cancel, NULL), MBX_OK);
  sleep_ms(20); /* asleep in the wait */
  CHECK_EQ(pthread_cancel(t), 0);
  void *res;
  CHECK_EQ(pthread_join(t, &res), 0);
  CHECK(res == PTHREAD_CANCELED);
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_cancels), 3);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
}

/* ---- proxy calls to a queue */
typedef struct server_args {
  mbx_handle q;
  _Atomic int ready, stop, drain_queue, close_when_pending, plain_seen;
  pthread_t self;
} server_args;

static void *queue_server(void *p) {
  server_args *a = p;
  CHECK_EQ(mbx_queue_create(&a->q), MBX_OK);
  a->self = pthread_self();
  atomic_store(&a->ready, 1);
  while (!atomic_load(&a->stop)) {
    if (atomic_load(&a->close_when_pending)) {
      mbx_stats st;
      CHECK_EQ(mbx_stats_get(a->q, &st), MBX_OK);
      if (st.pending == 1) {
        CHECK_EQ(mbx_queue_close(a->q), 1);
        atomic_store(&a->close_when_pending, 0);
      }
    }
    if (atomic_load(&a->drain_queue)) {
      mbx_queue_wait(a->q, 5);
    } else {
      atomic_store(&a->plain_seen, 1);
      mbx_wait(5);
    } /* the automatic mailbox only: never the queue */
  }
  return NULL;
}

static _Atomic int g_fn_runs;
static pthread_t g_fn_expected;
static void proxied_fn(void *arg) {
  (void)arg;
  CHECK(pthread_equal(pthread_self(), g_fn_expected));
  atomic_fetch_add(&g_fn_runs, 1);
}
static _Atomic int g_done;
static void on_done(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_done, 1);
}

static void test_proxy(void) {
  server_args a = {0};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, queue_server, &a), 0);
  while (!atomic_load(&a.ready))
    sleep_ms(1);
  g_fn_expected = t;
  /* Not drained by mbx_wait: a timed call gives up, the work never runs. */
  CHECK_EQ(mbx_proxy_sync_timed(a.q, proxied_fn, NULL, 50), MBX_ETIMEDOUT);
  CHECK_EQ(atomic_load(&g_fn_runs), 0);
  atomic_store(&a.drain_queue, 1);
  CHECK_EQ(mbx_proxy_sync(a.q, proxied_fn, NULL), MBX_OK);
  CHECK_EQ(atomic_load(&g_fn_runs), 1);
  CHECK_EQ(mbx_proxy_async(a.q, proxied_fn, NULL, NULL), MBX_OK);
  if (!mbx_handle_is_null(mbx_self())) {
    CHECK_EQ(mbx_proxy_callback(a.q, proxied_fn, on_done, NULL, NULL), MBX_OK);
    for (int i = 0; i < 5000 && !atomic_load(&g_done); i++)
      mbx_wait(1);
    CHECK_EQ(atomic_load(&g_done), 1);
  }
  /* A blocked caller whose queue is closed under it: MBX_ECANCELED. */
  atomic_store(&a.plain_seen, 0);
  atomic_store(&a.drain_queue, 0);
  while (!atomic_load(&a.plain_seen)) /* out of its queue wait */
    sleep_ms(1);
  atomic_store(&a.close_when_pending, 1);
  CHECK_EQ(mbx_proxy_sync(a.q, proxied_fn, NULL), MBX_ECANCELED);
  atomic_store(&a.stop, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  /* A sync call to one's own queue would wait forever. */
  mbx_handle own;
  CHECK_EQ(mbx_queue_create(&own), MBX_OK);
  CHECK_EQ(mbx_proxy_sync(own, proxied_fn, NULL), MBX_EDEADLK);
  CHECK_EQ(mbx_queue_close(own), 0);
}

/* ---- churn: records and memory stay bounded */
static void *churn_main(void *p) {
  (void)p;
  mbx_handle q[4];
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(mbx_queue_create(&q[i]), MBX_OK);
    CHECK_EQ(mbx_send(q[i], on_run, NULL, NULL), MBX_OK);
  }
  CHECK_EQ(mbx_queue_close(q[0]), 1); /* the rest close at exit */
  return NULL;
}

static void test_churn(int threads) {
  mbx_memory_stats before, after;
  mbx_memory_stats_get(&before);
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, churn_main, NULL), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
  }
  mbx_memory_stats_get(&after);
  CHECK_EQ(after.records_live, before.records_live);
  /* Quarantine (64) plus one thread's five records and a few, whatever
   * `threads`. */
  CHECK(after.records_total <= before.records_total + 64 + 8);
}

/* ---- a killed worker's queues (Emscripten) */
#ifdef __EMSCRIPTEN__
static pthread_t g_main;
static mbx_handle g_victim_q[2];
static _Atomic int g_victim_ready, g_terminated, g_flag;
static void *victim_main(void *p) {
  (void)p;
  for (int i = 0; i < 2; i++)
    CHECK_EQ(mbx_queue_create(&g_victim_q[i]), MBX_OK);
  atomic_store(&g_victim_ready, 1);
  block_forever(&g_flag);
  return NULL;
}
static void terminate_on_main(void *victim) {
  CHECK_EQ(mbx_test_terminate_thread(*(pthread_t *)victim), 1);
  atomic_store(&g_terminated, 1);
}
static _Atomic int g_sync_rc = 1;
static void *sync_to_victim(void *p) {
  (void)p;
  atomic_store(&g_sync_rc, mbx_proxy_sync(g_victim_q[1], proxied_fn, NULL));
  return NULL;
}
static void finish(void *arg) {
  (void)arg;
  printf("PASS owned_queues\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
static void *killer(void *p) {
  (void)p;
  pthread_t victim, caller;
  CHECK_EQ(pthread_create(&victim, NULL, victim_main, NULL), 0);
  while (!atomic_load(&g_victim_ready))
    sleep_ms(1);
  reset_counts(MBX_CANCEL_ABNORMAL_EXIT, g_main);
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 5; k++)
      CHECK_EQ(mbx_send(g_victim_q[i], on_run, on_cancel, NULL), MBX_OK);
  CHECK_EQ(pthread_create(&caller, NULL, sync_to_victim, NULL), 0);
  for (;;) { /* until the caller's work is queued */
    mbx_stats st;
    CHECK_EQ(mbx_stats_get(g_victim_q[1], &st), MBX_OK);
    if (st.pending == 6)
      break;
    sleep_ms(1);
  }
  CHECK_EQ(mbx_watch(g_victim_q[0], on_watch, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, &victim),
           MBX_OK);
  CHECK_EQ(pthread_join(caller, NULL), 0); /* released by the orphan close */
  expect_watch(MBX_CANCEL_ABNORMAL_EXIT);
  CHECK_EQ(atomic_load(&g_sync_rc), MBX_ECANCELED);
  wait_for_count(&g_cancels, 10);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  CHECK_EQ(atomic_load(&g_runs), 0);
  for (int i = 0; i < 2; i++)
    CHECK_EQ(mbx_send(g_victim_q[i], on_run, on_cancel, NULL), MBX_ECLOSED);
  printf("killed worker: its 2 queues closed, 10 messages canceled on main "
         "with MBX_CANCEL_ABNORMAL_EXIT, a blocked sync caller canceled, a "
         "watch fired\n");
  CHECK_EQ(mbx_send(mbx_main_thread(), finish, NULL, NULL), MBX_OK);
  return NULL;
}
#endif

int main(int argc, char **argv) {
  long churn = arg_long(argc, argv, "--churn", 200);
  test_on_self();
  printf("own queue: drained only explicitly; capacity, stats, nesting, "
         "close, bound, stale handles ok\n");
  test_exit(0);
  test_exit(1);
  printf("owner exit (return, pthread_exit in a queue handler): 13 "
         "messages canceled on the dying thread\n");
  test_exit_hard();
  printf("owner exit with a pthread_cancel pending and pthread_exit in a "
         "queue's cancel function: all 12 canceled on the dying thread, "
         "every life released\n");
  test_wait_canceled();
  printf("mbx_queue_wait canceled while asleep: the thread's other queue "
         "canceled at its exit\n");
  test_proxy();
  printf("proxy: sync/timed/async/callback to a queue; ECANCELED on close; "
         "EDEADLK to one's own queue\n");
  test_churn((int)churn);
  printf("churn: %ld threads with 4 queues each, records bounded\n", churn);
#ifdef __EMSCRIPTEN__
  g_main = pthread_self();
  test_main_serves_loop(killer, NULL);
  return 99; /* not reached */
#else
  printf("PASS owned_queues\n");
  return 0;
#endif
}
