/*
 * The core's private layout: the thread record, the gate word's bits and
 * the functions the core's files share. Only the files of core/ include it;
 * upper layers use core/layer.h.
 */
#ifndef MBX__RECORD_H
#define MBX__RECORD_H

#include "layer.h"
#include "queue.h"

/* The gate word (diagram and protocol: core/gate.c):
 *   bits 63..32  generation (0 = never opened; bumped at every reuse)
 *   bit  31      OPEN
 *   bit  30      OWNER: the owner's hold, released by its exit
 *   bits 29..16  mbx_hold() holds
 *   bits 15..0   mbx_set_capacity callers inside (a send counts in
 *                pending instead: core/send.c) */
#define MBX__GATE_INFLIGHT_ONE 1ull
#define MBX__GATE_INFLIGHT_MASK 0xffffull
#define MBX__GATE_HOLD_ONE (1ull << 16)
#define MBX__GATE_HOLD_MASK (0x3fffull << 16)
#define MBX__GATE_OWNER (1ull << 30)
#define MBX__GATE_OPEN (1ull << 31)
#define MBX__GATE_GEN_SHIFT 32

static inline uint32_t mbx__gate_gen(uint64_t gate) {
  return (uint32_t)(gate >> MBX__GATE_GEN_SHIFT);
}
static inline uint32_t mbx__gate_holds(uint64_t gate) {
  return (uint32_t)((gate & MBX__GATE_HOLD_MASK) >> 16);
}

/* How many layers may keep per-life state in a record (core/layer.c). */
#define MBX__LAYER_SLOTS 1

/*
 * A thread record. Records are allocated in chunks that are never freed, so
 * any index below the published record count names readable memory forever;
 * the generation in the gate decides whether a handle still names the life
 * it was made for. Keep this small: it is what a retired thread costs.
 *
 * Two cache lines, split by who writes them per message: senders (gate,
 * tail, pending) and the owner (consumer token, head, counters). On one line
 * every send and every pop would steal it from the other side: profiles
 * showed the owner's token CAS and the senders' gate RMW each stalling on
 * that line. On wasm32 each half fits one 64-byte line (128 bytes in all).
 */
#define MBX__CACHE_LINE 64
typedef struct mbx__record {
  /* ---- written by senders */
  _Atomic uint64_t gate;
  /* Counted by senders (before they look at the gate and push: core/send.c)
   * and not yet consumed, plus for a moment the counts of refused senders;
   * also the futex word owners sleep on and the JS event loop waits on.
   * MBX__PENDING_CLOSED once closed (give or take refused senders). */
  _Atomic int32_t pending;
  /* How a sender that takes pending from 0 must notify the owner: one of
   * MBX__WAITING_* (the owner sleeps on pending, or its JS loop waits). */
  _Atomic int32_t waiting;
  _Atomic(mbx__node *) tail; /* producers exchange here */
  _Atomic uint32_t capacity; /* 0 = unbounded */
  uint32_t index;            /* immutable after chunk creation */
  /* pthread_t of the thread this life was created for (0 if none), for
   * mbx_thread_handle(). Written by the creator under its hold and by the
   * thread at bind (the same value); reset at reuse. */
  _Atomic uintptr_t pthread_id;
  /* Refusals of this life: MBX_ECLOSED ones as generation << 32 | count,
   * counted only when the tag names the sender's life (a refusal through a
   * stale handle can race a reuse: found by the Spin model); MBX_EFULL ones
   * are counted inside the gate, where no reuse can happen. */
  _Atomic uint64_t rejected_closed;
  _Atomic uint32_t rejected_full;
  /* Accepted messages of this life lost with a dead owner, neither run nor
   * canceled (it died between a pop and counting it). Single writer: the
   * closer that drains at close. */
  _Atomic uint32_t abandoned;
  uint32_t quarantine_next; /* index + 1 of the next record; registry lock */
  /* Upper layers' state of the owner's life (mbx__self_layer_set), so that
   * the closer of an orphan (a killed worker) can hand it to the layer.
   * Written by the owner; taken by the orphan closer or at the owner's
   * exit; reset at reuse. */
  _Atomic(void *) layer_slot[MBX__LAYER_SLOTS];
  /* Counters of the current life; folded into the global totals at reuse. */
  _Atomic uint64_t canceled; /* single writer: whoever drains at close */

  /* ---- written by the owner (the drainer) */
  /* Who may pop the queue right now: MBX__CONSUMER_*. The owner claims it
   * around each pop only (not while a handler runs), so a closer from
   * outside (runtime exit, a dead owner) can take the queue over. */
  _Alignas(MBX__CACHE_LINE) _Atomic int16_t consumer;
  /* 1 while a thread owns it (written at bind and exit only: here to keep
   * the record two lines on wasm32). */
  _Atomic uint16_t bound;
  int32_t consumed_unflushed; /* popped, not yet subtracted: token holder */
  /* Popped by the owner, not yet added to `run` (folded at every flush, by
   * whoever holds the token): one counter store per drain, not per message
   * (every atomic store is a full-barrier exchange in wasm). */
  int32_t run_unflushed;
  mbx__node *head; /* owner only */
  /* Most messages pending at once, as seen by the drainer just before it
   * subtracts (pending only grows in between); stats add the current value. */
  _Atomic uint32_t high_water;
  /* Owner only: consumed nodes of one block not yet dropped from its count
   * (batched: consecutive nodes usually share a block). */
  uint32_t release_count;
  struct mbx__node_block *release_block;
  mbx__node stub;           /* queue sentinel */
  _Atomic uint64_t run;     /* single writer: the token holder */
  _Atomic uint64_t dropped; /* single writer: whoever drains at close */
} mbx__record;
_Static_assert(sizeof(void *) == 8 ||
                   sizeof(mbx__record) == 2 * MBX__CACHE_LINE,
               "a wasm32 record is two cache lines");

/* The node the owner popped last, while it may not yet have started it
 * (NULL otherwise): written under the consumer claim by the owner
 * (core/drain.c), cleared by a layer whose run function has taken the
 * message over (mbx__self_popped_clear) and at reuse, read by an orphan
 * closer after it took the token. Kept in the stub's block pointer: the
 * stub has no block, and the record has no byte to spare. */
#define MBX__POPPED(r) ((r)->stub.u.popped)

static inline mbx__queue_ends mbx__queue_of(mbx__record *r) {
  mbx__queue_ends q = {&r->tail, &r->head, &r->stub};
  return q;
}

/* The consumer token (r->consumer). */
enum {
  MBX__CONSUMER_FREE = 0,
  MBX__CONSUMER_OWNER = 1,  /* the owner is inside a pop */
  MBX__CONSUMER_CLOSER = 2, /* the closer of this life drains it; final */
};

/* What pending holds once a life is closed and drained: non-zero, so that
 * an owner about to sleep on pending == 0 (mbx__wait, Atomics.waitAsync)
 * returns at once and sees the close; negative, so that nobody counts it
 * as messages; far from both ends, so that refused senders' counts come
 * and go around it. Reuse subtracts it again, keeping those counts. */
#define MBX__PENDING_CLOSED (INT32_MIN / 2)

/* ---- handles */
static inline uint32_t mbx__handle_gen(mbx_handle h) {
  return (uint32_t)(h.bits >> 32);
}
static inline mbx_handle mbx__make_handle(uint32_t index, uint32_t gen) {
  mbx_handle h = {((uint64_t)gen << 32) | (uint64_t)(index + 1)};
  return h;
}
/* The last generation a record lives: a record whose life of this
 * generation ends is retired for good (core/table.c), so generations never
 * wrap and compare exactly (issue 18 item 11, docs/design.md). */
#define MBX__GEN_LAST UINT32_MAX
/* Classify a generation mismatch: a generation newer than the record's
 * current one can only come from a forged handle. */
static inline int mbx__gen_mismatch_code(uint32_t handle_generation,
                                         uint32_t record_generation) {
  return handle_generation > record_generation ? MBX_EINVAL : MBX_ESTALE;
}
/* Why a gate snapshot refuses an operation through handle generation gen
 * (a send, a hold, a capacity change): MBX_OK if gen's life is open. */
static inline int mbx__gate_refusal(uint64_t gate, uint32_t gen) {
  if (mbx__gate_gen(gate) != gen)
    return mbx__gen_mismatch_code(gen, mbx__gate_gen(gate));
  if (!(gate & MBX__GATE_OPEN))
    return MBX_ECLOSED;
  return MBX_OK;
}

/* ---- core/gate.c: every RMW on the gate word, and the consumer token */
/* mbx_set_capacity's enter and leave: count the caller inside the gate of
 * gen's life, or refuse (then nothing is left counted). A send does not:
 * it counts in pending (core/send.c). */
int mbx__gate_enter(mbx__record *r, uint32_t gen);
void mbx__gate_leave(mbx__record *r);
/* Reuse: bump the generation and open with the owner's hold. Registry lock
 * held. Returns the new generation. */
uint32_t mbx__gate_open(mbx__record *r);
/* Close steps A and B: clear OPEN for gen's life, then wait until no
 * capacity setter is inside. Returns MBX_OK or the refusal (already closed,
 * stale). Senders are waited for by step C (core/closing.c). */
int mbx__gate_close(mbx__record *r, uint32_t gen);
/* Close step E: drop the owner's hold of gen's life (closed only), once:
 * MBX_OK, or MBX_EINVAL/MBX_ESTALE if it is not there (already released
 * by the owner or an orphan closer, or another life). */
int mbx__gate_release_owner(mbx__record *r, uint32_t gen);
/* A hold on gen's life taken while its OWNER is still set, even closed (the
 * owner's exit after someone else closed its mailbox): MBX_OK, then
 * release it as a hold; MBX_ECLOSED if OWNER is gone (the life may already
 * be retired), MBX_EAGAIN at the hold limit. */
int mbx__gate_pin_owned(mbx__record *r, uint32_t gen);
/* The owner claims the queue around one pop; fails once a closer took it. */
int mbx__token_owner_claim(mbx__record *r);
void mbx__token_owner_unclaim(mbx__record *r);
/* The closer takes the queue for good: MBX_OK; MBX_ECLOSED if another
 * closer of this life has it; MBX_EBUSY if the owner stayed inside a pop
 * for timeout_ms. With force (the owner is dead: an orphan's closer) it
 * then takes the queue from the dead owner: MBX__TOKEN_FROM_DEAD (a pop
 * leaves a valid queue wherever its thread dies, core/queue.h, but the
 * owner's count of what it consumed may be short: core/closing.c). */
#define MBX__TOKEN_FROM_DEAD 1
int mbx__token_closer_claim(mbx__record *r, double timeout_ms, int force);
/* Close step B alone: wait until no capacity setter is inside the gate. */
void mbx__gate_wait_senders(mbx__record *r);
/* 1 once a closer owns the queue of r's current life. */
int mbx__token_closed(mbx__record *r);

/* ---- core/table.c */
/* Resolve a handle to its record without trusting any of its bits. Returns
 * MBX_OK and *out, or MBX_EINVAL for null/out-of-range/forged handles. The
 * generation is NOT checked here (callers check it against the gate). */
int mbx__lookup(mbx_handle h, mbx__record **out);
/* Allocate (or reuse from quarantine) a record, open it with the owner's
 * hold. */
int mbx__record_open(mbx__record **out, uint32_t *gen_out);
/* Append a retired record to the quarantine (called once per life, by the
 * RMW that made it retirable: core/gate.c). */
void mbx__table_retire(mbx__record *r);
/* The registry lock: guards record creation and reuse, the quarantine and
 * the folded totals (core/stats.c). Never taken by a send. */
void mbx__registry_lock(void);
void mbx__registry_unlock(void);
/* Record index (below mbx__record_count()). */
mbx__record *mbx__record_at(uint32_t index);
/* Registry lock held: records ever made, those in quarantine, and the bytes
 * of their chunks. */
void mbx__table_usage(uint32_t *total, uint32_t *quarantined,
                      uint64_t *chunk_bytes);

/* ---- core/drain.c */
/* Token holder: fold the run count and release the consumed nodes, then
 * subtract what was popped from pending, adding then_add in the same RMW
 * (the closer's step D: MBX__PENDING_CLOSED less what a dead owner lost). */
void mbx__flush_consumed(mbx__record *r, int32_t then_add);
/* Owner only, inside a drain: run at most budget messages, claiming the
 * consumer token around each pop. linger: MBX__WAIT_LINGER's brief spin for
 * the next message. Returns the number run, or MBX_ECLOSED if a closer took
 * the queue before anything ran. */
int mbx__run_pending(mbx__record *r, int32_t budget, int linger);
/* What a drain replaces for its duration, restored at its end. */
typedef struct mbx__drain_saved {
  int draining;
  uintptr_t frame;
} mbx__drain_saved;
/* Mark the calling thread draining r from the frame at here (MBX_OK), or
 * refuse: MBX_EPERM (no mailbox), MBX_EBUSY (nested, without nested_ok). */
int mbx__drain_begin(mbx__record *r, int nested_ok, uintptr_t here,
                     mbx__drain_saved *saved);
void mbx__drain_end(const mbx__drain_saved *saved);

/* ---- core/wait.c, entered by core/drain.c's drain entry */
/* mbx__wait's body: drain r, else spin and sleep on pending. */
int mbx__wait_drain(mbx__record *r, double timeout_ms, int flags,
                    uintptr_t here);
/* Deliver the notification a sender would have sent to r's owner in mode. */
void mbx__wake_owner(mbx__record *r, int32_t mode);

/* ---- core/test_hooks.c: set by tests for the calling thread's next pop */
/* core/test_hooks.c. Armed (1) once a test set any hook, never cleared:
 * the hot paths pay one relaxed load of a read-mostly word, and read the
 * thread's hook settings only in a test that uses them. */
extern _Atomic int mbx__test_hooks_armed;
static inline int mbx__test_hooks_on(void) {
  // Relaxed: a thread arms its own hooks only, before its own next send or
  // pop, so program order makes them visible where they act.
  return __builtin_expect(
      atomic_load_explicit(&mbx__test_hooks_armed, memory_order_relaxed), 0);
}
extern _Thread_local int mbx__tls_test_park_after_pop;
void mbx__test_park_forever(void);
/* A stall a test set at one point of the calling thread's next pop or send:
 * ms to sleep there (0: none), and a flag to set on getting there. */
typedef struct mbx__test_stall {
  double ms;
  _Atomic int *reached;
} mbx__test_stall;
extern _Thread_local mbx__test_stall mbx__tls_test_pop_stall,
    mbx__tls_test_link_stall, mbx__tls_test_push_stall,
    mbx__tls_test_post_stall;
/* Sets s->reached, then sleeps s->ms, once. */
void mbx__test_stall_run(mbx__test_stall *s);
/* A test's guard around the window of mbx__node_release_flush in which a
 * killed thread leaks a block, or NULL: called with 1 before, 0 after. */
typedef void (*mbx__test_guard_fn)(int enter);
extern _Atomic(mbx__test_guard_fn) mbx__test_release_guard;

/* ---- core/lifecycle.c: the calling thread's mailbox */
struct mbx__closing; /* core/closing.c, below */
typedef struct mbx__self_state {
  mbx__record *record;
  mbx_handle handle;
  int draining;
  /* Stack address of the active drain's frame (core/drain.c): a drain
   * recorded at or below the current frame's depth was unwound by an
   * exception escaping a handler, and is over (issue 18 item 3). */
  uintptr_t drain_frame;
  /* Closes in progress on this thread, innermost first (closing.c): a
   * cancel function that ends the thread or the process leaves them to
   * be resumed. */
  struct mbx__closing *closing;
  /* The queue of one's own whose drain is innermost on this thread
   * (core/owned.c), or NULL: mbx__self_popped_clear clears its pop too. */
  mbx__record *queue;
} mbx__self_state;
extern _Thread_local mbx__self_state mbx__self;
/* Forget a drain an exception unwound: 1 if the calling thread is still
 * inside a drain, seen from a frame at stack address here. */
int mbx__drain_active(uintptr_t here);

/* ---- core/closing.c: the resumable close (steps A to E) */
/* MBX__CLOSE_QUEUE: a queue of one's own (core/owned.c) closed by its owner;
 * MBX__CLOSE_QUEUE_ORPHAN: by the closer of its dead owner. */
enum {
  MBX__CLOSE_OWNER,
  MBX__CLOSE_OUTSIDE,
  MBX__CLOSE_ORPHAN,
  MBX__CLOSE_QUEUE,
  MBX__CLOSE_QUEUE_ORPHAN
};
enum { MBX__CLOSING_DRAIN, MBX__CLOSING_FINISH, MBX__CLOSING_DONE };

/* One close in progress on the calling thread (on its stack; the closes a
 * thread has in progress are chained through `outer`, innermost first). */
typedef struct mbx__closing {
  mbx__record *r;
  mbx_handle h;  /* the life being closed */
  int kind;      /* MBX__CLOSE_* */
  int reason;    /* MBX_CANCEL_* for the cancel functions */
  int phase;     /* MBX__CLOSING_*: how far it got, for a resume */
  int count;     /* canceled or dropped so far */
  int rc;        /* what the close returns */
  int from_dead; /* took the queue from an owner dead inside a pop */
  int lost;      /* consumed by that owner and never counted */
  int won_a;     /* cleared OPEN itself: reports the close (layers_closed) */
  int pinned;    /* an owner's take-over pins its life (closing_take_over) */
  struct mbx__closing *outer;
} mbx__closing;

/* Steps A and B and the consumer token for h's life (contract in
 * core/closing.c). */
int mbx__closing_begin(mbx__closing *c, mbx__record *r, mbx_handle h, int kind,
                       int reason);
/* Steps C to E, from wherever c stopped. */
void mbx__closing_complete(mbx__closing *c);
/* Finish every close in progress on the calling thread (a cancel function
 * called exit()). */
void mbx__closing_complete_all(void);
/* The owner's part after its queue: layers' state, unbind, step E; pinned:
 * the caller holds the life. */
void mbx__owner_unbind(mbx__closing *c, int pinned);
/* Step E for a dead owner or a queue's owner: MBX_EINVAL if the owner
 * released its hold itself (misuse), else rc. */
int mbx__orphan_release(mbx__record *r, mbx_handle h, int rc);

/* ---- core/drain.c, for core/owned.c: drains of a given record */
/* mbx_poll and mbx__wait on r, which the calling thread drains. */
int mbx__poll_record(mbx__record *r, int nested_ok);
int mbx__wait_record(mbx__record *r, double timeout_ms, int flags);

/* ---- core/owned.c: queues of one's own (<mbx/queue.h>) */
/* Close every queue the life of automatic record self owns, with reason:
 * on the owner at its exit, or on the closer of its dead owner
 * (owner_dead). Part of that close's step C, so resumable: each queue
 * leaves the owner's list before it is closed. */
void mbx__queues_close(mbx__record *self, int reason, int owner_dead);

/* Close h's life, a queue of one's own (record r), whose owner's hold the
 * caller has (its owner, or the closer of its dead owner: owner_dead):
 * steps A to E through the same resumable close, with cancellation
 * disabled. Returns the number canceled or dropped (0 if a close from
 * outside got there first), or MBX_EBUSY (a dead owner stopped inside a
 * pop: the queue is abandoned, the life still retired). */
int mbx__queue_close_life(mbx__record *r, mbx_handle h, int reason,
                          int owner_dead);

/* ---- core/layer.c */
/* Call the layers' on_close (owner, before its queue is canceled); hand
 * r's layer slots to their on_exit (owner; r NULL: the owner's life was
 * taken over, on_exit gets NULL) or on_orphan hooks: each slot goes to
 * exactly one of the two. */
void mbx__layers_close(mbx__record *r);
void mbx__layers_exit(mbx__record *r);
/* popped: MBX__POPPED(r) as the orphan closer found it (trusted only if
 * the closer took the token), or NULL. */
void mbx__layers_orphan(mbx__record *r, mbx__node *popped);
/* Every registered close hook, for the closed life h (exactly once per
 * life: see mbx__closing_complete in closing.c). */
void mbx__layers_closed(mbx_handle h, int reason);
void mbx__layers_allocator_change(void);

/* ---- core/nodes.c */
/* The thread draining r releases a consumed node (r's stub, which a pop
 * also returns, stays); releases are batched in r until
 * mbx__node_release_flush (end of drain, close, thread exit). */
void mbx__node_release(mbx__record *r, mbx__node *n);
void mbx__node_release_flush(mbx__record *r);
/* Give back the rest of the calling thread's current block (the thread is
 * exiting or closing its mailbox). */
void mbx__node_cache_flush(void);
/* Free the parked blocks (the allocator is being replaced). */
void mbx__node_parked_free(void);

/* ---- core/stats.c: the core's own counters, the first of the pool */
enum {
  MBX__STAT_REJ_CLOSED,
  MBX__STAT_REJ_STALE,
  MBX__STAT_REJ_INVALID,
  MBX__STAT_REJ_NOMEM,
  MBX__STAT_REJ_FULL,
  MBX__STAT_NODE_SLOTS_ALLOC, /* node slots in blocks obtained */
  MBX__STAT_NODE_SLOTS_FREE,  /* node slots in blocks returned */
  MBX__STAT_NODE_BYTES_ALLOC, /* bytes of blocks obtained */
  MBX__STAT_NODE_BYTES_FREE,  /* bytes of blocks returned */
  MBX__STAT_WAKEUP,
  MBX__STAT_CORE_COUNT
};
/* Fold an ended life's counters into the totals (registry lock held). */
void mbx__stats_fold(mbx__record *r);
/* The closer that drained r: lost messages a dead owner popped and never
 * counted (neither run nor canceled), to mbx_stats.abandoned. */
void mbx__stats_abandon(mbx__record *r, int32_t lost);

/* Relaxed single-writer increment: cheaper than an RMW, race-free for
 * readers because the counter is atomic. */
static inline void mbx__counter_bump(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

#endif
