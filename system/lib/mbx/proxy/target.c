/*
 * The target side of a proxied call: running the work on the target thread
 * (mbx__proxy_work_run), canceling it, finishing a context, and what the
 * target's exit or death leaves unfinished (the layer's exit and orphan
 * hooks, registered with the core in proxy/ctx.c).
 */
#include "proxy_internal.h"

#include <pthread.h>

typedef mbx__proxy_thread proxy_thread; /* proxy/proxy_internal.h */
static _Thread_local proxy_thread *tls_proxy;
static _Thread_local proxy_thread tls_fallback;

static proxy_thread *this_thread(void) {
  if (!tls_proxy) {
    proxy_thread *p = mbx__alloc_kept(sizeof *p);
    if (p) {
      p->running = p->outstanding = p->callbacks = NULL;
      p->callbacks_count = p->callbacks_prune_at = p->callbacks_settled = 0;
      int layer = mbx__proxy_layer();
      if (layer >= 0)
        mbx__self_layer_set(layer, p);
    }
    tls_proxy = p ? p : &tls_fallback;
  }
  return tls_proxy;
}

mbx__proxy_thread *mbx__proxy_this_thread(void) { return this_thread(); }

static int on_running(proxy_thread *p, mbx_proxy_ctx *c) {
  for (mbx_proxy_ctx *r = p->running; r; r = r->next)
    if (r == c)
      return 1;
  return 0;
}

/* The caller of callbacks exits (or died: can_wait 0): work not started
 * yet is abandoned, so fn never runs on an arg the caller may release
 * once its mailbox is closed (issue 18 item 21); work running now on
 * another thread is waited for (fn may still use arg), unless the caller
 * is dead or the work runs on this very thread (it ended inside fn). */
static void callbacks_abandon(proxy_thread *p, int can_wait) {
  mbx_proxy_ctx *c = p->callbacks;
  p->callbacks = NULL;
  p->callbacks_count = 0;
  while (c) {
    mbx_proxy_ctx *next = c->caller_next;
    if (!mbx__call_settle(c, MBX__CALL_PENDING, MBX__CALL_ABANDONED) &&
        can_wait && !on_running(p, c))
      mbx__call_wait_running(c);
    mbx__call_unref(c); /* the caller's reference */
    c = next;
  }
}

/* Drop the callbacks that were settled, when the list has doubled. */
static void callbacks_prune(proxy_thread *p) {
  mbx_proxy_ctx **link = &p->callbacks;
  uint32_t live = 0;
  while (*link) {
    mbx_proxy_ctx *c = *link;
    // Relaxed: a final state is never left; the unref orders the free.
    int32_t s = atomic_load_explicit(&c->state, memory_order_relaxed);
    if (s != MBX__CALL_PENDING && s != MBX__CALL_RUNNING) {
      *link = c->caller_next;
      mbx__call_unref(c);
    } else {
      link = &c->caller_next;
      live++;
    }
  }
  p->callbacks_count = live;
  p->callbacks_prune_at = 2 * live + 16;
  p->callbacks_settled = 0;
}

void mbx__proxy_callback_settled(void) {
  proxy_thread *p = tls_proxy;
  if (p && ++p->callbacks_settled * 2 >= p->callbacks_count)
    callbacks_prune(p);
}

void mbx__proxy_callback_track(mbx_proxy_ctx *c) {
  proxy_thread *p = this_thread();
  if (p->callbacks_count >= p->callbacks_prune_at)
    callbacks_prune(p);
  c->caller_next = p->callbacks;
  p->callbacks = c;
  p->callbacks_count++;
}

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
    if (s == MBX__CALL_DONE || s == MBX__CALL_CANCELED) {
      *link = o->next;
      mbx__call_unref(o);
    } else {
      link = &o->next;
    }
  }
}

static void outstanding_add(proxy_thread *p, mbx_proxy_ctx *c) {
  mbx__call_ref(c);
  c->next = p->outstanding;
  p->outstanding = c;
}

/* Cancel every outstanding context (the thread exits or died). */
static void cancel_outstanding(proxy_thread *p) {
  mbx_proxy_ctx *c = p->outstanding;
  p->outstanding = NULL;
  while (c) {
    mbx_proxy_ctx *next = c->next;
    if (mbx__call_settle(c, MBX__CALL_RUNNING, MBX__CALL_CANCELED))
      mbx__proxy_count(MBX__PROXY_CONTEXTS_CANCELED);
    mbx__call_unref(c);
    c = next;
  }
}

/* Settle CANCELED the sync and callback work on `running` whose fn will
 * never return here, and drop the references its work_run held. */
static void cancel_running(proxy_thread *p) {
  mbx_proxy_ctx *c = p->running;
  p->running = NULL;
  while (c) {
    mbx_proxy_ctx *next = c->next;
    /* Inside fn, or just before claiming it (PENDING); if it was already
     * settled (DONE, ABANDONED) only the unref was left. */
    if (!mbx__call_settle(c, MBX__CALL_RUNNING, MBX__CALL_CANCELED))
      mbx__call_settle(c, MBX__CALL_PENDING, MBX__CALL_CANCELED);
    mbx__call_unref(c); /* the work message's reference */
    c = next;
  }
}

/* The owner exits, its mailbox closed, before its queue is canceled:
 * contexts still outstanding are canceled first, so that a cancel function
 * that finishes one gets MBX_ECANCELED and its caller too, never MBX_OK
 * for work that did not complete (issue 18 item 4). */
void mbx__proxy_on_close(void) {
  if (tls_proxy) {
    cancel_outstanding(tls_proxy);
    callbacks_abandon(tls_proxy, 1);
  }
}

/* The owner exits, after its queue was canceled. slot is tls_proxy unless
 * it is the fallback (never published) or an orphan closer, called on this
 * live owner (misuse), took and freed it. */
void mbx__proxy_on_exit(void *slot) {
  proxy_thread *p = tls_proxy;
  tls_proxy = NULL;
  if (p && (p == slot || p == &tls_fallback)) {
    /* Work interrupted by pthread_exit left `running` in its cleanup
     * handler. What is still there was unwound by an exception thrown by
     * fn (no C cleanup runs for that: issue 18 item 3), or fn ended the
     * process (exit() inside fn): its caller gets MBX_ECANCELED. (Also
     * here for an exit whose mailbox a close from outside closed first:
     * on_close did not run.) */
    cancel_running(p);
    cancel_outstanding(p);
    callbacks_abandon(p, 1);
    if (p != &tls_fallback)
      mbx__free_kept(p);
  }
  mbx__proxy_cache_flush(); /* last: the unrefs above may have cached one */
}

/* Main thread (the closer of an orphan): the thread died without unwinding,
 * inside the fns on `running` or with contexts outstanding. Each is settled
 * CANCELED (its caller gets MBX_ECANCELED, a callback its on_cancel) and
 * the references the dead thread held are dropped, as its cleanup handlers
 * and exit path would have done. */
void mbx__proxy_on_orphan(void *slot, mbx_run_fn popped_run, void *popped_arg) {
  proxy_thread *p = slot;
  /* Popped, and killed before work_run put it on `running`: nobody took
   * it over, so it is canceled like a queued one (issue 18 item 22b). */
  if (popped_run == mbx__proxy_work_run && !(p && on_running(p, popped_arg)))
    mbx__proxy_work_canceled(popped_arg, MBX_CANCEL_ABNORMAL_EXIT);
  if (!p)
    return;
  cancel_running(p); /* killed inside fn, or just before claiming it */
  cancel_outstanding(p);
  callbacks_abandon(p, 0); /* the dead caller's callbacks */
  mbx__free_kept(p);
}

/* Cleanup handler: the target ends (pthread_exit, cancellation) inside fn. */
static void work_interrupted(void *p) {
  mbx_proxy_ctx *c = p;
  if (mbx__call_settle(c, MBX__CALL_RUNNING, MBX__CALL_CANCELED) &&
      c->kind == MBX__KIND_CTX)
    mbx__proxy_count(MBX__PROXY_CONTEXTS_CANCELED);
  if (c->kind != MBX__KIND_CTX) {
    this_thread()->running = c->next; /* innermost first */
    mbx__call_unref(c); /* a context's reference is its finisher's */
  }
}

static void call_fn(mbx_proxy_ctx *c) {
  if (c->kind == MBX__KIND_CTX)
    c->ctx_fn(c, c->arg);
  else
    c->fn(c->arg);
}

/* Work is on `running` from its first statement (before anything that may
 * allocate or take long) until its outcome is settled, a context's until
 * it is on `outstanding`, so that a thread killed anywhere in between
 * leaves it where mbx__proxy_on_orphan finds it; before that, the core
 * reports it as popped. */
void mbx__proxy_work_run(void *arg) {
  mbx_proxy_ctx *c = arg;
  proxy_thread *p = this_thread();
  c->next = p->running;
  p->running = c;
  mbx__self_popped_clear(); /* `running` has it now */
  if (p->outstanding)
    outstanding_prune(p);
  if (!mbx__call_settle(c, MBX__CALL_PENDING, MBX__CALL_RUNNING)) {
    /* abandoned by its caller */
    p->running = c->next;
    mbx__proxy_count(MBX__PROXY_ABANDONED);
    mbx__call_unref(c);
    return;
  }
  if (c->kind == MBX__KIND_CTX) {
    /* outstanding_add reuses c->next: read what is below c first (else
     * `running` went on into `outstanding`, whose contexts an exit or an
     * orphan closer then unreferenced twice). */
    mbx_proxy_ctx *below = c->next;
    outstanding_add(p, c);
    p->running = below; /* its finisher's now, or the exit's */
  }
  pthread_cleanup_push(work_interrupted, c);
  call_fn(c);
  pthread_cleanup_pop(0);
  if (c->kind != MBX__KIND_CTX) {
    mbx__call_settle(c, MBX__CALL_RUNNING, MBX__CALL_DONE);
    this_thread()->running = c->next; /* not p: clobbered by the cleanup */
    mbx__call_unref(c);
  }
}

void mbx__proxy_work_canceled(void *arg, int reason) {
  (void)reason;
  mbx_proxy_ctx *c = arg;
  if (!mbx__call_settle(c, MBX__CALL_PENDING, MBX__CALL_CANCELED))
    mbx__proxy_count(MBX__PROXY_ABANDONED); /* the caller gave up first */
  mbx__call_unref(c);
}

int mbx_proxy_finish_status(mbx_proxy_ctx *ctx, int status) {
  if (!ctx || status > 0)
    return MBX_EINVAL; /* nothing done: ctx is still to be finished */
  /* Only the finisher writes it, and only the winner's settle makes the
   * caller read it (the CAS publishes it). */
  ctx->status = status;
  int won = mbx__call_settle(ctx, MBX__CALL_RUNNING, MBX__CALL_DONE);
  mbx__call_unref(ctx);
  return won ? MBX_OK : MBX_ECANCELED;
}

int mbx_proxy_finish(mbx_proxy_ctx *ctx) {
  return mbx_proxy_finish_status(ctx, MBX_OK);
}
