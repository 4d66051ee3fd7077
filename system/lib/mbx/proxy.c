/*
 * Proxying on top of the mailboxes (public API in <mbx/proxy.h>, design in
 * docs/proxying.md).
 *
 * Every call is a heap record, reference counted: the caller holds one
 * reference while it waits, the work message one (handed to the finisher
 * once a context function starts), the target's outstanding-context list
 * one, and a callback's outcome message one. Nothing is ever written to the
 * caller's stack, so callers that time out, are canceled or exit cannot be
 * hurt by a late completion.
 *
 * The record's `state` decides every race in one CAS:
 *   PENDING -> RUNNING    the target starts fn
 *   PENDING -> ABANDONED  the caller timed out / is unwinding: fn never runs
 *   PENDING -> CANCELED   the target exited with the work still queued
 *   RUNNING -> DONE       fn returned, or mbx_proxy_finish
 *   RUNNING -> CANCELED   the target exited inside fn, or with the context
 *                         outstanding
 * Whoever moves it to DONE or CANCELED reports the outcome, exactly once.
 *
 * A blocked caller that serves its mailbox is woken by a reply message sent
 * to that mailbox (preallocated with the record, so the reply cannot fail
 * for lack of memory); one that does not (no mailbox, serving off, or
 * unwinding) sleeps on `state` itself.
 */
#include "internal.h"
#include "platform.h"

#include <mbx/proxy.h>
#include <pthread.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/em_js.h>
#include <emscripten/threading.h>
#endif

enum { PENDING, RUNNING, DONE, CANCELED, ABANDONED };
enum { KIND_SYNC, KIND_CTX, KIND_CALLBACK };

struct mbx_proxy_ctx {
  _Atomic int32_t state; /* also the futex word of non-serving waiters */
  _Atomic int32_t refs;
  _Atomic int32_t sleeper; /* a waiter sleeps on state: wake it */
  /* A serving caller polls state itself (its spin before serving): the
   * reporter sends it no reply message. */
  _Atomic int32_t watching;
  int kind;
  mbx_run_fn fn;
  mbx_proxy_ctx_fn ctx_fn;
  mbx_run_fn on_done, on_cancel;
  void *arg;
  mbx_handle reply_to; /* caller's mailbox, or null: sleeper only */
  mbx_node *reply;     /* owned by the record until the reporter sends it */
  mbx_proxy_ctx *next; /* target's outstanding list (target only) */
};

/* Counters: sharded (alloc.c), so that a caller and its target do not
 * bounce one cache line per call. */
static void count(int which) { mbx__stat_add(which, 1); }

static _Thread_local int tls_not_serving; /* 0 = default on */
static _Thread_local int tls_blocking = -1;
/* What a target thread holds of proxied work. On the heap, published in the
 * thread's record (owner_proxy), so that when the thread's worker is killed
 * the main thread can cancel it (mbx__proxy_orphaned): the dead thread's
 * stack and TLS may be freed by then. If that allocation fails the thread
 * uses tls_fallback, and only a killed worker's work stays unresolved. */
typedef struct proxy_thread {
  /* Sync and callback work whose fn runs on this thread now, innermost
   * first (linked through `next`; nested when a handler blocks serving). */
  mbx_proxy_ctx *running;
  /* Contexts this thread started and that may still be outstanding. */
  mbx_proxy_ctx *outstanding;
} proxy_thread;
static _Thread_local proxy_thread *tls_proxy;
static _Thread_local proxy_thread tls_fallback;

static proxy_thread *this_thread(void) {
  if (!tls_proxy) {
    proxy_thread *p = mbx__alloc(sizeof *p);
    if (p) {
      p->running = p->outstanding = NULL;
      mbx__self_set_owner_proxy(p);
    }
    tls_proxy = p ? p : &tls_fallback;
  }
  return tls_proxy;
}

/* ---- records */

/* One freed call record kept per thread that owns a mailbox (a sync caller
 * usually drops the last reference itself), so that a round trip does not
 * malloc and free: both take the allocator's lock, which the target's own
 * allocations contend for. Freed at the mailbox's exit. */
static _Thread_local mbx_proxy_ctx *tls_spare;

void mbx__proxy_cache_flush(void) {
  mbx__free(tls_spare);
  tls_spare = NULL;
}

static mbx_proxy_ctx *record_new(int kind, mbx_handle reply_to) {
  mbx_proxy_ctx *c = tls_spare;
  if (c)
    tls_spare = NULL;
  else if (!(c = mbx__alloc(sizeof *c)))
    return NULL;
  c->reply = NULL;
  if (!mbx_handle_is_null(reply_to)) {
    c->reply = mbx__node_alloc();
    if (!c->reply) {
      mbx__free(c);
      return NULL;
    }
  }
  // Relaxed (all three): the record is published by the send's release.
  atomic_store_explicit(&c->state, PENDING, memory_order_relaxed);
  atomic_store_explicit(&c->refs, 2, memory_order_relaxed); /* caller, work */
  atomic_store_explicit(&c->sleeper, 0, memory_order_relaxed);
  atomic_store_explicit(&c->watching, 0, memory_order_relaxed); // see above
  c->kind = kind;
  c->fn = NULL;
  c->ctx_fn = NULL;
  c->on_done = c->on_cancel = NULL;
  c->arg = NULL;
  c->reply_to = reply_to;
  c->next = NULL;
  count(MBX_STAT_PROXY_CALLS_NEW);
  return c;
}

static void record_ref(mbx_proxy_ctx *c) {
  // Relaxed: the caller already holds a reference.
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void record_unref(mbx_proxy_ctx *c) {
  // Acq_rel: release our uses; the last one acquires everyone's.
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (c->reply)
    mbx__node_free(c->reply);
  if (!tls_spare && mbx__self_pending_word())
    tls_spare = c;
  else
    mbx__free(c);
  count(MBX_STAT_PROXY_CALLS_FREED);
}

/* ---- reporting an outcome */

static void reply_wakes_only(void *unused) { (void)unused; }

static void outcome_run(void *p) { /* on the callback's caller */
  mbx_proxy_ctx *c = p;
  // Acquire: fn's effects on the target happen before on_done.
  if (atomic_load_explicit(&c->state, memory_order_acquire) == DONE) {
    count(MBX_STAT_PROXY_CALLBACKS_DONE);
    if (c->on_done)
      c->on_done(c->arg);
  } else {
    count(MBX_STAT_PROXY_CALLBACKS_CANCELED);
    if (c->on_cancel)
      c->on_cancel(c->arg);
  }
  record_unref(c);
}

static void outcome_dropped(void *p, int reason) { /* the caller is exiting */
  (void)reason;
  count(MBX_STAT_PROXY_CALLBACKS_DROPPED);
  record_unref(p);
}

/* Move state from `from` to `to`. The winner of a final state reports it;
 * the caller of settle keeps its own reference either way. */
static int settle(mbx_proxy_ctx *c, int32_t from, int32_t to) {
  // Seq_cst: the Dekker pair with a sleeping waiter (it sets `sleeper`,
  // then re-reads state in the futex wait; we write state, then read
  // `sleeper`). Also releases fn's effects to the waiter. Relaxed on
  // failure: the loser does nothing.
  if (!atomic_compare_exchange_strong_explicit(
          &c->state, &from, to, memory_order_seq_cst, memory_order_relaxed))
    return 0;
  if (to != DONE && to != CANCELED)
    return 1;
  mbx_node *reply = c->reply;
  c->reply = NULL; /* only the winner gets here */
  if (c->kind == KIND_CALLBACK) {
    reply->run = outcome_run;
    reply->cancel = outcome_dropped;
    reply->arg = c;
    record_ref(c); /* the outcome message's */
    if (mbx__send_node(c->reply_to, reply, 0) != MBX_OK) {
      mbx__node_free(reply);
      count(MBX_STAT_PROXY_CALLBACKS_DROPPED);
      record_unref(c);
    }
    return 1;
  }
  // Seq_cst: see above.
  if (atomic_load_explicit(&c->sleeper, memory_order_seq_cst))
    mbx_platform_wake_all(&c->state);
  // Seq_cst: the Dekker pair with a watching caller (it clears `watching`,
  // then re-reads state; we wrote state, then read `watching`).
  if (reply && atomic_load_explicit(&c->watching, memory_order_seq_cst)) {
    c->reply = reply; /* unsent: freed with the record */
    count(MBX_STAT_PROXY_REPLIES_SKIPPED);
    return 1;
  }
  if (reply) {
    /* Just a wakeup for the caller's mbx__wait: no reference needed. */
    reply->run = reply_wakes_only;
    reply->cancel = NULL;
    reply->arg = NULL;
    if (mbx__send_node(c->reply_to, reply, 0) != MBX_OK) {
      mbx__node_free(reply);
      /* Closed: the caller is unwinding (it sleeps on state, woken above),
       * or its mailbox was closed from outside while it slept in
       * mbx__wait: wake that wait, which then sees the close and falls
       * back to state. Records are never freed: a stray wake is harmless. */
      mbx_record *r;
      if (mbx__lookup(c->reply_to, &r) == MBX_OK)
        mbx_platform_wake_all(&r->pending);
    }
  }
  return 1;
}

/* ---- the target side */

/* Drop the contexts that were finished since the last look: the list only
 * holds references, and finish (any thread) cannot touch it. Runs before
 * each proxied work on this thread, so a finished context lingers at most
 * until the next one, or until the thread exits. */
static void outstanding_prune(proxy_thread *p) {
  mbx_proxy_ctx **link = &p->outstanding;
  while (*link) {
    mbx_proxy_ctx *o = *link;
    // Relaxed: a final state is never left; the unref orders the free.
    int32_t s = atomic_load_explicit(&o->state, memory_order_relaxed);
    if (s == DONE || s == CANCELED) {
      *link = o->next;
      record_unref(o);
    } else {
      link = &o->next;
    }
  }
}

static void outstanding_add(proxy_thread *p, mbx_proxy_ctx *c) {
  record_ref(c);
  c->next = p->outstanding;
  p->outstanding = c;
}

/* Cancel every outstanding context (the thread exits or died). */
static void cancel_outstanding(proxy_thread *p) {
  mbx_proxy_ctx *c = p->outstanding;
  p->outstanding = NULL;
  while (c) {
    mbx_proxy_ctx *next = c->next;
    if (settle(c, RUNNING, CANCELED))
      count(MBX_STAT_PROXY_CONTEXTS_CANCELED);
    record_unref(c);
    c = next;
  }
}

void mbx__proxy_thread_exiting(void) {
  proxy_thread *p = tls_proxy;
  if (!p) {
    mbx__proxy_cache_flush();
    return;
  }
  tls_proxy = NULL;
  /* Work interrupted by pthread_exit left `running` in its cleanup
   * handler; the mailbox core clears owner_proxy after this returns. */
  cancel_outstanding(p);
  if (p != &tls_fallback)
    mbx__free(p);
  mbx__proxy_cache_flush(); /* last: the unrefs above may have cached one */
}

/* Main thread (the closer of an orphan): the thread died without unwinding,
 * inside the fns on `running` or with contexts outstanding. Each is settled
 * CANCELED (its caller gets MBX_ECANCELED, a callback its on_cancel) and
 * the references the dead thread held are dropped, as its cleanup handlers
 * and exit path would have done. */
void mbx__proxy_orphaned(void *state) {
  proxy_thread *p = state;
  mbx_proxy_ctx *c = p->running;
  p->running = NULL;
  while (c) {
    mbx_proxy_ctx *next = c->next;
    /* Killed inside fn, or just before claiming it (PENDING); if it was
     * already settled (DONE, ABANDONED) only the unref was left. */
    if (!settle(c, RUNNING, CANCELED))
      settle(c, PENDING, CANCELED);
    record_unref(c); /* the work message's reference */
    c = next;
  }
  cancel_outstanding(p);
  mbx__free(p);
}

/* Cleanup handler: the target ends (pthread_exit, cancellation) inside fn. */
static void work_interrupted(void *p) {
  mbx_proxy_ctx *c = p;
  if (settle(c, RUNNING, CANCELED) && c->kind == KIND_CTX)
    count(MBX_STAT_PROXY_CONTEXTS_CANCELED);
  if (c->kind != KIND_CTX) {
    this_thread()->running = c->next; /* innermost first */
    record_unref(c); /* a context's reference is its finisher's */
  }
}

static void call_fn(mbx_proxy_ctx *c) {
  if (c->kind == KIND_CTX)
    c->ctx_fn(c, c->arg);
  else
    c->fn(c->arg);
}

/* Sync and callback work is on `running` from before it is claimed until
 * after its outcome is settled, so that a thread killed anywhere in
 * between leaves it where mbx__proxy_orphaned finds it. */
static void work_run(void *arg) {
  mbx_proxy_ctx *c = arg;
  proxy_thread *p = this_thread();
  if (p->outstanding)
    outstanding_prune(p);
  if (c->kind != KIND_CTX) {
    c->next = p->running;
    p->running = c;
  }
  if (!settle(c, PENDING, RUNNING)) { /* abandoned by its caller */
    if (c->kind != KIND_CTX)
      p->running = c->next;
    count(MBX_STAT_PROXY_ABANDONED);
    record_unref(c);
    return;
  }
  if (c->kind == KIND_CTX)
    outstanding_add(p, c);
  pthread_cleanup_push(work_interrupted, c);
  call_fn(c);
  pthread_cleanup_pop(0);
  if (c->kind != KIND_CTX) {
    settle(c, RUNNING, DONE);
    this_thread()->running = c->next; /* not p: clobbered by the cleanup */
    record_unref(c);
  }
}

static void work_canceled(void *p, int reason) {
  (void)reason;
  mbx_proxy_ctx *c = p;
  if (!settle(c, PENDING, CANCELED))
    count(MBX_STAT_PROXY_ABANDONED); /* the caller gave up first */
  record_unref(c);
}

int mbx_proxy_finish(mbx_proxy_ctx *ctx) {
  int won = settle(ctx, RUNNING, DONE);
  record_unref(ctx);
  return won ? MBX_OK : MBX_ECANCELED;
}

/* ---- the caller side */

#ifdef __EMSCRIPTEN__
/* A web page's main thread cannot Atomics.wait; Node's main thread can. */
/* The body is JS: keep clang-format away from it. */
// clang-format off
EM_JS(int, mbx_proxy_js_on_web_page, (void), {
  return typeof window === 'object' ? 1 : 0;
});
// clang-format on
#endif

static int may_block(void) {
  if (tls_blocking >= 0)
    return tls_blocking;
#ifdef __EMSCRIPTEN__
  if (emscripten_is_main_browser_thread() && mbx_proxy_js_on_web_page())
    return 0;
#endif
  return 1;
}

int mbx_proxy_set_blocking(int allowed) {
  int previous = tls_blocking;
  tls_blocking = allowed < 0 ? -1 : allowed != 0;
  return previous;
}

int mbx_proxy_set_serving(int on) {
  int previous = !tls_not_serving;
  tls_not_serving = !on;
  return previous;
}

/* Sleep on state (no serving) until it leaves `seen` or the deadline. */
static void sleep_on_state(mbx_proxy_ctx *c, int32_t seen, double remaining) {
  if (mbx__spin_while_equal(&c->state, seen, remaining))
    return;
  // Seq_cst: see settle.
  atomic_store_explicit(&c->sleeper, 1, memory_order_seq_cst);
  mbx_platform_wait(&c->state, seen, remaining);
  mbx__spin_slept();
}

/* Cleanup handler: the caller is canceled or exits while waiting. */
static void caller_unwinding(void *p) {
  mbx_proxy_ctx *c = p;
  if (!settle(c, PENDING, ABANDONED)) {
    /* fn is running and may use the caller's stack: let it return first. */
    int32_t s;
    // Acquire: pairs with settle.
    while ((s = atomic_load_explicit(&c->state, memory_order_acquire)) ==
           RUNNING)
      sleep_on_state(c, s, -1);
  }
  record_unref(c);
}

/* Returns the final state (DONE, CANCELED or ABANDONED). */
static int32_t wait_for_outcome(mbx_proxy_ctx *c, double timeout_ms) {
  double deadline = timeout_ms >= 0 ? mbx_platform_now_ms() + timeout_ms : 0;
  int serving = !mbx_handle_is_null(c->reply_to);
  int watched = 0;   /* spun on state once already */
  int just_spun = 0; /* the next mbx__wait must not spin again */
  for (;;) {
    // Acquire: fn's effects on the target happen before our return.
    int32_t s = atomic_load_explicit(&c->state, memory_order_acquire);
    if (s == DONE || s == CANCELED)
      return s;
    double remaining = -1; /* once fn started, only its end counts */
    if (timeout_ms >= 0 && s == PENDING) {
      remaining = deadline - mbx_platform_now_ms();
      if (remaining <= 0) {
        if (settle(c, PENDING, ABANDONED))
          return ABANDONED;
        continue; /* just started: wait for it */
      }
    }
    if (serving && !watched) {
      /* First poll state itself for a spin budget: a quick answer then
       * costs neither a reply message nor a drain. Our mailbox waits
       * meanwhile (a spin is microseconds); the reply, if the reporter
       * saw us no longer watching, wakes the mbx__wait below. */
      watched = just_spun = 1;
      // Seq_cst (both): the Dekker pair with settle.
      atomic_store_explicit(&c->watching, 1, memory_order_seq_cst);
      mbx__spin_while_between(&c->state, PENDING, RUNNING, remaining);
      atomic_store_explicit(&c->watching, 0, memory_order_seq_cst);
      // Seq_cst: the other half of the pair (a settle that saw us
      // watching sent no reply: we must see its state here).
      s = atomic_load_explicit(&c->state, memory_order_seq_cst);
      if (s == DONE || s == CANCELED)
        return s;
      continue;
    }
    if (serving) {
      /* Runs our messages; the reply wakes it. A mailbox closed from
       * outside (runtime exit) cannot take the reply: sleep instead. */
      int rc = mbx__wait(remaining, MBX__WAIT_NESTED_OK |
                                        (just_spun ? MBX__WAIT_NO_SPIN : 0));
      just_spun = 0;
      if (rc < 0 && rc != MBX_ETIMEDOUT)
        serving = 0;
    } else
      sleep_on_state(c, s, remaining);
    pthread_testcancel(); /* a blocking call is a cancellation point */
  }
}

static int call_and_wait(mbx_handle target, int kind, mbx_run_fn fn,
                         mbx_proxy_ctx_fn ctx_fn, void *arg,
                         double timeout_ms) {
  if (!fn && !ctx_fn)
    return MBX_EINVAL;
  mbx_handle self = mbx_self();
  if (!mbx_handle_is_null(self) && mbx_handle_equal(self, target))
    return MBX_EDEADLK;
  if (!may_block())
    return MBX_EWOULDBLOCK;
  /* Serve only an open mailbox: a closed one (a cancel function calling us
   * during exit) could not receive the reply. */
  int serve = !tls_not_serving && mbx__self_open();
  mbx_proxy_ctx *c = record_new(kind, serve ? self : MBX_NULL_HANDLE);
  if (!c)
    return MBX_ENOMEM;
  c->fn = fn;
  c->ctx_fn = ctx_fn;
  c->arg = arg;
  int rc = mbx_send(target, work_run, work_canceled, c);
  if (rc != MBX_OK) {
    record_unref(c); /* the work's reference */
    record_unref(c); /* ours */
    return rc;
  }
  int32_t outcome;
  pthread_cleanup_push(caller_unwinding, c);
  outcome = wait_for_outcome(c, timeout_ms);
  pthread_cleanup_pop(0);
  record_unref(c);
  switch (outcome) {
  case DONE:
    count(MBX_STAT_PROXY_SYNC_DONE);
    return MBX_OK;
  case CANCELED:
    count(MBX_STAT_PROXY_SYNC_CANCELED);
    return MBX_ECANCELED;
  default:
    count(MBX_STAT_PROXY_SYNC_TIMED_OUT);
    return MBX_ETIMEDOUT;
  }
}

int mbx_proxy_sync(mbx_handle target, mbx_run_fn fn, void *arg) {
  return call_and_wait(target, KIND_SYNC, fn, NULL, arg, -1);
}

int mbx_proxy_sync_timed(mbx_handle target, mbx_run_fn fn, void *arg,
                         double timeout_ms) {
  return call_and_wait(target, KIND_SYNC, fn, NULL, arg, timeout_ms);
}

int mbx_proxy_sync_with_ctx(mbx_handle target, mbx_proxy_ctx_fn fn, void *arg) {
  return call_and_wait(target, KIND_CTX, NULL, fn, arg, -1);
}

int mbx_proxy_async(mbx_handle target, mbx_run_fn fn, mbx_cancel_fn cancel,
                    void *arg) {
  return mbx_send(target, fn, cancel, arg);
}

int mbx_proxy_callback(mbx_handle target, mbx_run_fn fn, mbx_run_fn on_done,
                       mbx_run_fn on_cancel, void *arg) {
  if (!fn)
    return MBX_EINVAL;
  mbx_handle self = mbx_self();
  if (mbx_handle_is_null(self))
    return MBX_EPERM;
  mbx_proxy_ctx *c = record_new(KIND_CALLBACK, self);
  if (!c)
    return MBX_ENOMEM;
  c->fn = fn;
  c->on_done = on_done;
  c->on_cancel = on_cancel;
  c->arg = arg;
  int rc = mbx_send(target, work_run, work_canceled, c);
  record_unref(c); /* the caller does not wait: only the work's remains */
  if (rc != MBX_OK)
    record_unref(c);
  return rc;
}

void mbx_proxy_stats_get(mbx_proxy_stats *out) {
  /* Freed first, then new, and clamped: the shards are read one by one,
   * relaxed, while calls come and go. */
  uint64_t freed = mbx__stat_sum(MBX_STAT_PROXY_CALLS_FREED);
  uint64_t created = mbx__stat_sum(MBX_STAT_PROXY_CALLS_NEW);
  out->calls_live = created > freed ? created - freed : 0;
  out->sync_done = mbx__stat_sum(MBX_STAT_PROXY_SYNC_DONE);
  out->sync_canceled = mbx__stat_sum(MBX_STAT_PROXY_SYNC_CANCELED);
  out->sync_timed_out = mbx__stat_sum(MBX_STAT_PROXY_SYNC_TIMED_OUT);
  out->abandoned = mbx__stat_sum(MBX_STAT_PROXY_ABANDONED);
  out->contexts_canceled = mbx__stat_sum(MBX_STAT_PROXY_CONTEXTS_CANCELED);
  out->callbacks_done = mbx__stat_sum(MBX_STAT_PROXY_CALLBACKS_DONE);
  out->callbacks_canceled = mbx__stat_sum(MBX_STAT_PROXY_CALLBACKS_CANCELED);
  out->callbacks_dropped = mbx__stat_sum(MBX_STAT_PROXY_CALLBACKS_DROPPED);
  out->replies_skipped = mbx__stat_sum(MBX_STAT_PROXY_REPLIES_SKIPPED);
}
