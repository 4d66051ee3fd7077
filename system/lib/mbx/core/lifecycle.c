/*
 * A thread's mailbox's end, in its three forms: the owner's exit, a close
 * from outside (runtime exit) and an orphan's close (a dead owner), each
 * through the resumable close of core/closing.c, with cancellation
 * disabled. Its start is core/bind.c; a queue of one's own ends in
 * core/owned.c.
 */
#include "record.h"

#include <pthread.h>

_Thread_local mbx__self_state mbx__self;

mbx_handle mbx_self(void) { return mbx__self.handle; }

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
  mbx__closing_complete_all();
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
  int rc =
      mbx__closing_begin(&c, r, mbx__self.handle, MBX__CLOSE_OWNER, reason);
  if (rc == MBX_OK) {
    /* Upper layers' work this thread left outstanding (a proxy context
     * waiting for mbx_proxy_finish) is canceled before the queue: a cancel
     * function that finishes it then cannot report it done. */
    mbx__layers_close(r);
    mbx__closing_complete(&c); /* steps C, D, E */
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
    mbx__owner_unbind(&c, pinned);
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
  rc = mbx__closing_begin(&c, r, h, MBX__CLOSE_OUTSIDE, reason);
  if (rc == MBX_OK) {
    mbx__closing_complete(&c); /* releases the hold */
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
  rc =
      mbx__closing_begin(&c, r, h, MBX__CLOSE_ORPHAN, MBX_CANCEL_ABNORMAL_EXIT);
  if (rc == MBX_OK) {
    /* Upper layers' work the dead owner was running or left unfinished,
     * before the queue (as at an owner's exit): their callers would
     * otherwise wait forever. With the token we may trust the owner's last
     * pop: a message it had not started yet (issue 18 item 22b). */
    mbx__layers_orphan(r, MBX__POPPED(r));
    mbx__closing_complete(&c);
    rc = c.rc;
  } else if (c.won_a) { /* another closer drains (misuse: a live owner) */
    mbx__layers_closed(h, MBX_CANCEL_ABNORMAL_EXIT);
  }
  mbx_release(h);
  pthread_setcancelstate(cancel_state, NULL);
  return rc;
}
