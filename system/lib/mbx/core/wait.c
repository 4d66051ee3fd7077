/*
 * Waiting: the blocking part of mbx_wait and mbx__wait (core/drain.c enters
 * it): the spin on the queue's head link, then the sleep on `pending`
 * without losing a wakeup, cut into slices where a pending pthread_cancel
 * must be seen.
 */
#include "record.h"

#include <pthread.h>

/* How long a cancelable mbx_wait sleeps before it looks for a pending
 * pthread_cancel (neither Linux's futex wait nor Emscripten 3.1.6's is a
 * cancellation point, and pthread_cancel does not wake a futex). */
#define CANCEL_CHECK_MS 100.0
/* At most this many messages run by a serving wait (a blocked proxy
 * caller's) whose spin saw one linked: a flood then still returns to the
 * caller (the top of the loop's budget is pending, as for mbx_poll). */
#define SPIN_RUN_BUDGET 64
/* The fewest messages a stream receiver's drain (mbx_wait, mbx_queue_wait:
 * MBX__WAIT_LINGER) may run, and so the bound on what a handler re-sending
 * to its own thread runs before the wait returns. A budget of the pending
 * count ended a drain every few messages when the receiver kept up with a
 * sender, and each end subtracts from pending, on the line every sender
 * RMWs, then re-reads it: about 2x per message natively (issue 17). */
#define STREAM_RUN_BUDGET 256
/* How long a wait that finds pending > 0 and nothing linked polls the
 * queue's link before it yields (a sender counts its message a few
 * instructions before it links it, unless it was preempted there). */
#define BRIEF_POLLS 256

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
  mbx__drain_saved saved;
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
  mbx__drain_end(&w->saved);
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
 * head node under our loads. brief: at most BRIEF_POLLS polls, else the
 * adaptive budget within remaining_ms. Returns 1 if a node is linked, 0 if
 * not, -1 if a closer has the queue. */
static int spin_on_queue(mbx__record *r, double remaining_ms, int brief) {
  if (!mbx__token_owner_claim(r))
    return -1;
  int linked = brief ? mbx__spin_briefly_while_null(&r->head->next, BRIEF_POLLS)
                     : mbx__spin_while_null(&r->head->next, remaining_ms);
  mbx__token_owner_unclaim(r);
  return linked;
}

static int wait_loop(wait_state *w, double timeout_ms, int flags) {
  mbx__record *r = w->r;
  double deadline = timeout_ms >= 0 ? mbx__platform_now_ms() + timeout_ms : 0;
  int count = 0;
  int spun = flags & MBX__WAIT_NO_SPIN;
  int linger = flags & MBX__WAIT_LINGER;
  /* A serving caller runs only what was pending: it is after its answer. */
  int32_t least = linger ? STREAM_RUN_BUDGET : 0;
  for (;;) {
    if (mbx__token_closed(r)) {
      count = MBX_ECLOSED;
      break;
    }
    // Seq_cst: see mbx__flush_consumed.
    int32_t pending = atomic_load_explicit(&r->pending, memory_order_seq_cst);
    if (pending > 0) {
      count = mbx__run_pending(r, pending > least ? pending : least, linger);
      if (count != 0)
        break;
    }
    if (pending != 0) {
      /* Nothing to pop although pending > 0: a sender has counted its
       * message and not linked it yet, or a refused sender has not taken
       * its count back yet (MBX__PENDING_CLOSED: a closer took over, which
       * the check above sees next time). A few instructions, unless that
       * sender was preempted: keep the deadline meanwhile (issue 18 item
       * 9), and yield only if a brief spin on the link sees nothing. No
       * sleep here: the count woke nobody, and sleeping through a flood
       * let the queue outgrow the heap (churn on wasm). */
      if (timeout_ms >= 0 && mbx__platform_now_ms() >= deadline) {
        count = MBX_ETIMEDOUT;
        break;
      }
      if (pending < 0 || spin_on_queue(r, 0, 1) == 0)
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
      int linked = spin_on_queue(r, remaining, 0);
      if (linked < 0)
        continue; /* taken over: the check at the top returns */
      if (linked) {
        /* Pop at once, with a fixed budget: reading pending here would
         * pull its line away from the senders who count in it. */
        count = mbx__run_pending(
            r, linger ? STREAM_RUN_BUDGET : SPIN_RUN_BUDGET, linger);
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

int mbx__wait_drain(mbx__record *r, double timeout_ms, int flags,
                    uintptr_t here) {
  wait_state w;
  int rc = mbx__drain_begin(r, flags & MBX__WAIT_NESTED_OK, here, &w.saved);
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
