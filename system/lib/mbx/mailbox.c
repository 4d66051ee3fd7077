/*
 * Mailboxes: sending, receiving and closing.
 *
 * The queue is Vyukov's intrusive multi-producer single-consumer list:
 * producers exchange the tail and then link the previous node, the owner
 * pops from the head. Closing is one RMW on the gate (clear OPEN); senders
 * that got past the gate before it are counted in the gate and finish their
 * push in a few instructions, so the closer waits for that count to reach
 * zero and then drains a queue that can no longer grow.
 */
#include "internal.h"
#include "platform.h"

#include <stddef.h>

static _Thread_local mbx_record *tls_self;
static _Thread_local mbx_handle tls_self_handle;
static _Thread_local int tls_draining;
static _Atomic(mbx_post_wake_fn) g_post_wake_hook;

/* Called once per closed mailbox life, by whoever closed it, after its queue
 * was canceled. The lifecycle layer (lifecycle/hooks.c) overrides this
 * no-op when linked; to move onto the core's hook registry. */
void mbx__lifecycle_mailbox_closed(mbx_handle h, int reason);
__attribute__((weak)) void mbx__lifecycle_mailbox_closed(mbx_handle h,
                                                         int reason) {
  (void)h;
  (void)reason;
}

/* How long a closer waits for an owner to leave a pop (a few instructions
 * for a live owner); longer means the owner died inside one. */
#define CLOSER_CLAIM_TIMEOUT_MS 1000.0

/* What pending holds once a life is closed and drained: non-zero, so that
 * an owner about to sleep on pending == 0 (mbx__wait, Atomics.waitAsync)
 * returns at once and sees the close; negative, so that nobody counts it
 * as messages. Reuse resets it to 0. */
#define PENDING_CLOSED (INT32_MIN / 2)

const char *mbx_strerror(int code) {
  switch (code) {
  case MBX_OK:
    return "ok";
  case MBX_ECLOSED:
    return "mailbox closed: target thread is exiting or has exited";
  case MBX_ESTALE:
    return "stale handle: target thread exited and its record was reused";
  case MBX_EINVAL:
    return "invalid argument or handle";
  case MBX_ENOMEM:
    return "out of memory";
  case MBX_EFULL:
    return "mailbox full";
  case MBX_EBUSY:
    return "already draining on this thread";
  case MBX_ETIMEDOUT:
    return "timed out";
  case MBX_EPERM:
    return "calling thread does not own a mailbox";
  case MBX_EAGAIN:
    return "too many holds";
  case MBX_ECANCELED:
    return "canceled: target thread exited before the work completed";
  case MBX_EDEADLK:
    return "would wait for the calling thread itself";
  case MBX_EWOULDBLOCK:
    return "the calling thread must not block";
  default:
    return "unknown error";
  }
}

/* ---- queue */

static void queue_push(mbx_record *r, mbx_node *n) {
  /* A plain store: n is private until the exchange's release publishes it
   * (an atomic store is a full-barrier exchange in wasm). */
  atomic_init(&n->next, NULL);
  // Acq_rel: release publishes n; acquire orders our store into prev after
  // prev's own initialisation by the producer that pushed it.
  mbx_node *prev = atomic_exchange_explicit(&r->tail, n, memory_order_acq_rel);
  // Release: the owner's acquire load of prev->next sees n's contents.
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* Consumer only (the holder of r->consumer). Returns NULL when empty, or
 * when a producer is between its exchange and its link (it then still has
 * its gate count and has not yet counted the message in pending, so nothing
 * is lost by stopping). */
static mbx_node *queue_pop(mbx_record *r) {
  mbx_node *head = r->head;
  // Acquire (all loads of next): pairs with the release link in queue_push.
  mbx_node *next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (head == &r->stub) {
    if (!next)
      return NULL;
    r->head = head = next;
    next = atomic_load_explicit(&head->next, memory_order_acquire);
  }
  if (next) {
    r->head = next;
    return head;
  }
  // Acquire: pairs with queue_push's exchange.
  if (atomic_load_explicit(&r->tail, memory_order_acquire) != head)
    return NULL;
  queue_push(r, &r->stub);
  next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (next) {
    r->head = next;
    return head;
  }
  return NULL;
}

/* Consumer only: subtract what was popped from pending. */
static int32_t flush_consumed(mbx_record *r) {
  mbx__node_release_flush(r);
  int32_t n = r->consumed_unflushed;
  r->consumed_unflushed = 0;
  counter_bump(&r->run, (uint64_t)r->run_unflushed);
  r->run_unflushed = 0;
  // Relaxed would do for the count, but seq_cst keeps the owner's
  // "pending == 0 -> set waiting -> re-check" sequence totally ordered with
  // senders' increments (see wait_for_messages).
  int32_t before =
      atomic_fetch_sub_explicit(&r->pending, n, memory_order_seq_cst);
  /* pending only grows between our subtractions: its peak is here. */
  // Relaxed (both): statistics; the drainer is the only writer.
  if (before > 0 &&
      (uint32_t)before >
          atomic_load_explicit(&r->high_water, memory_order_relaxed))
    atomic_store_explicit(&r->high_water, (uint32_t)before,
                          memory_order_relaxed);
  return before - n;
}

/* ---- sending */

/* Count a refusal. MBX_EFULL's per-mailbox count is taken inside the gate
 * by the caller; MBX_ECLOSED's only if the record still counts for life
 * gen (see internal.h). */
static void reject(mbx_record *r, int code, uint32_t gen) {
  switch (code) {
  case MBX_ECLOSED: {
    mbx__stat_add(MBX_STAT_REJ_CLOSED, 1);
    // Relaxed (load and CAS): a counter; the tag check is all that matters.
    uint64_t tagged =
        atomic_load_explicit(&r->rejected_closed, memory_order_relaxed);
    while ((uint32_t)(tagged >> 32) == gen &&
           !atomic_compare_exchange_weak_explicit(
               &r->rejected_closed, &tagged, tagged + 1, memory_order_relaxed,
               memory_order_relaxed)) {
    }
    break;
  }
  case MBX_EFULL:
    mbx__stat_add(MBX_STAT_REJ_FULL, 1);
    break;
  case MBX_ESTALE:
    mbx__stat_add(MBX_STAT_REJ_STALE, 1);
    break;
  default:
    mbx__stat_add(MBX_STAT_REJ_INVALID, 1);
    break;
  }
}

/* Queue a node the caller allocated (mbx__node_alloc) and filled in. On
 * failure the node is still the caller's. The proxy layer preallocates the
 * node that reports a completion, so that reporting can never fail for
 * lack of memory, and sends it with check_capacity 0, so that a caller's own
 * capacity cannot refuse the answer it is waiting for. */
int mbx__send_node(mbx_handle to, mbx_node *n, int check_capacity) {
  mbx_record *r;
  if (!n->run || mbx__lookup(to, &r) != MBX_OK) {
    mbx__stat_add(MBX_STAT_REJ_INVALID, 1);
    return MBX_EINVAL;
  }
  uint32_t gen = handle_gen(to);
  // Acquire: if we see the current generation open, we see the queue that
  // record_open reset before publishing it.
  uint64_t gate = atomic_fetch_add_explicit(&r->gate, GATE_INFLIGHT_ONE,
                                            memory_order_acquire);
  int rc = gate_refusal(gate, gen);
  // Relaxed: a soft bound (documented overshoot).
  uint32_t capacity = atomic_load_explicit(&r->capacity, memory_order_relaxed);
  if (rc == MBX_OK && capacity && check_capacity &&
      // Relaxed: a soft bound.
      atomic_load_explicit(&r->pending, memory_order_relaxed) >=
          (int32_t)capacity)
    rc = MBX_EFULL;
  if (rc != MBX_OK) {
    if (rc == MBX_EFULL)
      // Relaxed: a counter; inside the gate it cannot reach a later life.
      atomic_fetch_add_explicit(&r->rejected_full, 1, memory_order_relaxed);
    // Release: pairs with the closer's acquire wait (nothing published).
    atomic_fetch_sub_explicit(&r->gate, GATE_INFLIGHT_ONE,
                              memory_order_release);
    reject(r, rc, gen);
    return rc;
  }
  queue_push(r, n);
  // Seq_cst: Dekker pair with the owner, which sets waiting and then
  // re-reads pending; one of us must see the other's write.
  int32_t before =
      atomic_fetch_add_explicit(&r->pending, 1, memory_order_seq_cst);
  // Seq_cst: the other half of the Dekker pair above.
  int32_t wake = before == 0
                     ? atomic_load_explicit(&r->waiting, memory_order_seq_cst)
                     : MBX_WAITING_NONE;
  if (wake == MBX_WAITING_POST) {
    /* Inside the gate: the owner cannot finish closing (and its thread
     * cannot go away) until we leave, so posting to it is safe. */
    // Acquire: pairs with the release in mbx__set_post_wake_hook.
    mbx_post_wake_fn hook =
        atomic_load_explicit(&g_post_wake_hook, memory_order_acquire);
    // Relaxed: set by the owner before it entered POST mode, which we
    // observed through the seq_cst load of waiting.
    uintptr_t owner =
        atomic_load_explicit(&r->pthread_id, memory_order_relaxed);
    if (hook && owner)
      hook(owner);
  }
  // Release: the closer's acquire load of a zero in-flight count sees our
  // push and our pending increment.
  atomic_fetch_sub_explicit(&r->gate, GATE_INFLIGHT_ONE, memory_order_release);
  mbx__stat_add(MBX_STAT_SENT, 1);
  // Only the sender that made pending leave zero wakes, so a burst costs one
  // notification. After leaving the gate the record may already serve a new
  // thread; a wake there is spurious and harmless (records are never freed).
  if (wake != MBX_WAITING_NONE) {
    mbx__stat_add(MBX_STAT_WAKEUP, 1);
    if (wake == MBX_WAITING_WAKE)
      mbx_platform_wake_all(&r->pending);
  }
  return MBX_OK;
}

int mbx_send(mbx_handle to, mbx_run_fn run, mbx_cancel_fn cancel, void *arg) {
  mbx_record *r;
  if (!run || mbx__lookup(to, &r) != MBX_OK) {
    mbx__stat_add(MBX_STAT_REJ_INVALID, 1);
    return MBX_EINVAL;
  }
  // Fast refusal without touching the in-flight count, so that a closer
  // waiting for that count is not held up by senders to a dead thread.
  // Relaxed: the authoritative check is the RMW in mbx__send_node.
  int rc = gate_refusal(atomic_load_explicit(&r->gate, memory_order_relaxed),
                        handle_gen(to));
  if (rc != MBX_OK) {
    reject(r, rc, handle_gen(to));
    return rc;
  }
  // Allocate before entering the gate: a closer waits for senders inside
  // it, and must not wait on the allocator.
  mbx_node *n = mbx__node_alloc();
  if (!n) {
    mbx__stat_add(MBX_STAT_REJ_NOMEM, 1);
    return MBX_ENOMEM;
  }
  n->run = run;
  n->cancel = cancel;
  n->arg = arg;
  rc = mbx__send_node(to, n, 1);
  if (rc != MBX_OK)
    mbx__node_free(n);
  return rc;
}

void mbx__set_post_wake_hook(mbx_post_wake_fn hook) {
  // Release: a sender that loads the hook may call it at once.
  atomic_store_explicit(&g_post_wake_hook, hook, memory_order_release);
}

/* ---- receiving */

/* Owner: take the consumer role for one pop. Fails only when a closer from
 * outside has taken the queue over for good. */
static int owner_claim(mbx_record *r) {
  int32_t expected = MBX_CONSUMER_FREE;
  // Relaxed: a closer never hands the queue back, so success only follows
  // our own release below; the closer's acquire CAS orders it after us.
  return atomic_compare_exchange_strong_explicit(
      &r->consumer, &expected, MBX_CONSUMER_OWNER, memory_order_relaxed,
      memory_order_relaxed);
}
static void owner_unclaim(mbx_record *r) {
  // Release: a closer that claims next sees our pops and counters.
  atomic_store_explicit(&r->consumer, MBX_CONSUMER_FREE, memory_order_release);
}

/* Owner only, tls_draining set. Runs at most budget messages; the queue is
 * claimed only around each pop, never while a handler runs, so a closer
 * from outside can take over between messages. Returns the number run, or
 * MBX_ECLOSED if the queue was taken over before anything ran. */
static int run_pending(mbx_record *r, int32_t budget) {
  int count = 0;
  while (count < budget) {
    if (!owner_claim(r))
      return count ? count : MBX_ECLOSED; /* the closer flushes for us */
    mbx_node *n = queue_pop(r);
    mbx_run_fn run = NULL;
    void *arg = NULL;
    if (n) {
      /* Read and release under the claim: a closer that takes over
       * flushes the release batch (and may free the node's block). */
      run = n->run;
      arg = n->arg;
      mbx__node_release(r, n);
      r->consumed_unflushed++;
      r->run_unflushed++; /* counted as run once popped by the owner */
    }
    owner_unclaim(r);
    if (!n)
      break;
    count++;
    run(arg);
  }
  if (!owner_claim(r))
    return count ? count : MBX_ECLOSED;
  flush_consumed(r);
  owner_unclaim(r);
  return count;
}

/* nested_ok: the proxy layer's blocked callers drain from inside a handler
 * (A runs B's request, which waits for C while serving A's mailbox). The
 * queue state lives in the record, not in run_pending's frame, so nesting is
 * safe; plain mbx_poll/mbx_wait refuse it to keep recursion explicit. */
static int begin_drain(mbx_record **out, int nested_ok, int *was_draining) {
  mbx_record *r = tls_self;
  if (!r)
    return MBX_EPERM;
  if (tls_draining && !nested_ok)
    return MBX_EBUSY;
  *was_draining = tls_draining;
  tls_draining = 1;
  *out = r;
  return MBX_OK;
}

/* Deliver the notification a sender would have sent to r's owner in mode. */
static void wake_owner(mbx_record *r, int32_t mode) {
  if (mode == MBX_WAITING_WAKE) {
    mbx_platform_wake_all(&r->pending);
    return;
  }
  // Acquire: see mbx_send.
  mbx_post_wake_fn hook =
      atomic_load_explicit(&g_post_wake_hook, memory_order_acquire);
  // Relaxed: written by this thread.
  uintptr_t owner = atomic_load_explicit(&r->pthread_id, memory_order_relaxed);
  if (hook && owner)
    hook(owner);
}

int mbx_poll(void) {
  mbx_record *r;
  int was_draining;
  int rc = begin_drain(&r, 0, &was_draining);
  if (rc != MBX_OK)
    return rc;
  // Relaxed: pending is only a budget here; the pops synchronise.
  int32_t budget = atomic_load_explicit(&r->pending, memory_order_relaxed);
  int count = budget > 0 ? run_pending(r, budget) : 0;
  // Relaxed: a closer from outside owns the queue for good once set.
  if (count == 0 && atomic_load_explicit(&r->consumer, memory_order_relaxed) ==
                        MBX_CONSUMER_CLOSER)
    count = MBX_ECLOSED;
  tls_draining = was_draining;
  return count;
}

int mbx__wait(double timeout_ms, int flags) {
  mbx_record *r;
  int was_draining;
  int rc = begin_drain(&r, flags & MBX__WAIT_NESTED_OK, &was_draining);
  if (rc != MBX_OK)
    return rc;
  double deadline = timeout_ms >= 0 ? mbx_platform_now_ms() + timeout_ms : 0;
  /* An event-loop thread may wait too: keep its notification mode. */
  // Relaxed: only the owner writes waiting.
  int32_t mode = atomic_load_explicit(&r->waiting, memory_order_relaxed);
  int count = 0;
  int spun = flags & MBX__WAIT_NO_SPIN;
  for (;;) {
    // Relaxed: a closer from outside owns the queue for good once set; it
    // is seen at the latest after PENDING_CLOSED below (release/seq_cst).
    if (atomic_load_explicit(&r->consumer, memory_order_relaxed) ==
        MBX_CONSUMER_CLOSER) {
      count = MBX_ECLOSED;
      break;
    }
    // Seq_cst: see flush_consumed.
    int32_t pending = atomic_load_explicit(&r->pending, memory_order_seq_cst);
    if (pending > 0) {
      count = run_pending(r, pending);
      if (count != 0)
        break;
      mbx_platform_yield(); /* a sender is mid-push: a few instructions */
      continue;
    }
    if (pending < 0) {
      /* A sender is about to count a popped message, or (PENDING_CLOSED)
       * a closer took over: the check above sees it next time. */
      mbx_platform_yield();
      continue;
    }
    double remaining = -1;
    if (timeout_ms >= 0) {
      remaining = deadline - mbx_platform_now_ms();
      if (remaining <= 0) {
        count = MBX_ETIMEDOUT;
        break;
      }
    }
    /* Once per wait, before the first sleep (a thread woken from its sleep
     * has a message, or a timeout to report): a sender that arrives while
     * we spin finds waiting cleared and skips its futex wake too. */
    if (!spun) {
      spun = 1;
      if (mbx__spin_while_equal(&r->pending, 0, remaining))
        continue;
    }
    // Seq_cst: Dekker pair with mbx_send (set waiting, then re-read
    // pending; the sender increments pending, then reads waiting).
    atomic_store_explicit(&r->waiting, MBX_WAITING_WAKE, memory_order_seq_cst);
    if (atomic_load_explicit(&r->pending, memory_order_seq_cst) == 0)
      mbx_platform_wait(&r->pending, 0, remaining);
    mbx__spin_slept();
    // Relaxed: only a hint for senders (the mode is restored below).
    atomic_store_explicit(&r->waiting, MBX_WAITING_NONE, memory_order_relaxed);
  }
  if (mode != MBX_WAITING_NONE) {
    // Seq_cst: Dekker pair with mbx_send, as above.
    atomic_store_explicit(&r->waiting, mode, memory_order_seq_cst);
    /* A send that found waiting cleared did not notify the event loop:
     * notify it ourselves if anything is left. */
    if (atomic_load_explicit(&r->pending, memory_order_seq_cst) != 0)
      wake_owner(r, mode);
  }
  tls_draining = was_draining;
  return count;
}

int mbx_wait(double timeout_ms) { return mbx__wait(timeout_ms, 0); }

int mbx__self_open(void) {
  // Relaxed: a hint; a close from outside (runtime exit) that races with
  // it makes the caller's mbx__wait return MBX_ECLOSED, which it handles.
  return tls_self &&
         (atomic_load_explicit(&tls_self->gate, memory_order_relaxed) &
          GATE_OPEN);
}

_Atomic int32_t *mbx__self_pending_word(void) {
  return tls_self ? &tls_self->pending : NULL;
}

void mbx__self_set_waiting(int32_t mode) {
  if (tls_self)
    // Seq_cst: the Dekker pair with mbx_send (set waiting, then the
    // Atomics.waitAsync value check on pending).
    atomic_store_explicit(&tls_self->waiting, mode, memory_order_seq_cst);
}

/* ---- lifecycle */

mbx_handle mbx_self(void) { return tls_self_handle; }

void mbx__self_set_owner_proxy(void *state) {
  if (tls_self)
    // Release: an orphan closer that takes it sees it initialised.
    atomic_store_explicit(&tls_self->owner_proxy, state, memory_order_release);
}

int mbx_mailbox_create(mbx_handle *out) {
  if (!out)
    return MBX_EINVAL;
  mbx_record *r;
  uint32_t gen;
  int rc = mbx__record_open(&r, &gen);
  if (rc != MBX_OK)
    return rc;
  *out = make_handle(r->index, gen);
  return MBX_OK;
}

int mbx_thread_bind(mbx_handle h) {
  mbx_record *r;
  if (tls_self)
    return MBX_EINVAL;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Acquire: we will read the queue the creator initialised.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_acquire);
  rc = gate_refusal(gate, handle_gen(h));
  if (rc != MBX_OK)
    return rc;
  uint32_t unbound = 0;
  // Acquire: see the gate load above. Relaxed on failure: we only report.
  if (!atomic_compare_exchange_strong_explicit(
          &r->bound, &unbound, 1, memory_order_acquire, memory_order_relaxed))
    return MBX_EINVAL;
  tls_self = r;
  tls_self_handle = h;
  return MBX_OK;
}

int mbx_thread_attach(mbx_handle *out) {
  if (tls_self)
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
 * Close r and cancel everything queued, on the calling thread. The caller
 * owns the right to drain r (its owner, or the closer of an orphan).
 * Returns the number canceled or dropped, or MBX_ECLOSED if already closed.
 */
static int close_and_cancel(mbx_record *r, uint32_t gen, int reason,
                            int notify_owner) {
  // Relaxed load: the CAS re-validates.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  do {
    int refusal = gate_refusal(gate, gen);
    if (refusal != MBX_OK)
      return refusal;
    // Acq_rel: the linearisation point of close. After it every sender's
    // gate RMW sees OPEN clear; release orders our earlier consumption.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &gate, gate & ~GATE_OPEN, memory_order_acq_rel,
      memory_order_relaxed));
  // Wait for senders that passed the gate before the close: each is a few
  // instructions from leaving it. Acquire: pairs with their release exit,
  // so their pushes are visible to the drain below.
  while (atomic_load_explicit(&r->gate, memory_order_acquire) &
         GATE_INFLIGHT_MASK)
    mbx_platform_yield();
  /* Take the queue for good. The owner holds it only inside a pop; if it
   * stays there, the owner died in it and the queue cannot be trusted. */
  double deadline = 0;
  for (;;) {
    int32_t expected = MBX_CONSUMER_FREE;
    // Acquire: pairs with owner_unclaim, so the owner's pops and consumed
    // count are visible. Relaxed on failure: we retry.
    if (atomic_compare_exchange_weak_explicit(
            &r->consumer, &expected, MBX_CONSUMER_CLOSER, memory_order_acquire,
            memory_order_relaxed))
      break;
    if (expected != MBX_CONSUMER_FREE) {
      double now = mbx_platform_now_ms();
      if (!deadline)
        deadline = now + CLOSER_CLAIM_TIMEOUT_MS;
      else if (now > deadline)
        return MBX_EBUSY;
      mbx_platform_yield();
    }
  }
  int count = 0;
  mbx_node *n;
  while ((n = queue_pop(r)) != NULL) {
    mbx_cancel_fn cancel = n->cancel;
    void *arg = n->arg;
    mbx__node_release(r, n);
    r->consumed_unflushed++;
    count++;
    if (cancel) {
      counter_bump(&r->canceled, 1);
      cancel(arg, reason);
    } else {
      counter_bump(&r->dropped, 1);
    }
  }
  flush_consumed(r);
  // Seq_cst: Dekker pair with an owner going to sleep (it sets waiting,
  // then reads pending): it sees PENDING_CLOSED, or we see it waiting.
  atomic_store_explicit(&r->pending, PENDING_CLOSED, memory_order_seq_cst);
  if (notify_owner) { /* a live owner, closed from outside */
    int32_t mode = atomic_load_explicit(&r->waiting, memory_order_seq_cst);
    if (mode != MBX_WAITING_NONE)
      wake_owner(r, mode);
  }
  return count;
}

/* Owner only. nested_ok lets the thread-exit hook close the mailbox even
 * when the thread is ending from inside a handler. */
int mbx__thread_exit(int reason, int nested_ok) {
  mbx_record *r = tls_self;
  if (!r)
    return MBX_EPERM;
  if (reason < MBX_CANCEL_THREAD_EXIT || reason > MBX_CANCEL_RUNTIME_EXIT)
    return MBX_EINVAL;
  if (tls_draining && !nested_ok)
    return MBX_EBUSY;
  /* A handler that ends its thread (pthread_exit inside run) leaves its own
   * message counted as run; close_and_cancel flushes what the interrupted
   * drain popped. If a closer from outside got here first, it drains. */
  tls_draining = 1;
  int count = close_and_cancel(r, handle_gen(tls_self_handle), reason, 0);
  /* Proxied work this thread started and did not finish (contexts left for
   * a later mbx_proxy_finish) is canceled now: its callers stop waiting. */
  mbx__proxy_thread_exiting();
  if (count != MBX_ECLOSED) /* else a closer from outside reported it */
    mbx__lifecycle_mailbox_closed(tls_self_handle, reason);
  // Relaxed: nobody takes it from a closed life but an orphan closer, and
  // there is none while the owner runs.
  atomic_store_explicit(&r->owner_proxy, NULL, memory_order_relaxed);
  // Relaxed: only the owner reads bound; it is reset at reuse anyway.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  tls_self = NULL;
  tls_self_handle = MBX_NULL_HANDLE;
  tls_draining = 0;
  mbx__node_cache_flush(); /* an exiting thread keeps no spare nodes */
  mbx__record_release_owner(r);
  return count < 0 ? 0 : count;
}

int mbx_thread_exit(int reason) { return mbx__thread_exit(reason, 0); }

int mbx__close_from_outside(mbx_handle h, int reason) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* Our hold keeps this life from being retired and reused while we drain,
   * even if the owner exits meanwhile. */
  rc = mbx_hold(h);
  if (rc != MBX_OK)
    return rc;
  int count = close_and_cancel(r, handle_gen(h), reason, 1);
  if (count >= 0 || count == MBX_EBUSY) /* this call closed it */
    mbx__lifecycle_mailbox_closed(h, reason);
  mbx_release(h);
  return count;
}

int mbx_mailbox_close_orphan(mbx_handle h) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* No notification: the owner is dead. */
  int count = close_and_cancel(r, handle_gen(h), MBX_CANCEL_ABNORMAL_EXIT, 0);
  if (count < 0 && count != MBX_EBUSY)
    return count; /* stale, or someone else closed it first */
  /* MBX_EBUSY: the owner died inside a pop. Its queue is abandoned (the
   * nodes leak; reuse resets the queue), but the record is still retired. */
  /* Proxied work the dead owner was running, or contexts it left
   * unfinished: their callers would otherwise wait forever. */
  // Acquire: see the state the owner published (and, the owner being dead,
  // everything it wrote to it before).
  void *proxy =
      atomic_exchange_explicit(&r->owner_proxy, NULL, memory_order_acquire);
  if (proxy)
    mbx__proxy_orphaned(proxy);
  mbx__lifecycle_mailbox_closed(h, MBX_CANCEL_ABNORMAL_EXIT);
  // Relaxed: the record is closed; nobody binds a closed record.
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  mbx__record_release_owner(r); /* the dead owner's hold */
  return count;
}
