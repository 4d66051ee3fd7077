/*
 * Sending: mbx_send and mbx__send_node (steps 1 to 6 of the send/close race,
 * core/gate.c), refusal counting, the soft capacity and notifying owners.
 */
#include "record.h"

#include <pthread.h>

static _Atomic(mbx__post_wake_fn) g_post_wake_hook;

/* Count a refusal. MBX_EFULL's per-mailbox count is taken inside the gate
 * by the caller; MBX_ECLOSED's only if the record still counts for life
 * gen (see mbx__record.rejected_closed). */
static void reject(mbx__record *r, int code, uint32_t gen) {
  switch (code) {
  case MBX_ECLOSED: {
    mbx__counter_add(MBX__STAT_REJ_CLOSED, 1);
    // Relaxed (load and CAS): a counter; the tag check is all that matters.
    // The count saturates at UINT32_MAX: one more would carry into the tag.
    uint64_t tagged =
        atomic_load_explicit(&r->rejected_closed, memory_order_relaxed);
    while ((uint32_t)(tagged >> 32) == gen && (uint32_t)tagged != UINT32_MAX &&
           !atomic_compare_exchange_weak_explicit(
               &r->rejected_closed, &tagged, tagged + 1, memory_order_relaxed,
               memory_order_relaxed)) {
    }
    break;
  }
  case MBX_EFULL:
    mbx__counter_add(MBX__STAT_REJ_FULL, 1);
    break;
  case MBX_ESTALE:
    mbx__counter_add(MBX__STAT_REJ_STALE, 1);
    break;
  default:
    mbx__counter_add(MBX__STAT_REJ_INVALID, 1);
    break;
  }
}

/* Post to r's owner thread (MBX__WAITING_POST mode). A sender posts while
 * it is counted in pending, where a close waits for it: a thread ended
 * there would leave its message counted and never pushed, and the close
 * waiting for good. The post allocates and locks (Emscripten's proxying),
 * and on Emscripten 5.x a futex wait with cancellation enabled is a
 * cancellation point (the allocator's under ASan, for one), so it runs
 * with cancellation disabled (test/thread/post_wake_canceled.c). */
static void post_wake(mbx__record *r) {
  // Acquire: pairs with the release in mbx__set_post_wake_hook.
  mbx__post_wake_fn hook =
      atomic_load_explicit(&g_post_wake_hook, memory_order_acquire);
  // Relaxed: set by the owner before it entered POST mode, which the
  // caller observed through a seq_cst load of waiting (or is the owner).
  uintptr_t owner = atomic_load_explicit(&r->pthread_id, memory_order_relaxed);
  if (!hook || !owner)
    return;
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  if (mbx__test_hooks_on() && mbx__tls_test_post_stall.ms > 0) {
    mbx__test_stall_run(&mbx__tls_test_post_stall);
    pthread_testcancel(); /* as a cancellation point in the post would */
  }
  hook(owner);
  pthread_setcancelstate(cancel_state, NULL);
}

void mbx__wake_owner(mbx__record *r, int32_t mode) {
  if (mode == MBX__WAITING_WAKE)
    mbx__platform_wake_all(&r->pending);
  else if (mode == MBX__WAITING_POST)
    post_wake(r);
}

void mbx__mailbox_wake(mbx_handle h) {
  mbx__record *r;
  if (mbx__lookup(h, &r) == MBX_OK)
    mbx__platform_wake_all(&r->pending);
}

void mbx__set_post_wake_hook(mbx__post_wake_fn hook) {
  // Release: a sender that loads the hook may call it at once.
  atomic_store_explicit(&g_post_wake_hook, hook, memory_order_release);
}

/* Steps 3 to 6 for a record already looked up (r serves gen's life or a
 * later one: step 4 decides). A send counts its message in pending before
 * it looks at the gate, so that counting is also how it tells a closer
 * that it is inside (core/gate.c): one RMW on the senders' line per send,
 * where entering and leaving the gate took two more (issue 17). n: a node
 * from mbx__node_alloc; the payload comes apart, as it goes into the node
 * before n (core/queue.h), and writing it into n first would cost a line. */
static int send_to_record(mbx__record *r, uint32_t gen, mbx__node *n,
                          mbx_run_fn run, mbx_cancel_fn cancel, void *arg,
                          int check_capacity) {
  // Step 3. Seq_cst: two Dekker pairs. With a closer, which clears OPEN
  // and then reads pending: it sees this count, or we see OPEN clear. With
  // the owner, which sets waiting and then re-reads pending.
  int32_t before =
      atomic_fetch_add_explicit(&r->pending, 1, memory_order_seq_cst);
  // Step 4. Seq_cst: the other half of the closer's pair. If we see gen's
  // life open we also see the queue that mbx__gate_open's release
  // published (a seq_cst load acquires).
  int rc = mbx__gate_refusal(
      atomic_load_explicit(&r->gate, memory_order_seq_cst), gen);
  if (rc == MBX_OK && check_capacity) {
    // Relaxed: a soft bound (<mbx/mailbox.h>, mbx_set_capacity). Compared
    // unsigned: a capacity of 2^31 or more is a bound, not a negative
    // number (issue 18 item 12).
    uint32_t capacity =
        atomic_load_explicit(&r->capacity, memory_order_relaxed);
    if (capacity && before > 0 && (uint32_t)before >= capacity) {
      // Relaxed: a counter; while we are counted in an open life it cannot
      // be reused (its close waits for our count to go).
      atomic_fetch_add_explicit(&r->rejected_full, 1, memory_order_relaxed);
      rc = MBX_EFULL;
    }
  }
  // Seq_cst: the other half of the owner's pair.
  int32_t wake = before == 0
                     ? atomic_load_explicit(&r->waiting, memory_order_seq_cst)
                     : MBX__WAITING_NONE;
  /* A post goes out while we are counted: the owner's close then waits for
   * us, so its thread is still there (a message not yet pushed keeps the
   * owner's drain looking for a moment). */
  if (wake == MBX__WAITING_POST)
    post_wake(r);
  if (rc != MBX_OK) {
    /* Refused: take the count back. pending may be a closed life's or a
     * later life's; both allow for counts that come and go (a closer waits
     * for them, a reuse keeps them). If we took it from 0, a sender counted
     * after us left the wake to us: notified above or below (at worst a
     * spurious wake). */
    // Release: nothing to publish but the value; no reader orders on it.
    atomic_fetch_sub_explicit(&r->pending, 1, memory_order_release);
    if (wake == MBX__WAITING_WAKE)
      mbx__platform_wake_all(&r->pending);
    reject(r, rc, gen);
    return rc;
  }
  /* The life is open: not yet MBX__PENDING_CLOSED; counts come before
   * their pushes, so never below zero. */
  MBX_ASSERT(before >= 0);
  if (mbx__test_hooks_on() && mbx__tls_test_push_stall.ms > 0)
    mbx__test_stall_run(&mbx__tls_test_push_stall);
  mbx__node *prev = mbx__queue_exchange(&r->tail, n); /* step 5 */
  if (mbx__test_hooks_on() && mbx__tls_test_link_stall.ms > 0)
    mbx__test_stall_run(&mbx__tls_test_link_stall);
  mbx__queue_link(prev, n, run, cancel, arg);
  /* Not counted here: `sent` is derived from the records' counters
   * (core/stats.c); a counter RMW per send was a sixth of its cost. */
  // Step 6. Only the sender that made pending leave zero wakes, so a burst
  // costs one notification. Once pushed, the record may already serve a
  // new thread; a wake there is spurious and harmless (records are never
  // freed).
  if (wake != MBX__WAITING_NONE) {
    mbx__counter_add(MBX__STAT_WAKEUP, 1);
    if (wake == MBX__WAITING_WAKE)
      mbx__platform_wake_all(&r->pending);
  }
  return MBX_OK;
}

/* Queue a node the caller allocated (mbx__node_alloc) and filled in. On
 * failure the node is still the caller's. The proxy layer preallocates the
 * node that reports a completion, so that reporting can never fail for
 * lack of memory, and sends it with check_capacity 0, so that a caller's own
 * capacity cannot refuse the answer it is waiting for. */
int mbx__send_node(mbx_handle to, mbx__node *n, int check_capacity) {
  mbx__record *r;
  if (!n->run || mbx__lookup(to, &r) != MBX_OK) {
    mbx__counter_add(MBX__STAT_REJ_INVALID, 1);
    return MBX_EINVAL;
  }
  return send_to_record(r, mbx__handle_gen(to), n, n->run, n->cancel, n->arg,
                        check_capacity);
}

int mbx_send(mbx_handle to, mbx_run_fn run, mbx_cancel_fn cancel, void *arg) {
  mbx__record *found;
  if (!run || mbx__lookup(to, &found) != MBX_OK) {
    mbx__counter_add(MBX__STAT_REJ_INVALID, 1);
    return MBX_EINVAL;
  }
  /* A copy whose address is never taken, so that it stays in a register
   * across the calls below; looked up once per send. */
  mbx__record *r = found;
  uint32_t gen = mbx__handle_gen(to);
  // Step 1: a fast refusal without touching pending, so that a closer
  // waiting for its count to settle is not held up by senders to a dead
  // thread. Relaxed: the authoritative check is step 4.
  int rc = mbx__gate_refusal(
      atomic_load_explicit(&r->gate, memory_order_relaxed), gen);
  if (rc != MBX_OK) {
    reject(r, rc, gen);
    return rc;
  }
  // Step 2: allocate before counting in pending: a closer waits for every
  // counted message, and must not wait on the allocator.
  mbx__node *n = mbx__node_alloc();
  if (!n) {
    mbx__counter_add(MBX__STAT_REJ_NOMEM, 1);
    return MBX_ENOMEM;
  }
  rc = send_to_record(r, gen, n, run, cancel, arg, 1);
  if (rc != MBX_OK)
    mbx__node_free(n);
  return rc;
}

int mbx_set_capacity(mbx_handle h, uint32_t capacity) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* Inside the gate, like a send: a check-then-store could land after the
   * record was retired and reused, capping the next thread's mailbox (found
   * by the Spin model, FINDING_STALE_CAPACITY). Reuse cannot happen while
   * we are counted in the gate. */
  rc = mbx__gate_enter(r, mbx__handle_gen(h));
  if (rc != MBX_OK)
    return rc;
  // Relaxed: senders read it as a soft bound; no data hangs off it.
  atomic_store_explicit(&r->capacity, capacity, memory_order_relaxed);
  mbx__gate_leave(r);
  return MBX_OK;
}
