/*
 * The proxy layer's shared layout: the call record, its states, and what
 * proxy/call.c (the caller side), proxy/target.c (the target side) and
 * proxy/ctx.c (call records and reporting) share. Built on core/layer.h
 * only. Design: docs/proxying.md.
 */
#ifndef MBX__PROXY_INTERNAL_H
#define MBX__PROXY_INTERNAL_H

#include "../core/layer.h"

#include <mbx/proxy.h>

/*
 * The record's `state` decides every race in one CAS:
 *   PENDING -> RUNNING    the target starts fn
 *   PENDING -> ABANDONED  the caller timed out / is unwinding: fn never runs
 *   PENDING -> CANCELED   the target exited with the work still queued
 *   RUNNING -> DONE       fn returned, or mbx_proxy_finish
 *   RUNNING -> CANCELED   the target exited inside fn, or with the context
 *                         outstanding
 * Whoever moves it to DONE or CANCELED reports the outcome, exactly once.
 */
enum {
  MBX__CALL_PENDING,
  MBX__CALL_RUNNING,
  MBX__CALL_DONE,
  MBX__CALL_CANCELED,
  MBX__CALL_ABANDONED
};
enum { MBX__KIND_SYNC, MBX__KIND_CTX, MBX__KIND_CALLBACK };
/*
 * reply_state of a serving sync caller (issue 18 item 8: a reply sent to a
 * caller that already returned sat in its mailbox as a stray message):
 *   WATCHING              the record starts so: the caller spins on state
 *                         first, and the reporter sends no reply (final if
 *                         the spin saw the outcome)
 *   WATCHING -> ARMED     the caller's spin ran out: it hands the decision
 *                         to the reporter, then re-reads state
 *   ARMED -> SENT         the reporter sends the reply (one reference)
 *   ARMED -> SKIPPED      the caller saw the outcome first: no reply
 *   SENT -> ARRIVED       the reply ran or was canceled (or not sendable)
 * Only the caller moves WATCHING, and the reporter writes only from ARMED,
 * so a quick call writes this word not at all (issue 17: the caller's
 * ARMED -> WATCHING and the reporter's WATCHING -> SKIPPED were two writes
 * on the line the other side was reading). A caller returns only from
 * WATCHING after its spin saw the outcome, SKIPPED or ARRIVED, so no reply
 * outlives it (test/model/reply.pml).
 */
enum {
  MBX__REPLY_ARMED,
  MBX__REPLY_WATCHING,
  MBX__REPLY_SENT,
  MBX__REPLY_SKIPPED,
  MBX__REPLY_ARRIVED
};

struct mbx_proxy_ctx {
  _Atomic int32_t state; /* also the futex word of non-serving waiters */
  _Atomic int32_t refs;
  _Atomic int32_t sleeper; /* a waiter sleeps on state: wake it */
  /* Whether a serving caller gets a reply message: MBX__REPLY_*, decided
   * by CAS between the reporter and the caller (proxy/ctx.c). */
  _Atomic int32_t reply_state;
  int kind;
  /* What the caller returns when state is DONE: MBX_OK, or the status
   * given to mbx_proxy_finish_status. Written by the finisher before its
   * settle CAS, which publishes it; read by the caller after it saw DONE. */
  int status;
  mbx_run_fn fn;
  mbx_proxy_ctx_fn ctx_fn;
  mbx_run_fn on_done, on_cancel;
  void *arg;
  mbx_handle reply_to; /* caller's mailbox, or null: sleeper only */
  mbx__node *reply;    /* owned by the record until the reporter sends it */
  mbx_proxy_ctx *next; /* target's outstanding list (target only) */
  /* The caller's list of its callbacks (caller only): its exit abandons
   * the ones not started yet. */
  mbx_proxy_ctx *caller_next;
  /* The final state (DONE or CANCELED), stored with release by whoever
   * settled it, after its CAS, for a serving caller's spin to poll; 0
   * before. On a cache line of its own (at least a line past every field
   * above): a spin on `state` pulled the record's line back after each of
   * the target's writes (its link on `running`, RUNNING, DONE, its unref),
   * and the target then took it back again (issue 17). A caller that
   * reads it final need not read `state`. */
  char settled_pad[64];
  _Atomic int32_t settled_hint;
};

/* What a thread holds of proxied work, as target and as the caller of
 * callbacks. On the heap, published in the thread's mailbox
 * (mbx__self_layer_set), so that when the thread's worker is killed the
 * main thread can cancel it (mbx__proxy_on_orphan): the dead thread's
 * stack and TLS may be freed by then. If that allocation fails the thread
 * uses a thread-local fallback, and only a killed worker's work stays
 * unresolved. */
typedef struct mbx__proxy_thread {
  /* Sync and callback work whose fn runs on this thread now, innermost
   * first (linked through `next`; nested when a handler blocks serving). */
  mbx_proxy_ctx *running;
  /* Contexts this thread started and that may still be outstanding. */
  mbx_proxy_ctx *outstanding;
  /* Callbacks this thread requested, each with the caller's reference,
   * linked through `caller_next`; pruned of settled ones as it grows. */
  mbx_proxy_ctx *callbacks;
  uint32_t callbacks_count, callbacks_prune_at;
  uint32_t callbacks_settled; /* outcomes delivered since the last prune */
} mbx__proxy_thread;

/* The layer's counters (mbx_proxy_stats); calls live = NEW - FREED. */
enum {
  MBX__PROXY_CALLS_NEW,
  MBX__PROXY_CALLS_FREED,
  MBX__PROXY_SYNC_DONE,
  MBX__PROXY_SYNC_CANCELED,
  MBX__PROXY_SYNC_TIMED_OUT,
  MBX__PROXY_ABANDONED,
  MBX__PROXY_CONTEXTS_CANCELED,
  MBX__PROXY_CALLBACKS_DONE,
  MBX__PROXY_CALLBACKS_CANCELED,
  MBX__PROXY_CALLBACKS_DROPPED,
  MBX__PROXY_REPLIES_SKIPPED,
  MBX__PROXY_REPLIES_CANCELED,
  /* A serving sync call whose caller's spin saw it DONE: counts for
   * sync_done and replies_skipped, and was never counted in calls_live
   * (see call.c, wait_for_outcome). One RMW where those were four. */
  MBX__PROXY_SYNC_QUICK,
  MBX__PROXY_COUNTER_COUNT
};

/* ---- proxy/ctx.c */
/* Register the layer with the core (hooks, a per-life slot, counters) on
 * first use; returns its layer id. Cheap after the first call. */
int mbx__proxy_layer(void);
void mbx__proxy_count(int which);
uint64_t mbx__proxy_counter_sum(int which);
/* A new call record with two references (caller, work), or NULL. A
 * non-null reply_to gets a preallocated reply node. The caller counts it
 * live (MBX__PROXY_CALLS_NEW): a callback at once, a sync call once it is
 * not quick (call.c). */
mbx_proxy_ctx *mbx__call_new(int kind, mbx_handle reply_to);
void mbx__call_ref(mbx_proxy_ctx *c);
void mbx__call_unref(mbx_proxy_ctx *c);
/* Move state from `from` to `to`; returns 1 if this call did. The winner of
 * a final state reports it; the caller keeps its own reference either way. */
int mbx__call_settle(mbx_proxy_ctx *c, int32_t from, int32_t to);
/* Sleep until c leaves RUNNING (its fn returned or ended its thread). */
void mbx__call_wait_running(mbx_proxy_ctx *c);
/* At the calling thread's exit: give back its spare call record, and the
 * parked one. */
void mbx__proxy_cache_flush(void);
/* The calling thread's quick sync call c (never counted live) returned:
 * drop the caller's reference only during the thread's next call
 * (mbx__proxy_unpark), or at its exit. Only a thread with a mailbox (whose
 * exit unparks) serves, so only it has quick calls. */
void mbx__proxy_park(mbx_proxy_ctx *c);
/* In a sync call, once its work is sent: drop the reference that the
 * thread's call before parked (its record becomes the spare, set up for
 * the next call). */
void mbx__proxy_unpark(void);

/* Test-only pauses (proxy/ctx.c): armed once a test set one, so that
 * other runs pay one relaxed load. */
extern _Atomic int mbx__proxy_test_hooks;
extern _Thread_local double mbx__proxy_test_after_spin_ms;
extern _Thread_local double mbx__proxy_test_before_reply_ms;
extern _Thread_local long mbx__proxy_test_spins_settled;
static inline int mbx__proxy_test_armed(void) {
  // Relaxed: a thread arms its own pauses, before its own next call.
  return __builtin_expect(
      atomic_load_explicit(&mbx__proxy_test_hooks, memory_order_relaxed), 0);
}
/* Sleep *ms milliseconds (if any) and clear it. */
void mbx__proxy_test_pause(double *ms);

/* ---- proxy/target.c */
/* The calling thread's block (allocated on first use). */
mbx__proxy_thread *mbx__proxy_this_thread(void);
void mbx__proxy_work_run(void *arg);
void mbx__proxy_work_canceled(void *arg, int reason);
/* Layer hooks (core/layer.h): the owner's exit, and an orphan's closer. */
void mbx__proxy_on_close(void);
/* The calling thread requested callback c: keep the caller's reference on
 * its list, for its exit to abandon. */
void mbx__proxy_callback_track(mbx_proxy_ctx *c);
/* On the caller, as a callback's outcome is delivered: prunes the list
 * once half of it is settled (so it empties when the last one settles). */
void mbx__proxy_callback_settled(void);
void mbx__proxy_on_exit(void *slot);
void mbx__proxy_on_orphan(void *slot, mbx_run_fn popped_run, void *popped_arg);

#endif
