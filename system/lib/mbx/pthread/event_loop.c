/*
 * Event-loop delivery: a thread that returns to its JS event loop runs its
 * messages when senders notify its mailbox, with no polling (src/mbx.js).
 *
 * Arming with Atomics.waitAsync: set the mailbox's `waiting` mode (so a
 * sender that takes pending from 0 to 1 notifies), then waitAsync(pending,
 * 0). waitAsync checks the value atomically, so a send that lands before the
 * wait is registered makes it return "not-equal" and we drain again: no lost
 * wakeup.
 *
 * Without a native waitAsync: set the mode to POST, then re-read pending
 * (the sender increments pending, then reads the mode: one of us sees the
 * other). A sender that makes pending leave 0 posts wake_task to this
 * thread with emscripten_dispatch_to_thread_async; wake_task only schedules
 * the drain as a fresh event-loop task (mbx_js_defer: setImmediate in Node,
 * a MessageChannel message in browsers, unclamped unlike setTimeout),
 * because Emscripten may also run posted tasks inside futex waits, where
 * handlers must not run. A post can be dropped silently (3.1.6: the
 * target's call queue is full), so a slow timer also checks pending while
 * attached in this mode (src/mbx.js mbx_js_post_watch).
 *
 * While attached a pthread holds a runtime keepalive, so Emscripten keeps
 * it alive between tasks; it is dropped on detach and at thread exit (3.1.6
 * would otherwise leak it into the next thread on the same worker). Other
 * keepalives (timers) are left to their owners (src/mbx.js).
 */
#include "pthread_layer.h"

#include <mbx/thread.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <emscripten/threading.h>

/* Non-zero while event-loop delivery is on for this thread: the epoch of
 * the current attachment, so that a wait armed by an earlier attachment (or
 * an earlier thread on the same worker) is ignored when it fires. */
static _Thread_local uint32_t tls_epoch;
/* MBX__WAITING_WAKE (waitAsync) or MBX__WAITING_POST (fallback). */
static _Thread_local int32_t tls_mode;
static _Atomic uint32_t g_next_epoch = 1;

/* How long one event-loop task keeps draining while senders keep the
 * mailbox busy, before it lets the event loop run its other tasks (and
 * timers) and goes on in a fresh task. A round runs at most
 * DRAIN_ROUND_MESSAGES, so that a backlog of slow handlers cannot hold the
 * event loop much past the slice; the clock is read after every
 * DRAIN_ROUNDS_PER_CLOCK rounds or messages: it is a JS call. A count of
 * 16 rounds, each running all that was pending, used to end the task: under
 * a flood of quick messages that cost a setImmediate every few dozen
 * messages, under a backlog of slow ones it held the event loop for as long
 * as 16 backlogs took (issue 17). */
#define DRAIN_SLICE_MS 2.0
#define DRAIN_ROUND_MESSAGES 64
#define DRAIN_ROUNDS_PER_CLOCK 16

/* How long a receiver that ran a full round (a stream: its senders kept it
 * busy) lets the next round gather before it runs it, when fewer than a
 * round's messages are pending. A receiver that keeps up with its senders
 * takes each message as soon as it is linked: it reads the line its sender
 * has just written, and the sender's next send takes it back, a transfer
 * each way per message. Left to gather, the sender writes a round's lines
 * undisturbed and the receiver reads them in a burst. Measured (issue 17,
 * wasm flood on 3.1.6, 1 producer, 6 x 9 runs alternating): the median
 * went from 35 to 43 M messages per second (a first form that always
 * waited the whole time: from 25 to 39 M, and the runs slower than 26 M
 * from half of them to a fifth). A message in a stream waits at most this
 * much longer. */
#define GATHER_MS 0.001

/* Spins until a round's messages are pending or GATHER_MS passed. Reads
 * pending once per clock read (a JS call, tens of nanoseconds apart), not
 * in a tight loop: each read takes the line back from the senders. */
static void gather_round(_Atomic int32_t *word) {
  double until = emscripten_get_now() + GATHER_MS;
  // Relaxed: a hint; the drain's pops synchronise.
  while (atomic_load_explicit(word, memory_order_relaxed) <
             DRAIN_ROUND_MESSAGES &&
         emscripten_get_now() < until) {
  }
}

static void drain_and_arm(void) {
  double start = emscripten_get_now();
  int since_clock = 0;
  for (;;) {
    int ran = mbx__poll_at_most(DRAIN_ROUND_MESSAGES);
    if (ran == MBX_ECLOSED) { /* closed from outside: nothing to wait for */
      mbx_event_loop_detach();
      return;
    }
    _Atomic int32_t *word = mbx__self_pending_word();
    if (!word || !tls_epoch)
      return; /* a handler detached or the mailbox closed */
    since_clock += 1 + (ran > 0 ? ran : 0);
    if (since_clock >= DRAIN_ROUNDS_PER_CLOCK) {
      since_clock = 0;
      if (emscripten_get_now() - start >= DRAIN_SLICE_MS)
        break;
    }
    if (ran == DRAIN_ROUND_MESSAGES) {
      gather_round(word);
      continue;
    }
    // Relaxed: a look only. More has arrived since the poll: drain again,
    // without arming (setting waiting and calling waitAsync would only see
    // pending != 0 and return).
    if (atomic_load_explicit(word, memory_order_relaxed) > 0)
      continue;
    mbx__self_set_waiting(tls_mode);
    if (tls_mode == MBX__WAITING_WAKE) {
      if (mbx_js_arm(word, tls_epoch) == 1)
        return;
    } else {
      // Seq_cst: the other half of the Dekker pair with mbx_send (we set
      // the mode above, the sender increments pending first).
      if (atomic_load_explicit(word, memory_order_seq_cst) == 0)
        return; /* the next sender posts wake_task */
    }
  }
  /* Still busy after a slice: yield to the event loop, then go on. */
  mbx_js_defer(tls_epoch);
}

EMSCRIPTEN_KEEPALIVE void mbx__event_loop_wake(uint32_t epoch) {
  if (epoch == 0 || epoch != tls_epoch)
    return; /* stale: armed by an earlier attachment */
  drain_and_arm();
}

/* Runs on the owner, posted by a sender (see mbx_send). */
static void wake_task(void) {
  if (tls_epoch)
    mbx_js_defer(tls_epoch);
}

static void post_wake(uintptr_t owner) {
  emscripten_dispatch_to_thread_async_((pthread_t)owner, EM_FUNC_SIG_V,
                                       (void *)wake_task, NULL);
}

int mbx_event_loop_attach(void) {
  if (!mbx__self_pending_word())
    return MBX_EPERM;
  if (tls_epoch)
    return MBX_OK;
  if (mbx_js_has_wait_async()) {
    tls_mode = MBX__WAITING_WAKE;
  } else {
    tls_mode = MBX__WAITING_POST;
    /* Senders post to the pthread recorded for this life. */
    mbx__record_set_pthread(mbx_self(), (uintptr_t)pthread_self());
    mbx__set_post_wake_hook(post_wake);
  }
  // Relaxed: only uniqueness matters.
  uint32_t epoch =
      atomic_fetch_add_explicit(&g_next_epoch, 1, memory_order_relaxed);
  tls_epoch = epoch ? epoch : 1;
  mbx_js_loop_hold(tls_epoch);
  if (tls_mode == MBX__WAITING_POST) /* posts can be lost: see src/mbx.js */
    mbx_js_post_watch(mbx__self_pending_word(), tls_epoch);
  drain_and_arm();
  return MBX_OK;
}

int mbx_event_loop_detach(void) {
  if (!mbx__self_pending_word())
    return MBX_EPERM;
  if (!tls_epoch)
    return MBX_EINVAL;
  tls_epoch = 0;
  mbx__self_set_waiting(MBX__WAITING_NONE);
  mbx_js_loop_release();
  return MBX_OK;
}

/* returned: the thread's start routine returned (it did not unwind to its
 * event loop, and timers may keep it alive); 0 for pthread_exit,
 * cancellation and runtime exit. */
int mbx_event_loop_attached(void) { return tls_epoch != 0; }

void mbx__event_loop_on_exit(int returned) {
  if (tls_epoch)
    mbx_event_loop_detach();
  mbx_js_thread_exiting(returned);
}

#else /* native: there is no JS event loop */

int mbx_event_loop_attach(void) {
  return mbx__self_pending_word() ? MBX_EINVAL : MBX_EPERM;
}
int mbx_event_loop_detach(void) {
  return mbx__self_pending_word() ? MBX_EINVAL : MBX_EPERM;
}
int mbx_event_loop_attached(void) { return 0; }
void mbx__event_loop_on_exit(int returned) { (void)returned; }

#endif
