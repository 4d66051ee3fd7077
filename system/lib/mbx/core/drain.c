/*
 * Receiving: the owner drains its queue (mbx_poll, mbx_wait, mbx__wait) and
 * sleeps on `pending` when it is empty, without losing a wakeup.
 */
#include "record.h"

#include <pthread.h>

/* How long a cancelable mbx_wait sleeps before it looks for a pending
 * pthread_cancel (neither Linux's futex wait nor Emscripten 3.1.6's is a
 * cancellation point, and pthread_cancel does not wake a futex). */
#define CANCEL_CHECK_MS 100.0
/* At most this many messages run by a wait whose spin saw one linked: a
 * flood then still returns to the caller (the top of the loop's budget is
 * pending, as for mbx_poll). */
#define SPIN_RUN_BUDGET 64
/* How long a receiver that has run a message polls its queue's link before
 * it ends the drain (run_pending's linger): a few of a busy sender's sends,
 * and short enough that a caller of mbx_wait gets control back at once. */
#define LINGER_POLLS 64
/* How long a wait that popped a message before its sender counted it polls
 * pending for that count before it yields (a store away, unless the sender
 * was preempted). */
#define BRIEF_POLLS 256

int32_t mbx__flush_consumed(mbx__record *r) {
  mbx__node_release_flush(r);
  int32_t n = r->consumed_unflushed;
  r->consumed_unflushed = 0;
  mbx__counter_bump(&r->run, (uint64_t)r->run_unflushed);
  r->run_unflushed = 0;
  // Relaxed would do for the count, but seq_cst keeps the owner's
  // "pending == 0 -> set waiting -> re-check" sequence totally ordered with
  // senders' increments (see mbx__wait).
  int32_t before =
      atomic_fetch_sub_explicit(&r->pending, n, memory_order_seq_cst);
  /* Never below what senders inside may still count (step 5). */
  MBX_ASSERT(before - n >= -(int32_t)MBX__GATE_INFLIGHT_MASK);
  /* pending only grows between our subtractions: its peak is here. */
  // Relaxed (both): statistics; the drainer is the only writer.
  if (before > 0 &&
      (uint32_t)before >
          atomic_load_explicit(&r->high_water, memory_order_relaxed))
    atomic_store_explicit(&r->high_water, (uint32_t)before,
                          memory_order_relaxed);
  return before - n;
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
static int run_pending(mbx__record *r, int32_t budget, int linger) {
  int count = 0;
  while (count < budget) {
    if (!mbx__token_owner_claim(r))
      return count ? count : MBX_ECLOSED; /* the closer flushes for us */
    if (mbx__test_hooks_on() && mbx__tls_test_pop_delay_ms > 0)
      mbx__test_pop_delay();
    mbx__node *retired = NULL;
    mbx__node *n = mbx__queue_pop(mbx__queue_of(r), &retired);
    if (!n && linger && count > 0 &&
        mbx__spin_briefly_while_null(&r->head->next, LINGER_POLLS))
      n = mbx__queue_pop(mbx__queue_of(r), &retired);
    mbx_run_fn run = NULL;
    void *arg = NULL;
    if (n) {
      /* Read and release under the claim: a closer that takes over
       * releases the dummy n and flushes the release batch (and may free
       * their blocks). */
      run = n->run;
      arg = n->arg;
      if (retired)
        mbx__node_release(r, retired);
      r->consumed_unflushed++;
      r->run_unflushed++; /* counted as run once popped by the owner */
    }
    /* For an orphan closer, should we die before run takes it over; the
     * node stays valid as the queue's dummy until the next pop or the
     * close. */
    MBX__POPPED(r) = n;
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
  mbx__flush_consumed(r);
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

/* What a drain replaces for its duration, restored at its end. */
typedef struct drain_saved {
  int draining;
  uintptr_t frame;
} drain_saved;

/* nested_ok: the proxy layer's blocked callers drain from inside a handler
 * (A runs B's request, which waits for C while serving A's mailbox). The
 * queue state lives in the record, not in run_pending's frame, so nesting is
 * safe; plain mbx_poll/mbx_wait refuse it to keep recursion explicit. r: the
 * calling thread's mailbox, or a queue it owns (core/owned.c). here: the
 * stack address of the caller's frame (drain_entry). */
static int begin_drain(mbx__record *r, int nested_ok, uintptr_t here,
                       drain_saved *saved) {
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

static void end_drain(const drain_saved *saved) {
  mbx__self.draining = saved->draining;
  mbx__self.drain_frame = saved->frame;
}

/* max: at most this many messages (0: all pending at entry). */
static int poll_drain(mbx__record *r, int nested_ok, int32_t max,
                      uintptr_t here) {
  drain_saved saved;
  int rc = begin_drain(r, nested_ok, here, &saved);
  if (rc != MBX_OK)
    return rc;
  // Relaxed: pending is only a budget here; the pops synchronise.
  int32_t budget = atomic_load_explicit(&r->pending, memory_order_relaxed);
  if (max > 0 && budget > max)
    budget = max;
  int count = budget > 0 ? run_pending(r, budget, 0) : 0;
  if (count == 0 && mbx__token_closed(r))
    count = MBX_ECLOSED;
  end_drain(&saved);
  return count;
}

/* Sleep on pending == 0 for at most remaining_ms (< 0: forever). A
 * cancelable wait whose thread has cancellation enabled sleeps in slices
 * and acts on a pending pthread_cancel after each. */
static void sleep_on_pending(mbx__record *r, double remaining_ms,
                             int cancelable) {
  if (cancelable)
    remaining_ms = mbx__cancel_slice_ms(remaining_ms);
  mbx__platform_wait(&r->pending, 0, remaining_ms);
  if (cancelable)
    pthread_testcancel();
}

double mbx__cancel_slice_ms(double remaining_ms) {
  int state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
  pthread_setcancelstate(state, NULL);
  if (state == PTHREAD_CANCEL_ENABLE &&
      (remaining_ms < 0 || remaining_ms > CANCEL_CHECK_MS))
    return CANCEL_CHECK_MS;
  return remaining_ms;
}

typedef struct wait_state {
  mbx__record *r;
  drain_saved saved;
  int32_t mode; /* the thread's notification mode, kept across the wait */
} wait_state;

/* The end of every wait: the notification mode and the drain flag are
 * the thread's again. */
static void wait_end(void *p) {
  wait_state *w = p;
  if (w->mode != MBX__WAITING_NONE) {
    // Seq_cst: Dekker pair with mbx__send_node, as in wait_loop.
    atomic_store_explicit(&w->r->waiting, w->mode, memory_order_seq_cst);
    /* A send that found waiting cleared did not notify the event loop:
     * notify it ourselves if anything is left. */
    if (atomic_load_explicit(&w->r->pending, memory_order_seq_cst) != 0)
      mbx__wake_owner(w->r, w->mode);
  }
  end_drain(&w->saved);
}

/* Cleanup handler: a cancelable wait is canceled while asleep, with
 * waiting still set. */
static void wait_unwound(void *p) {
  wait_state *w = p;
  // Relaxed: only a hint for senders; wait_end restores an event-loop mode
  // with its Dekker pair.
  atomic_store_explicit(&w->r->waiting, MBX__WAITING_NONE,
                        memory_order_relaxed);
  wait_end(w);
}

/* The cleanup handler covers only the sleep: a C++ exception thrown by a
 * handler must not leave a cleanup buffer of a dead frame registered. */
static void sleep_in_wait(wait_state *w, double remaining_ms, int cancelable) {
  if (!cancelable) {
    sleep_on_pending(w->r, remaining_ms, 0);
    return;
  }
  pthread_cleanup_push(wait_unwound, w);
  sleep_on_pending(w->r, remaining_ms, 1);
  pthread_cleanup_pop(0);
}

/* mbx_wait's spin before its first sleep, on the queue's head link rather
 * than on pending: a link is written once, by one sender, on a node's line,
 * while every sender RMWs pending's line, which a spinning reader keeps
 * pulling back (issue 17: 1 producer, about 4x faster natively). Under the
 * consumer token, like a pop: else a closer from outside could release the
 * head node under our loads. Returns 1 if a node is linked, 0 if not, -1 if
 * a closer has the queue. */
static int spin_on_queue(mbx__record *r, double remaining_ms) {
  if (!mbx__token_owner_claim(r))
    return -1;
  int linked = mbx__spin_while_null(&r->head->next, remaining_ms);
  mbx__token_owner_unclaim(r);
  return linked;
}

static int wait_loop(wait_state *w, double timeout_ms, int flags) {
  mbx__record *r = w->r;
  double deadline = timeout_ms >= 0 ? mbx__platform_now_ms() + timeout_ms : 0;
  int count = 0;
  int spun = flags & MBX__WAIT_NO_SPIN;
  for (;;) {
    if (mbx__token_closed(r)) {
      count = MBX_ECLOSED;
      break;
    }
    // Seq_cst: see mbx__flush_consumed.
    int32_t pending = atomic_load_explicit(&r->pending, memory_order_seq_cst);
    if (pending > 0) {
      count = run_pending(r, pending, flags & MBX__WAIT_LINGER);
      if (count != 0)
        break;
    }
    if (pending != 0) {
      /* Nothing to pop although pending > 0 (a sender is between its
       * exchange and its link), or pending < 0 (a sender is about to count
       * a message we popped; MBX__PENDING_CLOSED: a closer took over, which
       * the check above sees next time). A few instructions, unless that
       * sender was preempted: keep the deadline meanwhile (issue 18 item
       * 9). No sleep here: a sender's count wakes nobody, and sleeping
       * through a flood let the queue outgrow the heap (churn on wasm). */
      if (timeout_ms >= 0 && mbx__platform_now_ms() >= deadline) {
        count = MBX_ETIMEDOUT;
        break;
      }
      /* Yield only if it takes longer than a brief spin: a wait that
       * popped a message before its sender counted it (spin_on_queue)
       * comes here next, and its sender is a store away. */
      if (!mbx__spin_briefly_while_equal(&r->pending, pending, BRIEF_POLLS))
        mbx__platform_yield();
      continue;
    }
    double remaining = -1;
    if (timeout_ms >= 0) {
      remaining = deadline - mbx__platform_now_ms();
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
      int linked = spin_on_queue(r, remaining);
      if (linked < 0)
        continue; /* taken over: the check at the top returns */
      if (linked) {
        /* Pop at once, maybe before the sender counts the message (pending
         * then reads -1 for a moment; see the pending != 0 case above). A
         * fixed budget: reading pending here would pull its line away from
         * the sender about to add to it. */
        count = run_pending(r, SPIN_RUN_BUDGET, flags & MBX__WAIT_LINGER);
        if (count != 0)
          break;
        continue;
      }
    }
    // Seq_cst: Dekker pair with mbx__send_node (set waiting, then re-read
    // pending; the sender increments pending, then reads waiting).
    atomic_store_explicit(&r->waiting, MBX__WAITING_WAKE, memory_order_seq_cst);
    if (atomic_load_explicit(&r->pending, memory_order_seq_cst) == 0)
      sleep_in_wait(w, remaining, flags & MBX__WAIT_CANCELABLE);
    mbx__spin_slept();
    // Relaxed: only a hint for senders (the mode is restored in wait_end).
    atomic_store_explicit(&r->waiting, MBX__WAITING_NONE, memory_order_relaxed);
  }
  return count;
}

static int wait_drain(mbx__record *r, double timeout_ms, int flags,
                      uintptr_t here) {
  wait_state w;
  int rc = begin_drain(r, flags & MBX__WAIT_NESTED_OK, here, &w.saved);
  if (rc != MBX_OK)
    return rc;
  w.r = r;
  /* An event-loop thread may wait too: keep its notification mode. */
  // Relaxed: only the owner writes waiting.
  w.mode = atomic_load_explicit(&r->waiting, memory_order_relaxed);
  int count = wait_loop(&w, timeout_ms, flags);
  wait_end(&w);
  return count;
}

/* One frame layout for every drain entry (never inlined), so that drains
 * entered one after the other from the same caller record the same stack
 * address, and a nested one a lower address. */
/* poll_max: a poll of at most that many messages (0: all pending at
 * entry); WAIT: a wait. */
#define WAIT (-1)
__attribute__((noinline)) static int
drain_entry(mbx__record *r, int32_t poll_max, double timeout_ms, int flags) {
  char marker;
  uintptr_t here = (uintptr_t)&marker;
  return poll_max != WAIT
             ? poll_drain(r, flags & MBX__WAIT_NESTED_OK, poll_max, here)
             : wait_drain(r, timeout_ms, flags, here);
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
