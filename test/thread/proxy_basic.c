// mbx-test-timeout: 120
/*
 * Proxying, happy paths and refusals: every function to a thread that
 * serves its mailbox with mbx_wait and (Emscripten) to a thread that serves
 * from its JS event loop; callers with a mailbox (they serve while blocked)
 * and without (the main thread natively: they sleep); serving turned off;
 * contexts finished inline, from another thread and later from the target
 * itself; every refusal code; nothing left allocated.
 */
#include "proxy_util.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

static _Atomic int g_async_runs, g_async_off_thread;
static pthread_t g_expected; /* thread fn must run on */

typedef struct job {
  int in, out;
  pthread_t ran_on;
} job;

static void square(void *p) {
  job *j = p;
  j->out = j->in * j->in;
  j->ran_on = pthread_self();
}

static void async_inc(void *p) {
  (void)p;
  if (!pthread_equal(pthread_self(), g_expected))
    atomic_fetch_add(&g_async_off_thread, 1);
  atomic_fetch_add(&g_async_runs, 1);
}

/* ---- contexts */
static void ctx_inline(mbx_proxy_ctx *ctx, void *p) {
  square(p);
  CHECK_EQ(mbx_proxy_finish(ctx), MBX_OK);
}

/* A helper thread finishes contexts it is handed. (Not a thread created on
 * the spot: on Emscripten 3.1.6 pthread_create from a pthread needs the main
 * thread's event loop, and the main thread is blocked in the call.) */
static mbx_handle g_finisher;
static void finish_after_delay(void *ctx) {
  sleep_ms(10);
  CHECK_EQ(mbx_proxy_finish(ctx), MBX_OK);
}
static void ctx_other_thread(mbx_proxy_ctx *ctx, void *p) {
  square(p);
  CHECK_EQ(mbx_proxy_async(g_finisher, finish_after_delay, NULL, ctx), MBX_OK);
}

static void finish_later(void *ctx) {
  CHECK_EQ(mbx_proxy_finish(ctx), MBX_OK);
}
static void ctx_later_on_target(mbx_proxy_ctx *ctx, void *p) {
  square(p);
  /* After fn returns, the target finishes from a later message. */
  CHECK_EQ(mbx_proxy_async(mbx_self(), finish_later, NULL, ctx), MBX_OK);
}

/* ---- callbacks, on a caller thread with a mailbox */
static _Atomic int g_done, g_canceled;
/* tls_done: on_done counted on the thread that runs it, which the caller
 * waits on: so it ran on the caller. */
static _Thread_local int tls_done;
static void on_done(void *p) {
  job *j = p;
  CHECK_EQ(j->out, j->in * j->in);
  tls_done++;
  atomic_fetch_add(&g_done, 1);
}
static void on_cancel(void *p) {
  (void)p;
  atomic_fetch_add(&g_canceled, 1);
}

typedef struct caller_args {
  mbx_handle target;
  int serving;
} caller_args;

/* Exercise every function from a thread that has a mailbox. */
static void *caller_main(void *p) {
  caller_args *a = p;
  int previous = mbx_proxy_set_serving(a->serving);
  CHECK_EQ(previous, 1);
  for (int i = 0; i < 50; i++) {
    job j = {i, 0, 0};
    CHECK_EQ(mbx_proxy_sync(a->target, square, &j), MBX_OK);
    CHECK_EQ(j.out, i * i);
    CHECK(pthread_equal(j.ran_on, g_expected));
    j.out = 0;
    CHECK_EQ(mbx_proxy_sync_timed(a->target, square, &j, 10000), MBX_OK);
    CHECK_EQ(j.out, i * i);
    j.out = 0;
    CHECK_EQ(mbx_proxy_sync_with_ctx(a->target, ctx_inline, &j), MBX_OK);
    CHECK_EQ(j.out, i * i);
  }
  job j = {7, 0, 0};
  CHECK_EQ(mbx_proxy_sync_with_ctx(a->target, ctx_other_thread, &j), MBX_OK);
  CHECK_EQ(j.out, 49);
  j.out = 0;
  CHECK_EQ(mbx_proxy_sync_with_ctx(a->target, ctx_later_on_target, &j),
           MBX_OK);
  CHECK_EQ(j.out, 49);
  /* Callbacks: on_done runs here, when this thread drains. */
  job jobs[20];
  for (int i = 0; i < 20; i++) {
    jobs[i] = (job){i, 0, 0};
    CHECK_EQ(mbx_proxy_callback(a->target, square, on_done, on_cancel,
                                &jobs[i]),
             MBX_OK);
  }
  while (tls_done < 20)
    CHECK(mbx_wait(10000) > 0);
  /* Callback to itself: fn and on_done both run here. */
  jobs[0] = (job){3, 0, 0};
  CHECK_EQ(mbx_proxy_callback(mbx_self(), square, on_done, on_cancel, &jobs[0]),
           MBX_OK);
  while (tls_done < 21)
    CHECK(mbx_wait(10000) > 0);
  CHECK(pthread_equal(jobs[0].ran_on, pthread_self()));
  /* Refusals. */
  CHECK_EQ(mbx_proxy_sync(mbx_self(), square, &j), MBX_EDEADLK);
  CHECK_EQ(mbx_proxy_sync_with_ctx(mbx_self(), ctx_inline, &j), MBX_EDEADLK);
  CHECK_EQ(mbx_proxy_set_blocking(0), -1);
  CHECK_EQ(mbx_proxy_sync(a->target, square, &j), MBX_EWOULDBLOCK);
  CHECK_EQ(mbx_proxy_sync_timed(a->target, square, &j, 5), MBX_EWOULDBLOCK);
  CHECK_EQ(mbx_proxy_set_blocking(-1), 0);
  mbx_proxy_set_serving(1);
  return NULL;
}

/* A target refuses a sync call to itself from inside a handler. */
static _Atomic int g_self_rc = 1;
static void sync_to_self(void *p) {
  job *j = p;
  atomic_store(&g_self_rc, mbx_proxy_sync(mbx_self(), square, j));
}

static void run_caller(mbx_handle target, int serving) {
  caller_args a = {target, serving};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, caller_main, &a), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
}

/* Everything the main thread (no mailbox natively: it sleeps) can do. */
static void exercise_target(mbx_handle target, pthread_t thread) {
  g_expected = thread;
  job j = {12, 0, 0};
  CHECK_EQ(mbx_proxy_sync(target, square, &j), MBX_OK);
  CHECK_EQ(j.out, 144);
  CHECK(pthread_equal(j.ran_on, thread));
  int before = atomic_load(&g_async_runs);
  for (int i = 0; i < 100; i++)
    CHECK_EQ(mbx_proxy_async(target, async_inc, NULL, NULL), MBX_OK);
  /* Same sender, FIFO: after a sync call returns, the asyncs before it ran. */
  CHECK_EQ(mbx_proxy_sync(target, square, &j), MBX_OK);
  CHECK_EQ(atomic_load(&g_async_runs), before + 100);
  CHECK_EQ(mbx_proxy_sync_with_ctx(target, ctx_other_thread, &j), MBX_OK);
  CHECK_EQ(mbx_proxy_sync(target, sync_to_self, &j), MBX_OK);
  CHECK_EQ(atomic_load(&g_self_rc), MBX_EDEADLK);
  run_caller(target, 1);
  run_caller(target, 0);
}

#ifdef __EMSCRIPTEN__
static _Atomic int g_loop_ready;
static void *event_loop_main(void *unused) {
  (void)unused;
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store(&g_loop_ready, 1);
  emscripten_exit_with_live_runtime();
  return NULL;
}
#endif

int main(void) {
  /* Argument and handle refusals, before any thread exists. */
  job j = {2, 0, 0};
  CHECK_EQ(mbx_proxy_sync(MBX_NULL_HANDLE, square, &j), MBX_EINVAL);
  CHECK_EQ(mbx_proxy_async(MBX_NULL_HANDLE, square, NULL, &j), MBX_EINVAL);
  mbx_handle forged = {((uint64_t)77 << 32) | 1000000};
  CHECK_EQ(mbx_proxy_sync(forged, square, &j), MBX_EINVAL);

  pthread_t server, finisher;
  mbx_handle sh = start_server(&server);
  g_finisher = start_server(&finisher);
  CHECK_EQ(mbx_proxy_sync(sh, NULL, &j), MBX_EINVAL);
  CHECK_EQ(mbx_proxy_sync_with_ctx(sh, NULL, &j), MBX_EINVAL);
  if (mbx_handle_is_null(mbx_self()))
    CHECK_EQ(mbx_proxy_callback(sh, square, on_done, on_cancel, &j),
             MBX_EPERM);
  /* The default lets this thread block (native, and Node's main thread). */
  CHECK_EQ(mbx_proxy_set_blocking(-1), -1);
  exercise_target(sh, server);
  stop_server(server, sh);
  int rc = mbx_proxy_sync(sh, square, &j);
  CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  rc = mbx_proxy_sync_with_ctx(sh, ctx_inline, &j);
  CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
  rc = mbx_proxy_async(sh, square, NULL, &j);
  CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);

  int targets = 1;
#ifdef __EMSCRIPTEN__
  /* A thread serving from its JS event loop. */
  pthread_t looper;
  CHECK_EQ(pthread_create(&looper, NULL, event_loop_main, NULL), 0);
  mbx_handle lh = mbx_thread_handle(looper);
  await_int(&g_loop_ready, 1);
  exercise_target(lh, looper);
  CHECK_EQ(mbx_proxy_async(lh, exit_thread, NULL, NULL), MBX_OK);
  CHECK_EQ(pthread_join(looper, NULL), 0);
  targets++;
#endif
  stop_server(finisher, g_finisher);
  CHECK_EQ(atomic_load(&g_async_off_thread), 0);
  CHECK_EQ(atomic_load(&g_done), 42 * targets);
  CHECK_EQ(atomic_load(&g_canceled), 0);
  check_no_live_calls();
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  CHECK_EQ(ps.sync_canceled, 0);
  CHECK_EQ(ps.sync_timed_out, 0);
  CHECK_EQ(ps.callbacks_done, (uint64_t)(42 * targets));
  printf("targets=%d sync_done=%llu callbacks_done=%llu\n", targets,
         (unsigned long long)ps.sync_done,
         (unsigned long long)ps.callbacks_done);
  printf("PASS proxy_basic\n");
  return 0;
}
