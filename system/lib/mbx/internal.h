/* Internal layout shared by the core's translation units. Not installed. */
#ifndef MBX_INTERNAL_H
#define MBX_INTERNAL_H

#include <mbx/mailbox.h>
#include <stdatomic.h>
#include <stdint.h>

/* One queued message: an intrusive node of the MPSC queue, carved from a
 * block of nodes (alloc.c). */
typedef struct mbx_node {
  _Atomic(struct mbx_node *) next;
  mbx_run_fn run;
  mbx_cancel_fn cancel;
  void *arg;
  struct mbx_node_block *block;
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
 *
 * Two cache lines, split by who writes them per message: senders (gate,
 * tail, pending) and the owner (consumer token, head, counters). On one line
 * every send and every pop would steal it from the other side: profiles
 * showed the owner's token CAS and the senders' gate RMW each stalling on
 * that line. On wasm32 each half fits one 64-byte line (128 bytes in all).
 */
#define MBX_CACHE_LINE 64
typedef struct mbx_record {
  /* ---- written by senders */
  _Atomic uint64_t gate;
  /* Accepted and not yet consumed; also the futex word owners sleep on and
   * the JS event loop waits on. May dip to -1 briefly (a message popped
   * before its sender counted it). */
  _Atomic int32_t pending;
  /* How a sender that takes pending from 0 must notify the owner: one of
   * MBX_WAITING_* (the owner sleeps on pending, or its JS loop waits). */
  _Atomic int32_t waiting;
  _Atomic(mbx_node *) tail;  /* producers exchange here */
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
  _Atomic uint32_t bound;   /* 1 while a thread owns it */
  uint32_t quarantine_next; /* index + 1 of the next record; registry lock */
  /* The owner's proxy-layer state (proxy.c), so that the closer of an
   * orphan (a killed worker) can cancel the proxied work the dead thread
   * was running or left unfinished. Written by the owner; taken by the
   * orphan closer or cleared at the owner's exit; reset at reuse. */
  _Atomic(void *) owner_proxy;
  /* Counters of the current life; folded into the global totals at reuse. */
  _Atomic uint64_t canceled; /* single writer: whoever drains at close */

  /* ---- written by the owner (the drainer) */
  /* Who may pop the queue right now: MBX_CONSUMER_*. The owner claims it
   * around each pop only (not while a handler runs), so a closer from
   * outside (runtime exit, a dead owner) can take the queue over. */
  _Alignas(MBX_CACHE_LINE) _Atomic int32_t consumer;
  int32_t consumed_unflushed; /* popped, not yet subtracted: token holder */
  /* Popped by the owner, not yet added to `run` (folded at every flush, by
   * whoever holds the token): one counter store per drain, not per message
   * (every atomic store is a full-barrier exchange in wasm). */
  int32_t run_unflushed;
  mbx_node *head; /* owner only */
  /* Most messages pending at once, as seen by the drainer just before it
   * subtracts (pending only grows in between); stats add the current value. */
  _Atomic uint32_t high_water;
  /* Owner only: consumed nodes of one block not yet dropped from its count
   * (batched: consecutive nodes usually share a block). */
  uint32_t release_count;
  struct mbx_node_block *release_block;
  mbx_node stub;            /* queue sentinel */
  _Atomic uint64_t run;     /* single writer: the token holder */
  _Atomic uint64_t dropped; /* single writer: whoever drains at close */
} mbx_record;
_Static_assert(sizeof(void *) == 8 || sizeof(mbx_record) == 2 * MBX_CACHE_LINE,
               "a wasm32 record is two cache lines");

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

/* Owner: publish the proxy-layer state of the calling thread's mailbox
 * (see mbx_record.owner_proxy). */
void mbx__self_set_owner_proxy(void *state);
/* proxy.c: free the calling thread's cached call record. */
void mbx__proxy_cache_flush(void);
/* proxy.c: cancel what a dead owner's proxy state still holds, then free
 * it. Called by the closer of an orphan. */
void mbx__proxy_orphaned(void *state);

/* ---- spin.c */
/* Poll *word while it equals value, for up to this thread's adaptive spin
 * budget (and at most remaining_ms if >= 0). Returns 1 if it changed, 0 if
 * the caller should go to sleep. */
int mbx__spin_while_equal(_Atomic int32_t *word, int32_t value,
                          double remaining_ms);
/* The same while low <= *word <= high. */
int mbx__spin_while_between(_Atomic int32_t *word, int32_t low, int32_t high,
                            double remaining_ms);
/* Call after the sleep that followed a spin returning 0: adapts the budget
 * to how long the answer actually took. */
void mbx__spin_slept(void);

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

/* The thread created for h could not bind it (closed from outside first):
 * drop the owner's hold it would have released at exit. Returns MBX_OK,
 * or MBX_EINVAL/MBX_ESTALE if h's life is open, already unowned or gone. */
int mbx__release_unbound_owner(mbx_handle h);

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
/* mbx_send with a node the caller allocated (mbx__node_alloc) and filled.
 * On failure the node is still the caller's (nothing is freed).
 * check_capacity 0 ignores the soft capacity (replies to a blocked caller). */
int mbx__send_node(mbx_handle to, mbx_node *n, int check_capacity);
/* 1 if the calling thread owns a mailbox that is still open. */
int mbx__self_open(void);
/* mbx_wait with flags: MBX__WAIT_NESTED_OK also allows it from inside a
 * handler, for blocked proxy callers that keep serving their mailbox;
 * MBX__WAIT_NO_SPIN skips the spin before sleeping, for a caller that has
 * just spun (its spin's verdict then covers this sleep, mbx__spin_slept). */
enum { MBX__WAIT_NESTED_OK = 1, MBX__WAIT_NO_SPIN = 2 };
int mbx__wait(double timeout_ms, int flags);
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

/* ---- proxy.c */
/* Called by mbx__thread_exit on the exiting thread, after its queue was
 * canceled: cancels the proxied contexts it left outstanding. */
void mbx__proxy_thread_exiting(void);

/* ---- alloc.c */
void *mbx__alloc(size_t size);
void mbx__free(void *ptr);
/* Message nodes: a sender carves them from its thread's current block;
 * whoever consumes a node releases it (the block goes back to the allocator
 * when its last node is released). */
mbx_node *mbx__node_alloc(void);
/* Release a node that was never queued, or could not be. */
void mbx__node_free(mbx_node *n);
/* The thread draining r releases a consumed node; releases are batched in
 * r until mbx__node_release_flush (end of drain, close, thread exit). */
void mbx__node_release(mbx_record *r, mbx_node *n);
void mbx__node_release_flush(mbx_record *r);
/* Give back the rest of the calling thread's current block (the thread is
 * exiting or closing its mailbox). */
void mbx__node_cache_flush(void);

/* Process-wide counters, sharded by thread to keep senders off each other's
 * cache lines. */
enum {
  MBX_STAT_SENT,
  MBX_STAT_REJ_CLOSED,
  MBX_STAT_REJ_STALE,
  MBX_STAT_REJ_INVALID,
  MBX_STAT_REJ_NOMEM,
  MBX_STAT_REJ_FULL,
  MBX_STAT_NODE_FREE,        /* nodes whose message was consumed (nodes given to
                                messages are MBX_STAT_SENT) */
  MBX_STAT_NODE_SLOTS_ALLOC, /* node slots in blocks obtained */
  MBX_STAT_NODE_SLOTS_FREE,  /* node slots in blocks returned */
  MBX_STAT_NODE_BYTES_ALLOC, /* bytes of blocks obtained */
  MBX_STAT_NODE_BYTES_FREE,  /* bytes of blocks returned */
  MBX_STAT_WAKEUP,
  /* proxy.c (mbx_proxy_stats); calls live = NEW - FREED */
  MBX_STAT_PROXY_CALLS_NEW,
  MBX_STAT_PROXY_CALLS_FREED,
  MBX_STAT_PROXY_SYNC_DONE,
  MBX_STAT_PROXY_SYNC_CANCELED,
  MBX_STAT_PROXY_SYNC_TIMED_OUT,
  MBX_STAT_PROXY_ABANDONED,
  MBX_STAT_PROXY_CONTEXTS_CANCELED,
  MBX_STAT_PROXY_CALLBACKS_DONE,
  MBX_STAT_PROXY_CALLBACKS_CANCELED,
  MBX_STAT_PROXY_CALLBACKS_DROPPED,
  MBX_STAT_PROXY_REPLIES_SKIPPED,
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
