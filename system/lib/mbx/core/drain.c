/*
 * Receiving: the owner drains its queue (mbx__run_pending, under the consumer
 * token), the drain entry points (mbx_poll, mbx_wait, mbx__wait, a queue's
 * own) and their nesting rules. The blocking part of a wait is core/wait.c.
 */
#include "record.h"

#include <pthread.h>

/* How long a receiver that has run a message polls its queue's link before
 * it ends the drain (mbx__run_pending's linger): a few of a busy sender's
 * sends, or a round-trip partner's next request, and short enough that a
 * caller of mbx_wait gets control back at once: about 2 to 3 us on both
 * targets. A poll is a load and a pause natively (about 40 ns), a bare
 * load in wasm (a nanosecond or two: core/spin.c). At 64 polls a wasm
 * receiver gave up after about 0.1 us, before a round-trip partner's next
 * request, and ended every drain with a subtraction from pending, on the
 * line that sender then RMWs (issue 17: round trips to a thread in
 * mbx_wait took 17% longer). */
#ifdef __wasm__
#define LINGER_POLLS 2048
#else
#define LINGER_POLLS 64
#endif

void mbx__flush_consumed(mbx__record *r, int32_t then_add) {
  mbx__node_release_flush(r);
  int32_t n = r->consumed_unflushed;
  r->consumed_unflushed = 0;
  mbx__counter_bump(&r->run, (uint64_t)r->run_unflushed);
  r->run_unflushed = 0;
  // Relaxed would do for the count, but seq_cst keeps the owner's
  // "pending == 0 -> set waiting -> re-check" sequence totally ordered with
  // senders' increments (see mbx__wait).
  int32_t before = atomic_fetch_add_explicit(&r->pending, then_add - n,
                                             memory_order_seq_cst);
  /* Senders count before they push: never below zero. */
  MBX_ASSERT(before - n >= 0);
  /* pending only grows between the drainer's subtractions: its peak is just
   * before one. */
  // Relaxed (both): statistics; the drainer is the only writer.
  if (before > 0 &&
      (uint32_t)before >
          atomic_load_explicit(&r->high_water, memory_order_relaxed))
    atomic_store_explicit(&r->high_water, (uint32_t)before,
                          memory_order_relaxed);
}

/* Clears the pop of the thread's mailbox and of its innermost queue drain
 * (core/owned.c): the message that called us is one of them, and the
 * other's pop, if any, has started already (a pop is run at once). */
void mbx__self_popped_clear(void) {
  if (mbx__self.record)
    MBX__POPPED(mbx__self.record) = NULL;
  if (mbx__self.queue)
    MBX__POPPED(mbx__self.queue) = NULL;
}

/* Owner only, draining. Runs at most budget messages; the queue is claimed
 * only around each pop, never while a handler runs, so a closer from
 * outside can take over between messages. linger: a waiter that has run a
 * message and finds the queue empty spins briefly on its link before it
 * ends the drain. A receiver that keeps up with its senders otherwise ends
 * a drain per message, and each end subtracts from pending, on the line
 * every sender RMWs: both sides then stall on that line for each message
 * (issue 17: 1 producer, about 2x slower). Returns the number run, or
 * MBX_ECLOSED if the queue was taken over before anything ran. */
int mbx__run_pending(mbx__record *r, int32_t budget, int linger) {
  int count = 0;
  while (count < budget) {
    if (!mbx__token_owner_claim(r))
      return count ? count : MBX_ECLOSED; /* the closer flushes for us */
    if (mbx__test_hooks_on() && mbx__tls_test_pop_stall.ms > 0)
      mbx__test_stall_run(&mbx__tls_test_pop_stall);
    mbx__node *n = mbx__queue_pop(mbx__queue_of(r));
    if (!n && linger && count > 0 &&
        mbx__spin_briefly_while_null(&r->head->next, LINGER_POLLS))
      n = mbx__queue_pop(mbx__queue_of(r));
    /* For an orphan closer, should we die before run takes it over. Set
     * before n joins the release batch, which may drop the batch of the
     * node popped before (until then that one is POPPED, and valid). n
     * stays valid until the next drop of its batch: a pop from another
     * block, or the flush below, which come after run started. */
    MBX__POPPED(r) = n;
    mbx_run_fn run = NULL;
    void *arg = NULL;
    if (n) {
      /* Read and release under the claim: a closer that takes over flushes
       * the release batch (and may free its block). */
      run = n->run;
      arg = n->arg;
      mbx__node_release(r, n);
      r->consumed_unflushed++;
      r->run_unflushed++; /* counted as run once popped by the owner */
    }
    mbx__token_owner_unclaim(r);
    if (!n)
      break;
    if (mbx__test_hooks_on() && mbx__tls_test_park_after_pop)
      mbx__test_park_forever();
    count++;
    run(arg);
  }
  if (!mbx__token_owner_claim(r))
    return count ? count : MBX_ECLOSED;
  MBX__POPPED(r) = NULL; /* started, or nothing popped */
  mbx__flush_consumed(r, 0);
  mbx__token_owner_unclaim(r);
  return count;
}

int mbx__drain_active(uintptr_t here) {
  /* Stacks grow down: a drain nested in a handler of the active one is
   * deeper (a lower address). One recorded at our depth or deeper is from
   * a frame that no longer exists: an exception thrown by a handler
   * unwound it (no C cleanup runs for that). Its message counted as run;
   * the queue state lives in the record, so nothing else is left over. */
  if (mbx__self.draining && here >= mbx__self.drain_frame) {
    mbx__self.draining = 0;
    mbx__self.drain_frame = 0;
  }
  return mbx__self.draining;
}

/* nested_ok: the proxy layer's blocked callers drain from inside a handler
 * (A runs B's request, which waits for C while serving A's mailbox). The
 * queue state lives in the record, not in mbx__run_pending's frame, so nesting
 * is safe; plain mbx_poll/mbx_wait refuse it to keep recursion explicit. r: the
 * calling thread's mailbox, or a queue it owns (core/owned.c). here: the
 * stack address of the caller's frame (drain_entry). */
int mbx__drain_begin(mbx__record *r, int nested_ok, uintptr_t here,
                     mbx__drain_saved *saved) {
  if (!r)
    return MBX_EPERM;
  if (mbx__drain_active(here) && !nested_ok)
    return MBX_EBUSY;
  saved->draining = mbx__self.draining;
  saved->frame = mbx__self.drain_frame;
  mbx__self.draining = 1;
  mbx__self.drain_frame = here;
  return MBX_OK;
}

void mbx__drain_end(const mbx__drain_saved *saved) {
  mbx__self.draining = saved->draining;
  mbx__self.drain_frame = saved->frame;
}

/* max: 0 for all pending at entry; else up to max messages, as long as
 * any are linked (lingering briefly when the queue empties), whatever was
 * pending at entry: a budget of the pending count ended a drain every few
 * messages when the receiver kept up with a sender, and each end costs both
 * sides the senders' line (core/wait.c, STREAM_RUN_BUDGET). */
static int poll_drain(mbx__record *r, int nested_ok, int32_t max,
                      uintptr_t here) {
  mbx__drain_saved saved;
  int rc = mbx__drain_begin(r, nested_ok, here, &saved);
  if (rc != MBX_OK)
    return rc;
  // Relaxed: pending is only a budget here; the pops synchronise.
  int32_t pending = atomic_load_explicit(&r->pending, memory_order_relaxed);
  int count = pending <= 0 ? 0
              : max > 0    ? mbx__run_pending(r, max, 1)
                           : mbx__run_pending(r, pending, 0);
  if (count == 0 && mbx__token_closed(r))
    count = MBX_ECLOSED;
  mbx__drain_end(&saved);
  return count;
}

/* One frame layout for every drain entry (never inlined), so that drains
 * entered one after the other from the same caller record the same stack
 * address, and a nested one a lower address. poll_max: a poll of at most
 * that many messages (0: all pending at entry); WAIT: a wait. */
#define WAIT (-1)
__attribute__((noinline)) static int
drain_entry(mbx__record *r, int32_t poll_max, double timeout_ms, int flags) {
  char marker;
  uintptr_t here = (uintptr_t)&marker;
  return poll_max != WAIT
             ? poll_drain(r, flags & MBX__WAIT_NESTED_OK, poll_max, here)
             : mbx__wait_drain(r, timeout_ms, flags, here);
}

int mbx_poll(void) { return drain_entry(mbx__self.record, 0, 0, 0); }

int mbx__poll_at_most(int32_t max) {
  return drain_entry(mbx__self.record, max, 0, 0);
}

int mbx__wait(double timeout_ms, int flags) {
  return drain_entry(mbx__self.record, WAIT, timeout_ms, flags);
}

/* r: the calling thread's mailbox, or a queue it owns (core/owned.c). */
int mbx__poll_record(mbx__record *r, int nested_ok) {
  return drain_entry(r, 0, 0, nested_ok ? MBX__WAIT_NESTED_OK : 0);
}

int mbx__wait_record(mbx__record *r, double timeout_ms, int flags) {
  return drain_entry(r, WAIT, timeout_ms, flags);
}

/* A cancellation point: at entry, and while asleep (issue 18 item 5). */
int mbx_wait(double timeout_ms) {
  pthread_testcancel();
  return drain_entry(mbx__self.record, WAIT, timeout_ms,
                     MBX__WAIT_CANCELABLE | MBX__WAIT_LINGER);
}

int mbx__self_open(void) {
  mbx__record *r = mbx__self.record;
  // Relaxed: a hint; a close from outside (runtime exit) that races with
  // it makes the caller's mbx__wait return MBX_ECLOSED, which it handles.
  return r && (atomic_load_explicit(&r->gate, memory_order_relaxed) &
               MBX__GATE_OPEN);
}

_Atomic int32_t *mbx__self_pending_word(void) {
  return mbx__self.record ? &mbx__self.record->pending : NULL;
}

void mbx__self_set_waiting(int32_t mode) {
  if (mbx__self.record)
    // Seq_cst: the Dekker pair with mbx__send_node (set waiting, then the
    // Atomics.waitAsync value check on pending).
    atomic_store_explicit(&mbx__self.record->waiting, mode,
                          memory_order_seq_cst);
}
