/*
 * Event-loop delivery: a thread that returns to its JS event loop runs its
 * messages when senders notify its mailbox, with no polling (src/mbx.js).
 *
 * Arming: set the mailbox's `waiting` flag (so a sender that takes pending
 * from 0 to 1 notifies), then Atomics.waitAsync(pending, 0). waitAsync
 * checks the value atomically, so a send that lands before the wait is
 * registered makes it return "not-equal" and we drain again: no lost wakeup.
 * While armed the thread holds a runtime keepalive, so Emscripten keeps it
 * alive between tasks; it is dropped on detach and at thread exit (3.1.6
 * would otherwise leak it into the next thread on the same worker).
 */
#include "../internal.h"

#include <mbx/thread.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>

int mbx_js_arm(_Atomic int32_t *word, uint32_t epoch);
void mbx_js_defer(uint32_t epoch);
int mbx_js_has_wait_async(void);
void mbx_js_keepalive_push(void);
void mbx_js_keepalive_pop(void);
void mbx_js_thread_exiting(void);

/* Non-zero while event-loop delivery is on for this thread: the epoch of
 * the current attachment, so that a wait armed by an earlier attachment (or
 * an earlier thread on the same worker) is ignored when it fires. */
static _Thread_local uint32_t tls_epoch;
static _Atomic uint32_t g_next_epoch = 1;

#define MAX_DRAINS_PER_TASK 16

static void drain_and_arm(void) {
  for (int round = 0; round < MAX_DRAINS_PER_TASK; round++) {
    mbx_poll();
    _Atomic int32_t *word = mbx__self_pending_word();
    if (!word || !tls_epoch)
      return; /* a handler detached or the mailbox closed */
    mbx__self_set_waiting(1);
    int armed = mbx_js_arm(word, tls_epoch);
    if (armed == 1)
      return;
    if (armed < 0)
      break; /* no waitAsync: see mbx_event_loop_attach */
  }
  /* Still busy after many rounds: yield to the event loop, then go on. */
  mbx_js_defer(tls_epoch);
}

EMSCRIPTEN_KEEPALIVE void mbx__event_loop_wake(uint32_t epoch) {
  if (epoch == 0 || epoch != tls_epoch)
    return; /* stale: armed by an earlier attachment */
  drain_and_arm();
}

int mbx_event_loop_attach(void) {
  if (!mbx__self_pending_word())
    return MBX_EPERM;
  if (tls_epoch)
    return MBX_OK;
  if (!mbx_js_has_wait_async())
    return MBX_EINVAL;
  // Relaxed: only uniqueness matters.
  uint32_t epoch =
      atomic_fetch_add_explicit(&g_next_epoch, 1, memory_order_relaxed);
  tls_epoch = epoch ? epoch : 1;
  mbx_js_keepalive_push();
  drain_and_arm();
  return MBX_OK;
}

int mbx_event_loop_detach(void) {
  if (!mbx__self_pending_word())
    return MBX_EPERM;
  if (!tls_epoch)
    return MBX_EINVAL;
  tls_epoch = 0;
  mbx__self_set_waiting(0);
  mbx_js_keepalive_pop();
  return MBX_OK;
}

void mbx__event_loop_on_exit(void) {
  if (tls_epoch)
    mbx_event_loop_detach();
  mbx_js_thread_exiting();
}

#else /* native: there is no JS event loop */

int mbx_event_loop_attach(void) {
  return mbx__self_pending_word() ? MBX_EINVAL : MBX_EPERM;
}
int mbx_event_loop_detach(void) {
  return mbx__self_pending_word() ? MBX_EINVAL : MBX_EPERM;
}
void mbx__event_loop_on_exit(void) {}

#endif
