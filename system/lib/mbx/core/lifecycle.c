/*
 * A mailbox's end: closing it (steps A to E of core/gate.c) in its four
 * forms: the owner's exit, a close from outside (runtime exit), an orphan's
 * close (a dead owner), and a queue of one's own (core/owned.c), closed by
 * its owner or with the owner's mailbox. Its start is core/bind.c. Every
 * close finishes whatever a cancel function does: it runs with cancellation
 * disabled (a pending pthread_cancel cannot unwind out of it at a
 * cancellation point), and if a cancel function ends the thread anyway
 * (pthread_exit) or the process (exit()), a cleanup handler or the nested
 * exit path resumes it where it stopped. The queue state lives in the
 * record, so a resumed drain simply pops on.
 */
#include "record.h"

#include <pthread.h>

_Thread_local mbx__self_state mbx__self;

mbx_handle mbx_self(void) { return mbx__self.handle; }

/* CLOSE_QUEUE: a queue of one's own (core/owned.c) closed by its owner;
 * CLOSE_QUEUE_ORPHAN: by the closer of its dead owner. */
enum {
  CLOSE_OWNER,
  CLOSE_OUTSIDE,
  CLOSE_ORPHAN,
  CLOSE_QUEUE,
  CLOSE_QUEUE_ORPHAN
};
enum { CLOSING_DRAIN, CLOSING_FINISH, CLOSING_DONE };

/* One close in progress on the calling thread (on its stack; the closes a
 * thread has in progress are chained through `outer`, innermost first). */
typedef struct mbx__closing {
  mbx__record *r;
  mbx_handle h; /* the life being closed */
  int kind;     /* CLOSE_* */
  int reason;   /* MBX_CANCEL_* for the cancel functions */
  int phase;    /* CLOSING_*: how far it got, for a resume */
  int count;    /* canceled or dropped so far */
  int rc;       /* what the close returns */
  int won_a;    /* cleared OPEN itself: reports the close (layers_closed) */
  int pinned;   /* an owner's take-over pins its life (closing_take_over) */
  struct mbx__closing *outer;
} mbx__closing;

static void closing_resume(void *p);

/* Step C: pop and cancel everything queued, with the consumer token taken
 * for good. Each node is counted before its cancel function runs, so a
 * cancel function that never returns leaves the counts right for the
 * resume. */
static void closing_drain(mbx__closing *c) {
  mbx__record *r = c->r;
  pthread_cleanup_push(closing_resume, c);
  mbx__node *n;
  while ((n = mbx__queue_pop(mbx__queue_of(r))) != NULL) {
    mbx_cancel_fn cancel = n->cancel;
    void *arg = n->arg;
    mbx__node_release(r, n);
    r->consumed_unflushed++;
    c->count++;
    if (cancel) {
      mbx__counter_bump(&r->canceled, 1);
      cancel(arg, c->reason);
    } else {
      mbx__counter_bump(&r->dropped, 1);
    }
  }
  /* Then the queues the owner owns (core/owned.c), each closed as below,
   * on the thread that closes the owner's mailbox: inside this step, so
   * that a resumed close finishes them too. */
  if (c->kind == CLOSE_OWNER || c->kind == CLOSE_ORPHAN)
    mbx__queues_close(r, c->reason, c->kind == CLOSE_ORPHAN);
  pthread_cleanup_pop(0);
}

/* Step E for a dead owner (or an unbound mailbox): refused if the owner
 * released its hold itself, having been alive after all (misuse): then
 * MBX_EINVAL, else rc. The closer holds the life meanwhile. */
static int orphan_release(mbx__record *r, mbx_handle h, int rc) {
  // Relaxed: only the owner reads bound; reset at reuse anyway.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  return mbx__gate_release_owner(r, mbx__handle_gen(h)) == MBX_OK ? rc
                                                                  : MBX_EINVAL;
}

/* The owner's part of its exit after the queue: its layers' state, unbind,
 * step E. pinned: the caller holds the life (else it may be retired and
 * reused, and the record is not touched). An orphan closer (called on a
 * live owner: misuse) that released the owner's hold first makes the exit
 * return MBX_ECLOSED; it took the layers' state. */
static void owner_unbind(mbx__closing *c, int pinned) {
  mbx__record *r = c->r;
  mbx__self.record = NULL;
  mbx__self.handle = MBX_NULL_HANDLE;
  mbx__self.draining = 0;
  mbx__self.drain_frame = 0;
  mbx__node_cache_flush(); /* an exiting thread keeps no spare nodes */
  if (!pinned) {
    mbx__layers_exit(NULL); /* the state went with the orphan closer */
    c->rc = MBX_ECLOSED;
    return;
  }
  mbx__layers_exit(r);
  // Relaxed: only the owner reads bound; reset at reuse anyway.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  if (mbx__gate_release_owner(r, mbx__handle_gen(c->h)) != MBX_OK) /* E */
    c->rc = MBX_ECLOSED;
}

/* Step D, the hold's release (step E, or a close from outside's hold):
 * once per close, after the drain. */
static void closing_finish(mbx__closing *c) {
  mbx__record *r = c->r;
  /* Step D. Every sender is done (step B) and we popped everything, so
   * what is left counted is what a dead owner popped and never counted. */
  int32_t lost = mbx__flush_consumed(r);
  MBX_ASSERT(lost >= 0);
  mbx__stats_abandon(r, lost);
  // Seq_cst: Dekker pair with an owner going to sleep (it sets waiting,
  // then reads pending): it sees MBX__PENDING_CLOSED, or we see it waiting.
  atomic_store_explicit(&r->pending, MBX__PENDING_CLOSED, memory_order_seq_cst);
  c->rc = c->count;
  /* Close hooks (lifecycle/: hooks, watches), once per life: the close
   * that won step A reports it, on its thread, after the queue. */
  if (c->won_a)
    mbx__layers_closed(c->h, c->reason);
  switch (c->kind) {
  case CLOSE_OWNER:
    owner_unbind(c, 1); /* OWNER (or our pin) keeps the life until step E */
    if (c->pinned)
      mbx_release(c->h); /* a take-over's pin; may retire the life */
    break;
  case CLOSE_OUTSIDE: {
    /* A live owner: let it see the close. Seq_cst: the other half of the
     * pair above. */
    int32_t mode = atomic_load_explicit(&r->waiting, memory_order_seq_cst);
    if (mode != MBX__WAITING_NONE)
      mbx__wake_owner(r, mode);
    mbx_release(c->h); /* the hold taken by mbx__close_from_outside */
    break;
  }
  case CLOSE_ORPHAN:
  case CLOSE_QUEUE: /* nobody binds a queue; its owner's hold is ours */
  case CLOSE_QUEUE_ORPHAN:
    c->rc = orphan_release(r, c->h, c->count);
    if (c->pinned)
      mbx_release(c->h); /* a queue owner's take-over pin */
    break;
  }
}

/* Run c to its end from wherever it stopped: a normal close, a cleanup
 * handler after a cancel function ended the thread, or a nested exit path
 * after a cancel function called exit(). */
static void closing_complete(mbx__closing *c) {
  if (c->phase == CLOSING_DRAIN) {
    closing_drain(c);
    c->phase = CLOSING_FINISH;
    closing_finish(c);
  }
  c->phase = CLOSING_DONE;
  if (mbx__self.closing == c)
    mbx__self.closing = c->outer;
}

/* Cleanup handler: a cancel function ended the thread inside the drain. */
static void closing_resume(void *p) { closing_complete(p); }

/* How long a closer from outside waits for a live owner to leave a pop (a
 * few instructions, unless it is descheduled there); then it gives up and
 * the owner's exit drains (issue 18 item 22a). */
#define OUTSIDE_CLAIM_TIMEOUT_MS 1000.0
/* How long an orphan's closer gives an owner it was told is dead to leave a
 * pop before taking the queue from it: short, since it runs on the main
 * thread's event loop (issue 18 item 16). */
#define ORPHAN_CLAIM_GRACE_MS 20.0

/* The owner's exit found its mailbox closed by someone else: drain it
 * anyway if that closer left the queue undrained (a closer from outside
 * that gave up on us inside a pop, or one still on its way: the token
 * decides). Pinned first: a closer of an orphan (called on us alive:
 * misuse) may release our hold and retire the life. Only the owner takes
 * over: an orphan closer that did could retire the life while its live
 * owner, having won step A, was about to claim a reused life's token (the
 * Spin model found this). */
static int closing_take_over(mbx__closing *c) {
  if (mbx__gate_pin_owned(c->r, mbx__handle_gen(c->h)) != MBX_OK)
    return MBX_ECLOSED;
  if (mbx__token_closed(c->r)) {
    mbx_release(c->h); /* drained: the caller's refused path pins again */
    return MBX_ECLOSED;
  }
  c->pinned = 1;
  mbx__gate_wait_senders(c->r); /* the other closer's step B */
  return MBX_OK;
}

/*
 * Steps A and B, then the consumer token, for h's life; on success c is
 * pushed on the calling thread's closes in progress and the caller runs
 * its part, then closing_complete. Returns MBX_OK, the gate's refusal
 * (already closed and drained, stale), MBX_ECLOSED (another closer has the
 * queue) or MBX_EBUSY (a closer from outside met the owner inside a pop for
 * too long: the owner's exit drains then).
 */
static int closing_begin(mbx__closing *c, mbx__record *r, mbx_handle h,
                         int kind, int reason) {
  c->r = r;
  c->h = h;
  c->kind = kind;
  c->reason = reason;
  c->phase = CLOSING_DRAIN;
  c->count = 0;
  c->rc = 0;
  int rc = mbx__gate_close(r, mbx__handle_gen(h)); /* steps A and B */
  c->won_a = rc == MBX_OK;
  c->pinned = 0;
  if (rc == MBX_ECLOSED && (kind == CLOSE_OWNER || kind == CLOSE_QUEUE))
    rc = closing_take_over(c);
  if (rc != MBX_OK)
    return rc;
  /* Take the queue for good. The owner holds it only inside a pop. */
  int dead = kind == CLOSE_ORPHAN || kind == CLOSE_QUEUE_ORPHAN;
  rc = mbx__token_closer_claim(r,
                               kind == CLOSE_OUTSIDE ? OUTSIDE_CLAIM_TIMEOUT_MS
                               : dead                ? ORPHAN_CLAIM_GRACE_MS
                                                     : 0,
                               dead);
  if (rc == MBX__TOKEN_FORCED) { /* the owner died inside a pop */
    mbx__queue_repair(mbx__queue_of(r));
  } else if (rc != MBX_OK) {
    if (c->pinned)
      mbx_release(h);
    return rc;
  }
  c->outer = mbx__self.closing;
  mbx__self.closing = c;
  return MBX_OK;
}

/* Finish every close in progress on this thread: a cancel function called
 * exit(), which reaches the owner's exit path (runtime exit) while the
 * outer closes wait on the stack for a return that will not come. */
static void closing_complete_all(void) {
  while (mbx__self.closing)
    closing_complete(mbx__self.closing);
}

/* Owner only. nested_ok lets the thread-exit hook close the mailbox even
 * when the thread is ending from inside a handler. */
int mbx__thread_exit(int reason, int nested_ok) {
  mbx__record *r = mbx__self.record;
  if (!r)
    return MBX_EPERM;
  if (reason < MBX_CANCEL_THREAD_EXIT || reason > MBX_CANCEL_RUNTIME_EXIT)
    return MBX_EINVAL;
  char marker; /* this frame's depth, for a drain an exception unwound */
  if (mbx__drain_active((uintptr_t)&marker) && !nested_ok)
    return MBX_EBUSY;
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  /* A cancel function of a close on this thread called exit(): finish
   * those closes first (our own included, if it is one of them). */
  closing_complete_all();
  if (mbx__self.record != r) { /* our own close was among them */
    pthread_setcancelstate(cancel_state, NULL);
    return 0;
  }
  /* A handler that ends its thread (pthread_exit inside run) leaves its own
   * message counted as run; the close flushes what the interrupted drain
   * popped. */
  mbx__self.draining = 1;
  mbx__self.drain_frame = (uintptr_t)&marker;
  mbx__closing c;
  int rc = closing_begin(&c, r, mbx__self.handle, CLOSE_OWNER, reason);
  if (rc == MBX_OK) {
    /* Upper layers' work this thread left outstanding (a proxy context
     * waiting for mbx_proxy_finish) is canceled before the queue: a cancel
     * function that finishes it then cannot report it done. */
    mbx__layers_close(r);
    closing_complete(&c); /* steps C, D, E */
  } else {
    /* Closed by someone else first: a close from outside (runtime exit)
     * drained the queue and left our hold to us; an orphan closer (called
     * on this live owner: misuse) releases it. Pin the life while we
     * touch it, if our hold is still there. */
    c.rc = 0;
    uint32_t gen = mbx__handle_gen(c.h);
    int pinned = mbx__gate_pin_owned(r, gen) == MBX_OK;
    if (pinned) /* our queues: still ours to close (core/owned.c) */
      mbx__queues_close(r, reason, 0);
    owner_unbind(&c, pinned);
    if (pinned)
      mbx_release(c.h); /* the pin; retires the life if it was the last */
  }
  pthread_setcancelstate(cancel_state, NULL);
  return c.rc;
}

int mbx_thread_exit(int reason) { return mbx__thread_exit(reason, 0); }

int mbx__close_from_outside(mbx_handle h, int reason) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* Our hold keeps this life from being retired and reused while we drain,
   * even if the owner exits meanwhile. */
  rc = mbx_hold(h);
  if (rc != MBX_OK)
    return rc;
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  mbx__closing c;
  rc = closing_begin(&c, r, h, CLOSE_OUTSIDE, reason);
  if (rc == MBX_OK) {
    closing_complete(&c); /* releases the hold */
    rc = c.rc;
  } else {
    /* Gave up on the owner (MBX_EBUSY: its exit drains), or its exit took
     * the queue first (MBX_ECLOSED): still our close to report. */
    if (c.won_a)
      mbx__layers_closed(h, reason);
    mbx_release(h);
  }
  pthread_setcancelstate(cancel_state, NULL);
  return rc;
}

int mbx_mailbox_close_orphan(mbx_handle h) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* Our hold keeps the life from being retired while we work on it, even
   * if its owner turns out to be alive and releases its own hold. */
  rc = mbx_hold(h);
  if (rc != MBX_OK)
    return rc; /* stale, or someone else closed it first */
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  /* No notification: the owner is dead. */
  mbx__closing c;
  rc = closing_begin(&c, r, h, CLOSE_ORPHAN, MBX_CANCEL_ABNORMAL_EXIT);
  if (rc == MBX_OK) {
    /* Upper layers' work the dead owner was running or left unfinished,
     * before the queue (as at an owner's exit): their callers would
     * otherwise wait forever. With the token we may trust the owner's last
     * pop: a message it had not started yet (issue 18 item 22b). */
    mbx__layers_orphan(r, MBX__POPPED(r));
    closing_complete(&c);
    rc = c.rc;
  } else if (c.won_a) { /* another closer drains (misuse: a live owner) */
    mbx__layers_closed(h, MBX_CANCEL_ABNORMAL_EXIT);
  }
  mbx_release(h);
  pthread_setcancelstate(cancel_state, NULL);
  return rc;
}

int mbx__queue_close_life(mbx__record *r, mbx_handle h, int reason,
                          int owner_dead) {
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  mbx__closing c;
  int rc = closing_begin(&c, r, h,
                         owner_dead ? CLOSE_QUEUE_ORPHAN : CLOSE_QUEUE, reason);
  if (rc == MBX_OK) {
    /* A dead owner's last pop from this queue, not yet started (as in
     * mbx_mailbox_close_orphan). */
    if (owner_dead)
      mbx__layers_orphan(r, MBX__POPPED(r));
    closing_complete(&c);
    rc = c.rc;
  } else if (rc == MBX_ECLOSED) {
    /* A close from outside (runtime exit) closed and drained it and
     * reported it; the owner's hold is still ours. */
    rc = orphan_release(r, h, 0);
  }
  pthread_setcancelstate(cancel_state, NULL);
  return rc;
}
