/*
 * A mailbox's life: creating and binding it (mbx_mailbox_create,
 * mbx_thread_bind, mbx_thread_attach) and its four ways to close: the
 * owner's exit, a close from outside (runtime exit), an orphan's close (a
 * dead owner), each running close steps A to E of core/gate.c.
 */
#include "record.h"

_Thread_local mbx__self_state mbx__self;

mbx_handle mbx_self(void) { return mbx__self.handle; }

int mbx_mailbox_create(mbx_handle *out) {
  if (!out)
    return MBX_EINVAL;
  mbx__record *r;
  uint32_t gen;
  int rc = mbx__record_open(&r, &gen);
  if (rc != MBX_OK)
    return rc;
  *out = mbx__make_handle(r->index, gen);
  return MBX_OK;
}

int mbx_thread_bind(mbx_handle h) {
  mbx__record *r;
  if (mbx__self.record)
    return MBX_EINVAL;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Acquire: we will read the queue the creator initialised.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_acquire);
  rc = mbx__gate_refusal(gate, mbx__handle_gen(h));
  if (rc != MBX_OK)
    return rc;
  uint32_t unbound = 0;
  // Acquire: see the gate load above. Relaxed on failure: we only report.
  if (!atomic_compare_exchange_strong_explicit(
          &r->bound, &unbound, 1, memory_order_acquire, memory_order_relaxed))
    return MBX_EINVAL;
  mbx__self.record = r;
  mbx__self.handle = h;
  return MBX_OK;
}

int mbx_thread_attach(mbx_handle *out) {
  if (mbx__self.record)
    return MBX_EINVAL;
  mbx_handle h;
  int rc = mbx_mailbox_create(&h);
  if (rc != MBX_OK)
    return rc;
  rc = mbx_thread_bind(h);
  if (rc != MBX_OK) { /* cannot happen: fresh, open, unbound */
    mbx_mailbox_close_orphan(h);
    return rc;
  }
  if (out)
    *out = h;
  return MBX_OK;
}

/*
 * Close r and cancel everything queued, on the calling thread (steps A to
 * D). The caller owns the right to drain r (its owner, or the closer of an
 * orphan). Returns the number canceled or dropped, MBX_ECLOSED/MBX_ESTALE
 * if already closed or gone, MBX_EBUSY if the owner died inside a pop.
 */
static int close_and_cancel(mbx__record *r, uint32_t gen, int reason,
                            int notify_owner) {
  int rc = mbx__gate_close(r, gen); /* steps A and B */
  if (rc != MBX_OK)
    return rc;
  /* Take the queue for good. The owner holds it only inside a pop; if it
   * stays there, the owner died in it and the queue cannot be trusted. */
  rc = mbx__token_closer_claim(r);
  if (rc != MBX_OK)
    return rc;
  int count = 0;
  mbx__node *n;
  while ((n = mbx__queue_pop(mbx__queue_of(r))) != NULL) { /* step C */
    mbx_cancel_fn cancel = n->cancel;
    void *arg = n->arg;
    mbx__node_release(r, n);
    r->consumed_unflushed++;
    count++;
    if (cancel) {
      mbx__counter_bump(&r->canceled, 1);
      cancel(arg, reason);
    } else {
      mbx__counter_bump(&r->dropped, 1);
    }
  }
  mbx__flush_consumed(r); /* step D */
  // Seq_cst: Dekker pair with an owner going to sleep (it sets waiting,
  // then reads pending): it sees MBX__PENDING_CLOSED, or we see it waiting.
  atomic_store_explicit(&r->pending, MBX__PENDING_CLOSED, memory_order_seq_cst);
  if (notify_owner) { /* a live owner, closed from outside */
    // Seq_cst: the other half of the pair above.
    int32_t mode = atomic_load_explicit(&r->waiting, memory_order_seq_cst);
    if (mode != MBX__WAITING_NONE)
      mbx__wake_owner(r, mode);
  }
  return count;
}

/* Owner only. nested_ok lets the thread-exit hook close the mailbox even
 * when the thread is ending from inside a handler. */
int mbx__thread_exit(int reason, int nested_ok) {
  mbx__record *r = mbx__self.record;
  if (!r)
    return MBX_EPERM;
  if (reason < MBX_CANCEL_THREAD_EXIT || reason > MBX_CANCEL_RUNTIME_EXIT)
    return MBX_EINVAL;
  if (mbx__self.draining && !nested_ok)
    return MBX_EBUSY;
  /* A handler that ends its thread (pthread_exit inside run) leaves its own
   * message counted as run; close_and_cancel flushes what the interrupted
   * drain popped. If a closer from outside got here first, it drains. */
  mbx__self.draining = 1;
  int count = close_and_cancel(r, mbx__handle_gen(mbx__self.handle), reason, 0);
  /* Upper layers' work this thread left unfinished (a proxy context left
   * for a later mbx_proxy_finish) is canceled now: its callers stop
   * waiting. */
  mbx__layers_exit(r);
  /* Close hooks once per life: if a closer from outside got here first
   * (MBX_ECLOSED), it reported the close. */
  if (count != MBX_ECLOSED)
    mbx__layers_closed(mbx__self.handle, reason);
  // Relaxed: only the owner reads bound; it is reset at reuse anyway.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  mbx__self.record = NULL;
  mbx__self.handle = MBX_NULL_HANDLE;
  mbx__self.draining = 0;
  mbx__node_cache_flush();    /* an exiting thread keeps no spare nodes */
  mbx__gate_release_owner(r); /* step E */
  return count < 0 ? 0 : count;
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
  int count = close_and_cancel(r, mbx__handle_gen(h), reason, 1);
  if (count >= 0 || count == MBX_EBUSY) /* we closed it: the owner won't */
    mbx__layers_closed(h, reason);
  mbx_release(h);
  return count;
}

int mbx_mailbox_close_orphan(mbx_handle h) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* No notification: the owner is dead. */
  int count =
      close_and_cancel(r, mbx__handle_gen(h), MBX_CANCEL_ABNORMAL_EXIT, 0);
  if (count < 0 && count != MBX_EBUSY)
    return count; /* stale, or someone else closed it first */
  /* MBX_EBUSY: the owner died inside a pop. Its queue is abandoned (the
   * nodes leak; reuse resets the queue), but the record is still retired. */
  /* Upper layers' work the dead owner was running or left unfinished:
   * their callers would otherwise wait forever. */
  mbx__layers_orphan(r);
  mbx__layers_closed(h, MBX_CANCEL_ABNORMAL_EXIT);
  // Relaxed: the record is closed; nobody binds a closed record.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  mbx__gate_release_owner(r); /* step E for the dead owner */
  return count;
}
