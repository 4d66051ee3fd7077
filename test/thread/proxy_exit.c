// mbx-test-timeout: 180
/*
 * Proxying when threads exit. Target exits before the work runs, while it
 * runs (pthread_exit inside fn; a context left outstanding), and after: the
 * callers get MBX_ECANCELED / on_cancel / the cancel function on the target
 * / MBX_ECLOSED, and never hang. Several outstanding contexts finished in
 * every order with the target exiting at every point. A callback's caller
 * that exits before its outcome arrives: dropped, counted, freed. A caller
 * that exits or is canceled while blocked: work that has not started never
 * runs; work that is running finishes before the caller's stack goes away.
 */
#include "proxy_util.h"

static _Atomic int g_fn_runs;
static void count_run(void *p) {
  (void)p;
  atomic_fetch_add(&g_fn_runs, 1);
}
static void write_arg(void *p) {
  *(volatile int *)p = 42; /* a dead caller stack would be hit here */
  atomic_fetch_add(&g_fn_runs, 1);
}

/* A target that does not serve until told, then serves or just returns. */
enum { HOLD, SERVE, RETURN };
static _Atomic int g_target_cmd;
static void *held_target(void *unused) {
  (void)unused;
  while (atomic_load(&g_target_cmd) == HOLD)
    sleep_ms(0.2);
  if (atomic_load(&g_target_cmd) == RETURN)
    return NULL;
  while (!tls_stop)
    mbx_wait(-1);
  return NULL;
}
static mbx_handle start_held(pthread_t *t) {
  atomic_store(&g_target_cmd, HOLD);
  CHECK_EQ(pthread_create(t, NULL, held_target, NULL), 0);
  return mbx_thread_handle(*t);
}
static void await_pending(mbx_handle h, uint64_t n) {
  mbx_stats s;
  for (int i = 0;; i++) {
    CHECK(i < 100000);
    CHECK_EQ(mbx_stats_get(h, &s), MBX_OK);
    if (s.pending >= n)
      return;
    sleep_ms(0.1);
  }
}

/* ---- callers, each on its own thread */
enum { CALL_SYNC, CALL_TIMED, CALL_CTX, CALL_CALLBACK };
typedef struct call {
  int kind;
  mbx_handle target;
  mbx_proxy_ctx_fn ctx_fn;
  mbx_run_fn fn;
  int slot;
  _Atomic int rc;
  _Atomic int returned;
} call;

static _Thread_local int tls_outcome; /* 1 done, 2 canceled */
static void cb_done(void *p) {
  (void)p;
  tls_outcome = 1;
}
static void cb_cancel(void *p) {
  (void)p;
  tls_outcome = 2;
}

static void *caller_main(void *p) {
  call *c = p;
  int rc;
  int stack_arg = 0;
  switch (c->kind) {
  case CALL_SYNC:
    rc = mbx_proxy_sync(c->target, c->fn, &stack_arg);
    break;
  case CALL_TIMED:
    rc = mbx_proxy_sync_timed(c->target, c->fn, &stack_arg, 60000);
    break;
  case CALL_CTX:
    rc = mbx_proxy_sync_with_ctx(c->target, c->ctx_fn,
                                 (void *)(intptr_t)c->slot);
    break;
  default:
    rc = mbx_proxy_callback(c->target, c->fn, cb_done, cb_cancel, NULL);
    if (rc != MBX_OK)
      break;
    while (!tls_outcome)
      CHECK(mbx_wait(60000) > 0);
    rc = tls_outcome == 1 ? MBX_OK : MBX_ECANCELED;
  }
  atomic_store(&c->rc, rc);
  atomic_store(&c->returned, 1);
  return NULL;
}

static void start_call(call *c, pthread_t *t) {
  atomic_store(&c->returned, 0);
  atomic_store(&c->rc, 1);
  CHECK_EQ(pthread_create(t, NULL, caller_main, c), 0);
}

/* ---- target exits before the work runs */
static _Atomic int g_async_cancels_on_target;
static pthread_t g_target;
static void async_cancel(void *p, int reason) {
  (void)p;
  CHECK_EQ(reason, MBX_CANCEL_THREAD_EXIT);
  if (pthread_equal(pthread_self(), g_target))
    atomic_fetch_add(&g_async_cancels_on_target, 1);
}
static void ctx_never(mbx_proxy_ctx *ctx, void *p) {
  (void)p;
  atomic_fetch_add(&g_fn_runs, 1);
  mbx_proxy_finish(ctx);
}

static void exit_before_run(void) {
  atomic_store(&g_fn_runs, 0);
  mbx_handle h = start_held(&g_target);
  call calls[4];
  pthread_t callers[4];
  for (int k = 0; k < 4; k++) {
    calls[k] =
        (call){.kind = k, .target = h, .fn = write_arg, .ctx_fn = ctx_never};
    start_call(&calls[k], &callers[k]);
  }
  CHECK_EQ(mbx_proxy_async(h, count_run, async_cancel, NULL), MBX_OK);
  await_pending(h, 5);
  atomic_store(&g_target_cmd, RETURN);
  for (int k = 0; k < 4; k++) {
    CHECK_EQ(pthread_join(callers[k], NULL), 0);
    CHECK_EQ(atomic_load(&calls[k].rc), MBX_ECANCELED);
  }
  CHECK_EQ(pthread_join(g_target, NULL), 0);
  CHECK_EQ(atomic_load(&g_fn_runs), 0);
  CHECK_EQ(atomic_load(&g_async_cancels_on_target), 1);
  /* And after: refused at once. */
  for (int k = 0; k < 4; k++) {
    start_call(&calls[k], &callers[k]);
    CHECK_EQ(pthread_join(callers[k], NULL), 0);
  }
  for (int k = 0; k < 4; k++) {
    int rc = atomic_load(&calls[k].rc);
    CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  }
}

/* ---- target exits while the work runs */
static mbx_proxy_ctx *_Atomic g_slots[8];
static void fn_exits(void *p) {
  (void)p;
  atomic_fetch_add(&g_fn_runs, 1);
  pthread_exit(NULL);
}
static void ctx_exits(mbx_proxy_ctx *ctx, void *p) {
  (void)p;
  atomic_fetch_add(&g_fn_runs, 1);
  /* The context is still the finisher's to finish (here: main's). */
  atomic_store(&g_slots[1], ctx);
  pthread_exit(NULL);
}
static _Atomic int g_started;
static void ctx_park(mbx_proxy_ctx *ctx, void *p) {
  atomic_store(&g_slots[(intptr_t)p], ctx);
  atomic_fetch_add(&g_started, 1);
}

static void exit_while_running(void) {
  mbx_handle h;
  call c;
  pthread_t caller;
  /* fn itself ends the target: sync, timed, callback. */
  int kinds[3] = {CALL_SYNC, CALL_TIMED, CALL_CALLBACK};
  for (int k = 0; k < 3; k++) {
    atomic_store(&g_fn_runs, 0);
    h = start_held(&g_target);
    c = (call){.kind = kinds[k], .target = h, .fn = fn_exits};
    start_call(&c, &caller);
    await_pending(h, 1);
    atomic_store(&g_target_cmd, SERVE);
    CHECK_EQ(pthread_join(caller, NULL), 0);
    CHECK_EQ(atomic_load(&c.rc), MBX_ECANCELED);
    CHECK_EQ(pthread_join(g_target, NULL), 0);
    CHECK_EQ(atomic_load(&g_fn_runs), 1);
  }
  /* A context's fn ends the target without finishing. */
  mbx_proxy_stats before, after;
  mbx_proxy_stats_get(&before);
  h = start_held(&g_target);
  atomic_store(&g_target_cmd, SERVE);
  c = (call){.kind = CALL_CTX, .target = h, .ctx_fn = ctx_exits};
  start_call(&c, &caller);
  CHECK_EQ(pthread_join(caller, NULL), 0);
  CHECK_EQ(atomic_load(&c.rc), MBX_ECANCELED);
  CHECK_EQ(pthread_join(g_target, NULL), 0);
  mbx_proxy_stats_get(&after);
  CHECK_EQ(after.contexts_canceled - before.contexts_canceled, 1);
  CHECK_EQ(mbx_proxy_finish(atomic_load(&g_slots[1])), MBX_ECANCELED);
  /* A context left outstanding when the target exits normally. */
  atomic_store(&g_started, 0);
  h = start_held(&g_target);
  atomic_store(&g_target_cmd, SERVE);
  c = (call){.kind = CALL_CTX, .target = h, .ctx_fn = ctx_park, .slot = 0};
  start_call(&c, &caller);
  await_int(&g_started, 1);
  sleep_ms(2);
  CHECK_EQ(atomic_load(&c.returned), 0); /* still waiting for finish */
  CHECK_EQ(mbx_proxy_async(h, exit_thread, NULL, NULL), MBX_OK);
  CHECK_EQ(pthread_join(caller, NULL), 0);
  CHECK_EQ(atomic_load(&c.rc), MBX_ECANCELED);
  CHECK_EQ(pthread_join(g_target, NULL), 0);
  /* Finishing after the exit is allowed, reports the loss, frees. */
  CHECK_EQ(mbx_proxy_finish(atomic_load(&g_slots[0])), MBX_ECANCELED);
}

/* ---- several outstanding contexts, finished in every order */
#define NCTX 3
static void finish_orders(long *scenarios) {
  int perms[6][NCTX] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                        {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int p = 0; p < 6; p++) {
    for (int exit_at = 0; exit_at <= NCTX; exit_at++) {
      atomic_store(&g_started, 0);
      mbx_handle h = start_held(&g_target);
      atomic_store(&g_target_cmd, SERVE);
      call calls[NCTX];
      pthread_t callers[NCTX];
      for (int k = 0; k < NCTX; k++) {
        calls[k] = (call){
            .kind = CALL_CTX, .target = h, .ctx_fn = ctx_park, .slot = k};
        start_call(&calls[k], &callers[k]);
      }
      await_int(&g_started, NCTX);
      for (int i = 0; i < NCTX; i++) {
        if (i == exit_at) {
          CHECK_EQ(mbx_proxy_async(h, exit_thread, NULL, NULL), MBX_OK);
          CHECK_EQ(pthread_join(g_target, NULL), 0);
        }
        int k = perms[p][i];
        int rc = mbx_proxy_finish(atomic_load(&g_slots[k]));
        CHECK_EQ(rc, i < exit_at ? MBX_OK : MBX_ECANCELED);
        if (i < exit_at) { /* that caller returns now, the others wait */
          CHECK_EQ(pthread_join(callers[k], NULL), 0);
          CHECK_EQ(atomic_load(&calls[k].rc), MBX_OK);
          for (int j = i + 1; j < NCTX; j++)
            CHECK_EQ(atomic_load(&calls[perms[p][j]].returned), 0);
        }
      }
      if (exit_at == NCTX) {
        CHECK_EQ(mbx_proxy_async(h, exit_thread, NULL, NULL), MBX_OK);
        CHECK_EQ(pthread_join(g_target, NULL), 0);
      }
      for (int i = exit_at; i < NCTX; i++) {
        int k = perms[p][i];
        CHECK_EQ(pthread_join(callers[k], NULL), 0);
        CHECK_EQ(atomic_load(&calls[k].rc), MBX_ECANCELED);
      }
      ++*scenarios;
    }
  }
}

/* ---- a callback's caller exits before its outcome arrives */
static _Atomic int g_outcomes;
static void outcome_seen(void *p) {
  (void)p;
  atomic_fetch_add(&g_outcomes, 1);
}
typedef struct cb_caller {
  mbx_handle target;
  int wait_for_outcome_queued;
} cb_caller;
static void *callback_then_exit(void *p) {
  cb_caller *a = p;
  CHECK_EQ(mbx_proxy_callback(a->target, count_run, outcome_seen, outcome_seen,
                              NULL),
           MBX_OK);
  if (a->wait_for_outcome_queued) /* the outcome waits in our mailbox */
    await_pending(mbx_self(), 1);
  return NULL; /* exit without draining */
}
static void callback_caller_gone(void) {
  mbx_proxy_stats before, after;
  mbx_proxy_stats_get(&before);
  for (int queued = 0; queued < 2; queued++) {
    atomic_store(&g_fn_runs, 0);
    pthread_t caller;
    mbx_handle h = start_held(&g_target);
    cb_caller a = {h, queued};
    if (queued) /* serve at once: the outcome waits in the caller's mailbox,
                   which is closed with it */
      atomic_store(&g_target_cmd, SERVE);
    CHECK_EQ(pthread_create(&caller, NULL, callback_then_exit, &a), 0);
    CHECK_EQ(pthread_join(caller, NULL), 0);
    /* Not started: the caller's exit abandoned it, fn never runs (issue
     * 18 item 21). Queued: fn ran, the outcome is dropped. */
    atomic_store(&g_target_cmd, SERVE);
    CHECK_EQ(mbx_proxy_sync(h, count_run, NULL), MBX_OK);
    CHECK_EQ(atomic_load(&g_fn_runs), queued ? 2 : 1);
    stop_server(g_target, h);
  }
  mbx_proxy_stats_get(&after);
  CHECK_EQ(after.callbacks_dropped - before.callbacks_dropped, 1);
  CHECK(after.abandoned - before.abandoned >= 1);
  CHECK_EQ(atomic_load(&g_outcomes), 0);
}

/* ---- a blocked caller exits or is canceled */
static void caller_leaves(void *p) {
  (void)p;
  pthread_exit(NULL);
}
static void wake_only(void *p) { (void)p; }

static _Atomic int g_slow_started, g_slow_finished;
static void slow_write(void *p) {
  atomic_store(&g_slow_started, 1);
  sleep_ms(20);
  *(volatile int *)p = 42; /* the caller's stack: must still be there */
  atomic_store(&g_slow_finished, 1);
}

static void blocked_caller_leaves(void) {
  mbx_proxy_stats before, after;
  for (int how = 0; how < 2; how++) { /* 0: exits from a handler, 1: cancel */
    mbx_proxy_stats_get(&before);
    atomic_store(&g_fn_runs, 0);
    mbx_handle h = start_held(&g_target);
    call c = {.kind = CALL_SYNC, .target = h, .fn = write_arg};
    pthread_t caller;
    start_call(&c, &caller);
    mbx_handle ch = mbx_thread_handle(caller);
    await_pending(h, 1);
    if (how == 0) {
      CHECK_EQ(mbx_proxy_async(ch, caller_leaves, NULL, NULL), MBX_OK);
    } else {
      CHECK_EQ(pthread_cancel(caller), 0);
      /* Acted on when the wait wakes (natively the signal may do it). */
      mbx_proxy_async(ch, wake_only, NULL, NULL);
    }
    void *result;
    CHECK_EQ(pthread_join(caller, &result), 0);
    CHECK(how == 0 ? result == NULL : result == PTHREAD_CANCELED);
    CHECK_EQ(atomic_load(&c.returned), 0);
    atomic_store(&g_target_cmd, SERVE);
    CHECK_EQ(mbx_proxy_sync(h, count_run, NULL), MBX_OK); /* after it */
    CHECK_EQ(atomic_load(&g_fn_runs), 1); /* write_arg never ran */
    stop_server(g_target, h);
    mbx_proxy_stats_get(&after);
    CHECK_EQ(after.abandoned - before.abandoned, 1);
  }
  /* Exits while its work runs: the work finishes before the stack goes. */
  pthread_t server;
  mbx_handle h = start_server(&server);
  call c = {.kind = CALL_SYNC, .target = h, .fn = slow_write};
  pthread_t caller;
  start_call(&c, &caller);
  await_int(&g_slow_started, 1);
  CHECK_EQ(
      mbx_proxy_async(mbx_thread_handle(caller), caller_leaves, NULL, NULL),
      MBX_OK);
  CHECK_EQ(pthread_join(caller, NULL), 0);
  CHECK_EQ(atomic_load(&g_slow_finished), 1);
  stop_server(server, h);
}

int main(void) {
  exit_before_run();
  exit_while_running();
  long scenarios = 0;
  finish_orders(&scenarios);
  callback_caller_gone();
  blocked_caller_leaves();
  check_no_live_calls();
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  printf("finish-order scenarios=%ld sync_done=%llu sync_canceled=%llu "
         "contexts_canceled=%llu callbacks_dropped=%llu abandoned=%llu\n",
         scenarios, (unsigned long long)ps.sync_done,
         (unsigned long long)ps.sync_canceled,
         (unsigned long long)ps.contexts_canceled,
         (unsigned long long)ps.callbacks_dropped,
         (unsigned long long)ps.abandoned);
  printf("PASS proxy_exit\n");
  return 0;
}
