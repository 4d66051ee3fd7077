/*
 * The core's interface to the layers above it (proxy/, pthread/, anything
 * new): the one internal header they include. The record's layout and the
 * gate word stay private to the core (core/record.h); an upper layer gets
 * what it needs through these functions, and the core calls it back only
 * through the hooks it registers here.
 */
#ifndef MBX__LAYER_H
#define MBX__LAYER_H

#include "../platform/platform.h"
#include "invariant.h"
#include "lock.h"

#include <mbx/mailbox.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- memory (core/alloc.c, core/nodes.c) */

/* Through the allocator of mbx_set_allocator. */
void *mbx__alloc(size_t size);
void mbx__free(void *ptr);
/* For per-thread state that may outlive an mbx_set_allocator (freed at its
 * thread's exit): the block remembers its allocator, and mbx__free_kept
 * frees it with that one. It takes whole cache lines, shared with no other
 * allocation: these objects are what threads share per message. */
void *mbx__alloc_kept(size_t size);
void mbx__free_kept(void *ptr);
/* What mbx__alloc_kept(size) takes from the allocator (for the figures). */
size_t mbx__kept_bytes(size_t size);

/* A few freed objects of one kind (mbx__alloc_kept blocks), kept for the
 * next thread that needs one instead of going back to the allocator: a
 * sender and its receiver that allocate on one side and free on the other
 * otherwise both take dlmalloc's one lock, and profiles showed them in
 * futex waits on it (node blocks: a 2-producer flood; call records: a
 * round trip whose target dropped the last reference). Taking is an
 * exchange and putting a CAS from empty, so there is no ABA. */
#define MBX__STASH_SLOTS 4
typedef struct mbx__stash {
  _Atomic(void *) slot[MBX__STASH_SLOTS];
} mbx__stash;
/* Keep p: returns 1, or 0 if every slot is taken (p is still the
 * caller's). Any thread. */
int mbx__stash_put(mbx__stash *s, void *p);
/* A kept object, or NULL. Any thread. */
void *mbx__stash_take(mbx__stash *s);

/* One queued message: an intrusive node of the MPSC queue (core/queue.h),
 * carved from a block of nodes (core/nodes.c). Upper layers fill run,
 * cancel and arg of a node they allocated and send it with mbx__send_node.
 * Once queued, a node holds the payload of the message queued after it
 * (core/queue.h says why). */
typedef struct mbx__node {
  /* NULL whenever the node is in no queue (core/nodes.c) */
  _Atomic(struct mbx__node *) next;
  mbx_run_fn run;
  mbx_cancel_fn cancel;
  void *arg;
  union {
    /* A node's block: written once, when the block is made. */
    struct mbx__node_block *block;
    /* A record's stub, which has no block: MBX__POPPED (core/record.h). */
    struct mbx__node *popped;
  } u;
} mbx__node;

mbx__node *mbx__node_alloc(void);
/* Release a node that was never queued, or could not be. */
void mbx__node_free(mbx__node *n);

/* ---- sending and waking (core/send.c, core/drain.c) */

/* mbx_send with a node the caller allocated (mbx__node_alloc) and filled.
 * On failure the node is still the caller's (nothing is freed).
 * check_capacity 0 ignores the soft capacity (replies to a blocked caller). */
int mbx__send_node(mbx_handle to, mbx__node *n, int check_capacity);
/* Wake whoever sleeps on h's mailbox (mbx__wait, Atomics.waitAsync), so it
 * re-checks its state. Any thread; a stray wake is harmless (records are
 * never freed). */
void mbx__mailbox_wake(mbx_handle h);

/* ---- the calling thread's mailbox (core/drain.c, core/lifecycle.c,
 * core/closing.c) */

/* 1 if the calling thread owns a mailbox that is still open. */
int mbx__self_open(void);
/* 1 if h is an open queue (<mbx/queue.h>) the calling thread owns. */
int mbx__queue_is_own(mbx_handle h);
/* 1 if h names a queue's life (<mbx/queue.h>), not a thread's mailbox:
 * layers that address threads (broadcast) skip it. Any thread. */
int mbx__is_queue(mbx_handle h);
/* A layer's run function has taken over the message the calling thread
 * just popped (it is on the layer's own books, which the orphan closer
 * hands to on_orphan): the core stops reporting it as popped. */
void mbx__self_popped_clear(void);
/* mbx_wait with flags: MBX__WAIT_NESTED_OK also allows it from inside a
 * handler, for blocked proxy callers that keep serving their mailbox;
 * MBX__WAIT_NO_SPIN skips the spin before sleeping, for a caller that has
 * just spun (its spin's verdict then covers this sleep, mbx__spin_slept);
 * MBX__WAIT_CANCELABLE acts on a pending pthread_cancel while asleep
 * (mbx_wait), restoring the thread's drain state as it unwinds;
 * MBX__WAIT_LINGER (mbx_wait, mbx_queue_wait: a receiver of a stream, not a
 * caller waiting for its reply) spins briefly for the next message before
 * it ends a drain (core/drain.c, mbx__run_pending). */
/* How long a blocking call that is a cancellation point may sleep before
 * it calls pthread_testcancel: remaining_ms (< 0: forever), capped at
 * 100 ms while the calling thread has cancellation enabled. */
double mbx__cancel_slice_ms(double remaining_ms);
enum {
  MBX__WAIT_NESTED_OK = 1,
  MBX__WAIT_NO_SPIN = 2,
  MBX__WAIT_CANCELABLE = 4,
  MBX__WAIT_LINGER = 8
};
int mbx__wait(double timeout_ms, int flags);
/* mbx_thread_exit, but also allowed from inside a handler (nested_ok), for
 * the pthread exit hook. */
int mbx__thread_exit(int reason, int nested_ok);

/* Event-loop delivery (Emscripten): the calling thread's pending word (the
 * word Atomics.waitAsync waits on while it is 0), or NULL if the thread has
 * no mailbox; and how senders must notify it (MBX__WAITING_*). */
enum {
  MBX__WAITING_NONE = 0,
  MBX__WAITING_WAKE = 1, /* futex / Atomics.waitAsync on pending */
  MBX__WAITING_POST = 2, /* event loop without waitAsync: post_wake_hook */
};
_Atomic int32_t *mbx__self_pending_word(void);
void mbx__self_set_waiting(int32_t mode);
/* mbx_poll, but up to max (> 0) messages whatever was pending at entry,
 * as long as any are linked: an event-loop drain that gives the event loop
 * back at a time budget (pthread/event_loop.c). */
int mbx__poll_at_most(int32_t max);
/* Called by a sender, inside the gate (the owner cannot finish closing
 * meanwhile), when it makes pending leave 0 and the owner is in
 * MBX__WAITING_POST mode. Set once, before any owner enters that mode. */
typedef void (*mbx__post_wake_fn)(uintptr_t owner_pthread);
void mbx__set_post_wake_hook(mbx__post_wake_fn hook);

/* ---- records seen from outside their owner (core/table.c, lifecycle.c) */

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
/* Close h's life from outside its owner (runtime exit): after this no send
 * succeeds; queued messages are canceled on the calling thread with reason
 * once the owner is between pops. The owner keeps running and still
 * releases its own hold when it exits. Returns the number canceled or
 * dropped, MBX_ECLOSED/MBX_ESTALE (already closed or gone), MBX_EBUSY (the
 * owner did not leave a pop within 1 s: the queue is left as it is, still
 * counted as pending, and the owner's exit, or the orphan's closer if it
 * is dead, cancels it). */
int mbx__close_from_outside(mbx_handle h, int reason);

/* fork() handlers (core/table.c), registered with pthread_atfork by the
 * pthread layer: the registry lock is held across the fork, and the child
 * keeps only the forking thread's mailbox, open and empty (policy:
 * <mbx/thread.h>). */
void mbx__fork_prepare(void);
void mbx__fork_parent(void);
void mbx__fork_child(void);

/* ---- layers: per-life state and hooks (core/layer.c) */

/* What the core calls back in a layer. Any hook may be NULL. */
typedef struct mbx__layer_hooks {
  /* On the owner as it exits (mbx__thread_exit), after its mailbox was
   * closed and before its queue is canceled: work the layer reports as
   * done must be settled as canceled now, so that no cancel function can
   * report it done (issue 18 item 4). */
  void (*on_close)(void);
  /* On the owner as it exits, after its queue was canceled; slot is what
   * the layer stored for this life, or NULL if it stored nothing or an
   * orphan closer (called on a live owner: misuse) took it. */
  void (*on_exit)(void *slot);
  /* On the closer of an orphan (a dead owner, mbx_mailbox_close_orphan),
   * before its queue is canceled, with the slot the owner stored (or NULL)
   * and the message the owner popped but whose run function had not yet
   * taken it over (mbx__self_popped_clear), or NULL run: the owner died in
   * between (issue 18 item 22b). Called if either is non-NULL. */
  void (*on_orphan)(void *slot, mbx_run_fn popped_run, void *popped_arg);
  /* On the thread calling mbx_set_allocator, before the allocator is
   * replaced: give back what the calling thread caches from it. */
  void (*on_allocator_change)(void);
} mbx__layer_hooks;
/* Register a layer (once per process; hooks must stay valid forever).
 * Returns its layer id (>= 0), or MBX_ENOMEM if every slot is taken. */
int mbx__layer_register(const mbx__layer_hooks *hooks);
/* Owner: store layer's per-life state in the calling thread's mailbox (no
 * effect without one). The core hands it to on_exit or on_orphan exactly
 * once and forgets it; reuse starts the next life with NULL. */
void mbx__self_layer_set(int layer, void *state);

/* A function called once per closed mailbox life, on the thread that
 * closed it (the owner at its exit, the closer from outside at runtime
 * exit, or the closer of an orphan), after its queue was canceled and the
 * layers' on_exit/on_orphan ran; h names the closed life. For layers that
 * watch mailboxes (lifecycle/). Register once per process (hooks stay
 * forever). Returns MBX_OK, or MBX_ENOMEM when every slot is taken. */
typedef void (*mbx__close_hook_fn)(mbx_handle h, int reason);
int mbx__close_hook_register(mbx__close_hook_fn fn);

/* ---- counters (core/stats.c) */

/* Process-wide counters, sharded by thread to keep threads off each other's
 * cache lines. A layer claims n consecutive counters once and gets the id
 * of the first (or MBX_ENOMEM when the pool is used up). */
int mbx__counters_claim(int n);
void mbx__counter_add(int id, uint64_t n);
uint64_t mbx__counter_sum(int id);

/* ---- spinning before a futex sleep (core/spin.c) */

/* Poll *word while it equals value, for up to this thread's adaptive spin
 * budget (and at most remaining_ms if >= 0). Returns 1 if it changed, 0 if
 * the caller should go to sleep. */
int mbx__spin_while_equal(_Atomic int32_t *word, int32_t value,
                          double remaining_ms);
/* The same while low <= *word <= high. */
int mbx__spin_while_between(_Atomic int32_t *word, int32_t low, int32_t high,
                            double remaining_ms);
/* The same while *link is NULL (a queue's head link, core/wait.c). */
int mbx__spin_while_null(_Atomic(mbx__node *) *link, double remaining_ms);
/* Poll *link while it is NULL, at most polls times, outside the adaptive
 * budget: for a partner a few instructions from its store. Returns 1 if a
 * node is linked. */
int mbx__spin_briefly_while_null(_Atomic(mbx__node *) *link, int polls);
/* Call after the sleep that followed a spin returning 0: adapts the budget
 * to how long the answer actually took. */
void mbx__spin_slept(void);
/* Test hooks' sleep (core/test_hooks.c, also the proxy layer's): ms
 * milliseconds on a futex nobody wakes. */
void mbx__test_sleep_ms(double ms);

#endif
