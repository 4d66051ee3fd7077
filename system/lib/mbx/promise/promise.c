/*
 * Promises for JavaScript callers (<mbx/promise.h>): proxied calls whose
 * outcome settles a JS Promise (src/mbx.js keeps the JS side) or an
 * em_promise_t, built on mbx_proxy_callback.
 *
 * A call is one heap record shared by the target (the work writes fn's
 * result into it) and the caller (on_done/on_cancel settle the promise from
 * it). Its `done` bits say who still needs it:
 *   TARGET_DONE  fn returned; the target never touches the record again
 *   CALLER_DONE  the caller has settled the promise and let go
 * whoever sets the second bit frees it. on_cancel means fn did not return
 * (the target never will touch it), so the caller frees at once. A caller
 * that exits with calls outstanding (its outcome messages are then
 * dropped) frees them from a thread-specific-data destructor, which runs
 * after its mailbox closed: that close abandoned every fn that had not
 * started and waited for one that was running, so neither on_done nor the
 * target can touch them any more. Their promises are dropped, not
 * settled: a reaction would run JS (and maybe C) on a worker whose thread
 * is gone.
 */
#include <mbx/promise.h>
#include <mbx/thread.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>

/* src/mbx.js: the calling thread's table of JS promises. */
uint32_t mbx_js_promise_new(void);
void mbx_js_promise_settle(uint32_t id, int code, void *value,
                           const char *message);
void mbx_js_promise_thread_exit(void);

enum { TARGET_DONE = 1, CALLER_DONE = 2 };

typedef struct promise_call {
  mbx_promise_fn fn;
  mbx_run_fn run; /* instead of fn: fulfilled with NULL */
  void *arg;
  void *result;
  uint32_t id; /* JS promise id, or 0 for an em_promise_t */
#ifdef MBX_HAVE_EM_PROMISE
  em_promise_t em;
#endif
  _Atomic int32_t done;
  struct promise_call *prev, *next; /* the caller's outstanding list */
} promise_call;

/* The calling thread's outstanding calls (caller only). */
static _Thread_local promise_call *tls_outstanding;
static pthread_key_t g_exit_key;
static pthread_once_t g_exit_once = PTHREAD_ONCE_INIT;

static void let_go(promise_call *c, int32_t bit) {
  // Acq_rel: release our uses of the record; the last one acquires the
  // other side's before freeing.
  if (atomic_fetch_or_explicit(&c->done, bit, memory_order_acq_rel) &
      (TARGET_DONE | CALLER_DONE) & ~bit)
    free(c);
}

static void unlink_call(promise_call *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    tls_outstanding = c->next;
  if (c->next)
    c->next->prev = c->prev;
}

/* Settle the promise of c on the calling thread: code 0 fulfills with value. */
static void settle(promise_call *c, int code, void *value) {
#ifdef MBX_HAVE_EM_PROMISE
  if (!c->id) {
    emscripten_promise_resolve(c->em,
                               code ? EM_PROMISE_REJECT : EM_PROMISE_FULFILL,
                               code ? (void *)(intptr_t)code : value);
    emscripten_promise_destroy(c->em);
    return;
  }
#endif
  mbx_js_promise_settle(c->id, code, value, code ? mbx_strerror(code) : NULL);
}

static void work(void *p) { /* on the target */
  promise_call *c = p;
  if (c->run)
    c->run(c->arg); /* result stays NULL (calloc) */
  else
    c->result = c->fn(c->arg);
  let_go(c, TARGET_DONE);
}

static void on_done(void *p) { /* on the caller: fn returned */
  promise_call *c = p;
  unlink_call(c);
  settle(c, MBX_OK, c->result);
  let_go(c, CALLER_DONE);
}

static void on_cancel(void *p) { /* on the caller: fn never returned */
  promise_call *c = p;
  unlink_call(c);
  settle(c, MBX_ECANCELED, NULL);
  free(c);
}

/* The caller exits: its outcome messages were dropped with its mailbox. */
static void caller_exiting(void *unused) {
  (void)unused;
  promise_call *c = tls_outstanding;
  tls_outstanding = NULL;
  while (c) {
    promise_call *next = c->next;
#ifdef MBX_HAVE_EM_PROMISE
    if (!c->id)
      emscripten_promise_destroy(c->em); /* unsettled: see the top */
#endif
    /* The mailbox's close abandoned an fn that had not started and waited
     * for one that was running (<mbx/proxy.h>): no target touches c any
     * more. Acquire: see a finished fn's writes before the free. */
    (void)atomic_load_explicit(&c->done, memory_order_acquire);
    free(c);
    c = next;
  }
  mbx_js_promise_thread_exit(); /* the worker's next thread starts clean */
}

static void make_exit_key(void) {
  if (pthread_key_create(&g_exit_key, caller_exiting) != 0)
    g_exit_key = (pthread_key_t)-1;
}

/* Run caller_exiting when this pthread exits (the destructor runs only for
 * a non-null value). Returns 0 if it could not be arranged. */
static int watch_exit(void) {
  pthread_once(&g_exit_once, make_exit_key);
  return g_exit_key != (pthread_key_t)-1 &&
         pthread_setspecific(g_exit_key, (void *)1) == 0;
}

/* Queue c; on failure the promise is rejected now and c freed. */
static int start(mbx_handle target, promise_call *c) {
  int rc = MBX_OK;
  if (!c->fn && !c->run)
    rc = MBX_EINVAL;
  else if (mbx_handle_is_null(mbx_self()))
    rc = MBX_EPERM;
  else if (!mbx_event_loop_attached()) /* its reactions would never run */
    rc = MBX_EPERM;
  if (rc == MBX_OK && !watch_exit())
    rc = MBX_ENOMEM;
  if (rc == MBX_OK) {
    // Relaxed: published by the send's release.
    atomic_store_explicit(&c->done, 0, memory_order_relaxed);
    c->prev = NULL;
    c->next = tls_outstanding;
    if (c->next)
      c->next->prev = c;
    tls_outstanding = c;
    rc = mbx_proxy_callback(target, work, on_done, on_cancel, c);
    if (rc != MBX_OK)
      unlink_call(c);
  }
  if (rc != MBX_OK) {
    settle(c, rc, NULL);
    free(c);
  }
  return rc;
}

int mbx_proxy_promise_js(mbx_handle target, mbx_promise_fn fn, void *arg,
                         uint32_t *promise_id) {
  if (!promise_id)
    return MBX_EINVAL;
  *promise_id = mbx_js_promise_new();
  watch_exit(); /* also for a refused call: its entry goes at thread exit */
  promise_call *c = calloc(1, sizeof *c);
  if (!c) {
    mbx_js_promise_settle(*promise_id, MBX_ENOMEM, NULL,
                          mbx_strerror(MBX_ENOMEM));
    return MBX_ENOMEM;
  }
  c->fn = fn;
  c->arg = arg;
  c->id = *promise_id;
  return start(target, c);
}

#ifdef MBX_HAVE_EM_PROMISE
static em_promise_result_t pass_value(void **result, void *data, void *value) {
  (void)data;
  *result = value;
  return EM_PROMISE_FULFILL;
}
static em_promise_result_t pass_reason(void **result, void *data,
                                       void *reason) {
  (void)data;
  *result = reason;
  return EM_PROMISE_REJECT;
}

static em_promise_t promise_start(mbx_handle target, mbx_promise_fn fn,
                                  mbx_run_fn run, void *arg) {
  /* The caller gets its own handle (a pass-through `then`), so it may
   * destroy it at any time; ours is destroyed when we settle. */
  em_promise_t ours = emscripten_promise_create();
  em_promise_t theirs =
      emscripten_promise_then(ours, pass_value, pass_reason, NULL);
  promise_call *c = calloc(1, sizeof *c);
  if (!c) {
    emscripten_promise_resolve(ours, EM_PROMISE_REJECT,
                               (void *)(intptr_t)MBX_ENOMEM);
    emscripten_promise_destroy(ours);
    return theirs;
  }
  c->fn = fn;
  c->run = run;
  c->arg = arg;
  c->em = ours;
  start(target, c);
  return theirs;
}

em_promise_t mbx_proxy_promise(mbx_handle target, mbx_promise_fn fn,
                               void *arg) {
  return promise_start(target, fn, NULL, arg);
}

em_promise_t mbx_proxy_promise_run(mbx_handle target, mbx_run_fn fn,
                                   void *arg) {
  return promise_start(target, NULL, fn, arg);
}
#endif

/* ---- entry points for src/mbx.js (Module.mbxCall and handle helpers) */

/* Module.mbxCall: returns the promise id (never 0). */
EMSCRIPTEN_KEEPALIVE uint32_t mbx__promise_js_call(uint32_t lo, uint32_t hi,
                                                   mbx_promise_fn fn,
                                                   void *arg) {
  mbx_handle target = {((uint64_t)hi << 32) | lo};
  uint32_t id = 0;
  mbx_proxy_promise_js(target, fn, arg, &id);
  return id;
}

/* Module.mbxSelf/mbxMainThread/mbxThreadHandle: the low word of a handle;
 * the high word is read next with mbx__promise_js_handle_hi. */
static _Thread_local uint32_t tls_handle_hi;
EMSCRIPTEN_KEEPALIVE uint32_t mbx__promise_js_handle(int which,
                                                     uintptr_t thread) {
  mbx_handle h = which == 0   ? mbx_self()
                 : which == 1 ? mbx_main_thread()
                              : mbx_thread_handle((pthread_t)thread);
  tls_handle_hi = (uint32_t)(h.bits >> 32);
  return (uint32_t)h.bits;
}
EMSCRIPTEN_KEEPALIVE uint32_t mbx__promise_js_handle_hi(void) {
  return tls_handle_hi;
}

#else /* native: there is no JS to settle a promise in */

int mbx_proxy_promise_js(mbx_handle target, mbx_promise_fn fn, void *arg,
                         uint32_t *promise_id) {
  (void)target;
  (void)fn;
  (void)arg;
  if (!promise_id)
    return MBX_EINVAL;
  *promise_id = 0;
  return MBX_EPERM;
}

#endif
