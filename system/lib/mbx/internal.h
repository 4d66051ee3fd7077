/* Internal layout shared by the core's translation units. Not installed. */
#ifndef MBX_INTERNAL_H
#define MBX_INTERNAL_H

#include <mbx/mailbox.h>
#include <stdatomic.h>
#include <stdint.h>

/* One queued message: an intrusive node of the MPSC queue. */
typedef struct mbx_node {
  _Atomic(struct mbx_node *) next;
  mbx_run_fn run;
  mbx_cancel_fn cancel;
  void *arg;
} mbx_node;

/*
 * The gate word packs everything a sender must check atomically:
 *   bits 63..32  generation (0 = never opened; bumped at every reuse)
 *   bit  31      OPEN
 *   bit  30      OWNER: the owner's hold, released by its exit (kept apart
 *                from counted holds so a stray mbx_release cannot drop it)
 *   bits 29..16  mbx_hold() holds
 *   bits 15..0   senders past the gate check and not yet done
 * A record is retired when OPEN, OWNER and the hold count are all clear.
 */
#define GATE_INFLIGHT_ONE 1ull
#define GATE_INFLIGHT_MASK 0xffffull
#define GATE_HOLD_ONE (1ull << 16)
#define GATE_HOLD_MASK (0x3fffull << 16)
#define GATE_OWNER (1ull << 30)
#define GATE_OPEN (1ull << 31)
#define GATE_GEN_SHIFT 32

static inline uint32_t gate_gen(uint64_t gate) {
  return (uint32_t)(gate >> GATE_GEN_SHIFT);
}
static inline uint32_t gate_holds(uint64_t gate) {
  return (uint32_t)((gate & GATE_HOLD_MASK) >> 16);
}

/*
 * A thread record. Records are allocated in chunks that are never freed, so
 * any index below the published record count names readable memory forever;
 * the generation in the gate decides whether a handle still names the life
 * it was made for. Keep this small: it is what a retired thread costs.
 */
typedef struct mbx_record {
  _Atomic uint64_t gate;
  /* Accepted and not yet consumed; also the futex word owners sleep on and
   * the JS event loop waits on. May dip to -1 briefly (a message popped
   * before its sender counted it). */
  _Atomic int32_t pending;
  /* How a sender that takes pending from 0 must notify the owner: one of
   * MBX_WAITING_* (the owner sleeps on pending, or its JS loop waits). */
  _Atomic int32_t waiting;
  /* Who may pop the queue right now: MBX_CONSUMER_*. The owner claims it
   * around each pop only (not while a handler runs), so a closer from
   * outside (runtime exit, a dead owner) can take the queue over. */
  _Atomic int32_t consumer;
  _Atomic uint32_t capacity;   /* 0 = unbounded */
  _Atomic uint32_t bound;      /* 1 while a thread owns it */
  _Atomic(mbx_node *) tail;    /* producers exchange here */
  mbx_node *head;              /* owner only */
  uint32_t index;              /* immutable after chunk creation */
  uint32_t quarantine_next;    /* index + 1 of the next record; registry lock */
  int32_t consumed_unflushed;  /* owner only: popped, not yet subtracted */
  _Atomic uint32_t high_water; /* CAS-max by senders */
  mbx_node stub;               /* queue sentinel */
  /* Counters of the current life; folded into the global totals at reuse. */
  _Atomic uint64_t run;      /* single writer: the owner */
  _Atomic uint64_t canceled; /* single writer: whoever drains at close */
  _Atomic uint64_t dropped;  /* single writer: whoever drains at close */
  _Atomic uint32_t rejected_closed;
  _Atomic uint32_t rejected_full;
  /* pthread_t of the thread this life was created for (0 if none), for
   * mbx_thread_handle(). Written by the creator under its hold and by the
   * thread at bind (the same value); reset at reuse. */
  _Atomic uintptr_t pthread_id;
} mbx_record;

enum {
  MBX_WAITING_NONE = 0,
  MBX_WAITING_WAKE = 1, /* futex / Atomics.waitAsync on pending */
  MBX_WAITING_POST = 2, /* event loop without waitAsync: post_wake_hook */
};
enum {
  MBX_CONSUMER_FREE = 0,
  MBX_CONSUMER_OWNER = 1,  /* the owner is inside a pop */
  MBX_CONSUMER_CLOSER = 2, /* the closer of this life drains it; final */
};

/* ---- record.c */
/* Resolve a handle to its record without trusting any of its bits. Returns
 * MBX_OK and *out, or MBX_EINVAL for null/out-of-range/forged handles. The
 * generation is NOT checked here (callers check it against the gate). */
int mbx__lookup(mbx_handle h, mbx_record **out);
static inline uint32_t handle_gen(mbx_handle h) {
  return (uint32_t)(h.bits >> 32);
}
static inline mbx_handle make_handle(uint32_t index, uint32_t gen) {
  mbx_handle h = {((uint64_t)gen << 32) | (uint64_t)(index + 1)};
  return h;
}
/* Classify a generation mismatch: a generation newer than the record's
 * current one can only come from a forged handle. */
static inline int gen_mismatch_code(uint32_t handle_generation,
                                    uint32_t record_generation) {
  return (int32_t)(handle_generation - record_generation) > 0 ? MBX_EINVAL
                                                              : MBX_ESTALE;
}
/* Why a gate snapshot refuses an operation through handle generation gen
 * (a send, a hold, a capacity change): MBX_OK if gen's life is open. */
static inline int gate_refusal(uint64_t gate, uint32_t gen) {
  if (gate_gen(gate) != gen)
    return gen_mismatch_code(gen, gate_gen(gate));
  if (!(gate & GATE_OPEN))
    return MBX_ECLOSED;
  return MBX_OK;
}
/* Allocate (or reuse from quarantine) a record, open it with one hold. */
int mbx__record_open(mbx_record **out, uint32_t *gen_out);
/* Drop the owner's hold (closed records only); retire if nothing else holds
 * the record. */
void mbx__record_release_owner(mbx_record *r);

/* Remember which pthread a life belongs to. Returns MBX_OK, or the gate
 * refusal if h no longer names an open life. */
int mbx__record_set_pthread(mbx_handle h, uintptr_t id);
/* Handle of the open life created for pthread id, or the null handle. */
mbx_handle mbx__handle_of_pthread(uintptr_t id);
/* Number of records ever published; indexes below it are valid. */
uint32_t mbx__record_count(void);
/* Handle of record index's current life if it is open, else null. */
mbx_handle mbx__open_life_at(uint32_t index);

/* ---- mailbox.c */
/* mbx_thread_exit, but also allowed from inside a handler (nested_ok), for
 * the pthread exit hook. */
int mbx__thread_exit(int reason, int nested_ok);

/* Close h's life from outside its owner (runtime exit): after this no send
 * succeeds; queued messages are canceled on the calling thread with reason
 * once the owner is between pops. The owner keeps running and still
 * releases its own hold when it exits. Returns the number canceled or
 * dropped, MBX_ECLOSED/MBX_ESTALE (already closed or gone), MBX_EBUSY (the
 * owner did not leave a pop within the bound: it is dead mid-pop, and its
 * queue is left as it is). */
int mbx__close_from_outside(mbx_handle h, int reason);

/* Event-loop delivery (Emscripten): the calling thread's pending word, or
 * NULL; and its notification mode (MBX_WAITING_*). */
_Atomic int32_t *mbx__self_pending_word(void);
void mbx__self_set_waiting(int32_t mode);
/* Called by a sender, inside the gate (the owner cannot finish closing
 * meanwhile), when it makes pending leave 0 and the owner is in
 * MBX_WAITING_POST mode. Set once, before any owner enters that mode. */
typedef void (*mbx_post_wake_fn)(uintptr_t owner_pthread);
void mbx__set_post_wake_hook(mbx_post_wake_fn hook);

/* ---- alloc.c */
void *mbx__alloc(size_t size);
void mbx__free(void *ptr);
mbx_node *mbx__node_alloc(void);
void mbx__node_free(mbx_node *n);

/* Process-wide counters, sharded by thread to keep senders off each other's
 * cache lines. */
enum {
  MBX_STAT_SENT,
  MBX_STAT_REJ_CLOSED,
  MBX_STAT_REJ_STALE,
  MBX_STAT_REJ_INVALID,
  MBX_STAT_REJ_NOMEM,
  MBX_STAT_REJ_FULL,
  MBX_STAT_NODE_ALLOC,
  MBX_STAT_NODE_FREE,
  MBX_STAT_WAKEUP,
  MBX_STAT_COUNT
};
void mbx__stat_add(int which, uint64_t n);
uint64_t mbx__stat_sum(int which);

/* Relaxed single-writer increment: cheaper than an RMW, race-free for
 * readers because the counter is atomic. */
static inline void counter_bump(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

#endif
