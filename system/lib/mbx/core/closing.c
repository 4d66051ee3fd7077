/*
 * The resumable close: steps A to E of core/gate.c for one life, shared by
 * every way a mailbox ends (core/lifecycle.c: the owner's exit, a close
 * from outside, an orphan's close; core/owned.c: a queue of one's own).
 * Its callers disable cancellation around it, so a pending pthread_cancel
 * cannot unwind out of it at a cancellation point; if a cancel function
 * ends the thread anyway (pthread_exit) or the process (exit()), a cleanup
 * handler or the nested exit path resumes it where it stopped
 * (mbx__self.closing). The queue state lives in the record, so a resumed
 * drain simply pops on.
 */
#include "record.h"

#include <pthread.h>

static void closing_resume(void *p);

/* How long an orphan's closer gives an owner it was told is dead to leave a
 * pop before taking the queue from it, and then its counted senders to
 * push: short, since it runs on the main thread's event loop (issue 18
 * item 16). */
#define ORPHAN_CLAIM_GRACE_MS 20.0

/* What pending still counts besides what was consumed: messages counted
 * and not yet pushed, refused sends about to take their count back, and
 * (only from an owner dead inside a pop or a flush) what it consumed and
 * never counted. */
static int32_t closing_left(mbx__record *r) {
  // Seq_cst: the closer's half of the Dekker pair with step 3 (core/send.c):
  // a sender whose count we do not see here sees OPEN clear (step A).
  return atomic_load_explicit(&r->pending, memory_order_seq_cst) -
         r->consumed_unflushed;
}

/* Step C: pop and cancel everything queued, with the consumer token taken
 * for good, until pending counts nothing more: every sender counted before
 * step A has pushed (a few instructions after its count) and every refused
 * one has taken its count back. Each node is counted before its cancel
 * function runs, so a cancel function that never returns leaves the counts
 * right for the resume. An owner killed inside a pop or a flush may have
 * consumed messages it never counted (c->lost): then pending never comes
 * down to our count, so we stop once nothing more arrived for
 * ORPHAN_CLAIM_GRACE_MS (a sender preempted longer than that between its
 * count and its push would find the queue closed under it: <mbx/thread.h>,
 * "Abnormal death"). */
static void closing_drain(mbx__closing *c) {
  mbx__record *r = c->r;
  pthread_cleanup_push(closing_resume, c);
  mbx__node *n;
  double quiet_since = 0;
  for (;;) {
    while ((n = mbx__queue_pop(mbx__queue_of(r))) != NULL) {
      quiet_since = 0;
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
    int32_t left = closing_left(r);
    MBX_ASSERT(left >= 0);
    if (left <= 0)
      break;
    if (c->from_dead) {
      double now = mbx__platform_now_ms();
      if (!quiet_since)
        quiet_since = now;
      else if (now - quiet_since > ORPHAN_CLAIM_GRACE_MS) {
        c->lost = left;
        break;
      }
    }
    mbx__platform_yield();
  }
  /* The queue's last dummy (a resumed drain finds the stub there, and
   * nothing to release). */
  mbx__node *dummy = mbx__queue_take_dummy(mbx__queue_of(r));
  if (dummy)
    mbx__node_release(r, dummy);
  /* Then the queues the owner owns (core/owned.c), each closed as below,
   * on the thread that closes the owner's mailbox: inside this step, so
   * that a resumed close finishes them too. */
  if (c->kind == MBX__CLOSE_OWNER || c->kind == MBX__CLOSE_ORPHAN)
    mbx__queues_close(r, c->reason, c->kind == MBX__CLOSE_ORPHAN);
  pthread_cleanup_pop(0);
}

/* Step E: unbind h's life and drop its OWNER hold. Returns the gate's
 * answer (refused if that hold was released already). */
static int release_owner_hold(mbx__record *r, mbx_handle h) {
  // Relaxed: only the owner reads bound; reset at reuse anyway.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  return mbx__gate_release_owner(r, mbx__handle_gen(h));
}

/* Step E for a dead owner (or an unbound mailbox): refused if the owner
 * released its hold itself, having been alive after all (misuse): then
 * MBX_EINVAL, else rc. The closer holds the life meanwhile. */
int mbx__orphan_release(mbx__record *r, mbx_handle h, int rc) {
  return release_owner_hold(r, h) == MBX_OK ? rc : MBX_EINVAL;
}

/* The owner's part of its exit after the queue: its layers' state, unbind,
 * step E. pinned: the caller holds the life (else it may be retired and
 * reused, and the record is not touched). An orphan closer (called on a
 * live owner: misuse) that released the owner's hold first makes the exit
 * return MBX_ECLOSED; it took the layers' state. */
void mbx__owner_unbind(mbx__closing *c, int pinned) {
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
  if (release_owner_hold(r, c->h) != MBX_OK)
    c->rc = MBX_ECLOSED;
}

/* Step D, the hold's release (step E, or a close from outside's hold):
 * once per close, after the drain. */
static void closing_finish(mbx__closing *c) {
  mbx__record *r = c->r;
  /* Step D: what was consumed (and what a dead owner consumed and never
   * counted) leaves pending, which becomes MBX__PENDING_CLOSED plus the
   * counts of refused senders still on their way out, as an add: those
   * take their counts back after us. */
  mbx__stats_abandon(r, c->lost);
  /* Its seq_cst RMW is also the Dekker pair with an owner going to sleep
   * (it sets waiting, then reads pending): it sees MBX__PENDING_CLOSED, or
   * we see it waiting. */
  mbx__flush_consumed(r, MBX__PENDING_CLOSED - c->lost);
  c->rc = c->count;
  /* Close hooks (lifecycle/: hooks, watches), once per life: the close
   * that won step A reports it, on its thread, after the queue. */
  if (c->won_a)
    mbx__layers_closed(c->h, c->reason);
  switch (c->kind) {
  case MBX__CLOSE_OWNER:
    /* OWNER (or our pin) keeps the life until step E. */
    mbx__owner_unbind(c, 1);
    if (c->pinned)
      mbx_release(c->h); /* a take-over's pin; may retire the life */
    break;
  case MBX__CLOSE_OUTSIDE: {
    /* A live owner: let it see the close. Seq_cst: the other half of the
     * pair above. */
    int32_t mode = atomic_load_explicit(&r->waiting, memory_order_seq_cst);
    if (mode != MBX__WAITING_NONE)
      mbx__wake_owner(r, mode);
    mbx_release(c->h); /* the hold taken by mbx__close_from_outside */
    break;
  }
  case MBX__CLOSE_ORPHAN:
  case MBX__CLOSE_QUEUE: /* nobody binds a queue; its owner's hold is ours */
  case MBX__CLOSE_QUEUE_ORPHAN:
    c->rc = mbx__orphan_release(r, c->h, c->count);
    if (c->pinned)
      mbx_release(c->h); /* a queue owner's take-over pin */
    break;
  }
}

/* Run c to its end from wherever it stopped: a normal close, a cleanup
 * handler after a cancel function ended the thread, or a nested exit path
 * after a cancel function called exit(). */
void mbx__closing_complete(mbx__closing *c) {
  if (c->phase == MBX__CLOSING_DRAIN) {
    closing_drain(c);
    c->phase = MBX__CLOSING_FINISH;
    closing_finish(c);
  }
  c->phase = MBX__CLOSING_DONE;
  if (mbx__self.closing == c)
    mbx__self.closing = c->outer;
}

/* Cleanup handler: a cancel function ended the thread inside the drain. */
static void closing_resume(void *p) { mbx__closing_complete(p); }

/* How long a closer from outside waits for a live owner to leave a pop (a
 * few instructions, unless it is descheduled there); then it gives up and
 * the owner's exit drains (issue 18 item 22a). */
#define OUTSIDE_CLAIM_TIMEOUT_MS 1000.0

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
 * its part, then mbx__closing_complete. Returns MBX_OK, the gate's refusal
 * (already closed and drained, stale), MBX_ECLOSED (another closer has the
 * queue) or MBX_EBUSY (a closer from outside met the owner inside a pop for
 * too long: the owner's exit drains then).
 */
int mbx__closing_begin(mbx__closing *c, mbx__record *r, mbx_handle h, int kind,
                       int reason) {
  c->r = r;
  c->h = h;
  c->kind = kind;
  c->reason = reason;
  c->phase = MBX__CLOSING_DRAIN;
  c->count = 0;
  c->lost = 0;
  c->rc = 0;
  int rc = mbx__gate_close(r, mbx__handle_gen(h)); /* steps A and B */
  c->won_a = rc == MBX_OK;
  c->pinned = 0;
  if (rc == MBX_ECLOSED &&
      (kind == MBX__CLOSE_OWNER || kind == MBX__CLOSE_QUEUE))
    rc = closing_take_over(c);
  if (rc != MBX_OK)
    return rc;
  /* Take the queue for good. The owner holds it only inside a pop. */
  int dead = kind == MBX__CLOSE_ORPHAN || kind == MBX__CLOSE_QUEUE_ORPHAN;
  rc = mbx__token_closer_claim(r,
                               kind == MBX__CLOSE_OUTSIDE
                                   ? OUTSIDE_CLAIM_TIMEOUT_MS
                               : dead ? ORPHAN_CLAIM_GRACE_MS
                                      : 0,
                               dead);
  c->from_dead = rc == MBX__TOKEN_FROM_DEAD;
  if (c->from_dead)
    rc = MBX_OK;
  if (rc != MBX_OK) {
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
void mbx__closing_complete_all(void) {
  while (mbx__self.closing)
    mbx__closing_complete(mbx__self.closing);
}
