/*
 * mbx: per-thread mailboxes for Emscripten pthreads (and native pthreads).
 *
 * Every participating thread owns one mailbox. Any thread may send a message
 * (run function, cancel function, argument) to a mailbox through a handle.
 * The owner runs messages when it polls, waits, or (on Emscripten) when its
 * JS event loop is woken. When the owner exits, its mailbox closes in one
 * atomic step and every message still queued gets its cancel function called
 * on the owner thread. See docs/design.md for the state machines and memory
 * orders.
 *
 * The send contract: mbx_send() either returns MBX_OK, and then exactly one of
 * run or cancel is called exactly once, or returns a negative MBX_E* code and
 * calls nothing, so the caller still owns the argument.
 *
 * Thread safety: every function may be called from any thread unless its
 * comment says "owner only" (the thread bound to the mailbox).
 *
 * Cancellation points (pthread_cancel with the default deferred type):
 * exactly mbx_wait(), mbx_queue_wait() (<mbx/queue.h>) and the blocking
 * calls of <mbx/proxy.h>
 * (mbx_proxy_sync, mbx_proxy_sync_timed, mbx_proxy_sync_with_ctx, while
 * they wait). No other function of the library is one; in particular
 * mbx_poll() and mbx_send() are not. Handlers run by mbx_poll/mbx_wait may
 * reach cancellation points of their own: a thread canceled inside one
 * counts that message as run. Cancel functions run with cancellation
 * disabled (see mbx_cancel_fn). Where a call of the library could meet a
 * cancellation point of the system's (on Emscripten 5.x a futex wait is
 * one: the allocator's under ASan, or a user's allocator), it holds off
 * cancellation: under its locks, and while a send is counted but not yet
 * queued. A pending cancel then acts at the thread's next point.
 */
#ifndef MBX_MAILBOX_H
#define MBX_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. All errors are negative; MBX_OK is zero. */
enum {
  MBX_OK = 0,
  MBX_ECLOSED = -1,   /* target mailbox is closed: its thread is exiting or
                         has exited (record not yet recycled) */
  MBX_ESTALE = -2,    /* handle names an earlier life of a recycled record:
                         that thread exited long ago */
  MBX_EINVAL = -3,    /* null or forged handle, null run function, bad value */
  MBX_ENOMEM = -4,    /* allocation failed; nothing was queued */
  MBX_EFULL = -5,     /* mailbox holds its capacity of pending messages */
  MBX_EBUSY = -6,     /* a drain is already running on this thread
                         (nested poll/wait from inside a handler) */
  MBX_ETIMEDOUT = -7, /* wait timed out with nothing to run */
  MBX_EPERM = -8,     /* calling thread is not the mailbox owner, or has no
                         mailbox */
  MBX_EAGAIN = -9,    /* too many holds on one record (limit MBX_MAX_HOLDS) */
  /* Proxying (mbx/proxy.h): */
  MBX_ECANCELED = -10,   /* accepted, but the target exited (or was canceled)
                            before the work completed */
  MBX_EDEADLK = -11,     /* a blocking call would wait for its own thread */
  MBX_EWOULDBLOCK = -12, /* the calling thread must not block (the browser's
                            main thread) */
};

/* Why a cancel function is being called. */
enum {
  MBX_CANCEL_THREAD_EXIT = 1,   /* owner is exiting; called on the owner */
  MBX_CANCEL_ABNORMAL_EXIT = 2, /* owner died without running its exit path
                                   (worker terminated); called on another
                                   thread */
  MBX_CANCEL_RUNTIME_EXIT = 3,  /* the program is exiting */
};

#define MBX_MAX_HOLDS 16383u

/*
 * A handle names (record, generation). It is a plain value: copy it freely,
 * keep it forever. It never points at freed memory; a handle whose thread has
 * exited is rejected with MBX_ECLOSED or MBX_ESTALE. The all-zero handle is
 * the null handle.
 */
typedef struct mbx_handle {
  uint64_t bits;
} mbx_handle;

#define MBX_NULL_HANDLE ((mbx_handle){0})

typedef void (*mbx_run_fn)(void *arg);
/* reason is one of MBX_CANCEL_*. Cancel functions should do trivial work
 * (set a flag, notify a waiter, free the argument): they may run with
 * arbitrary code on the stack during thread exit. They run with
 * cancellation disabled (pthread_setcancelstate), so a pthread_cancel
 * pending on the closing thread cannot unwind out of the close at a
 * cancellation point inside one (it is acted on after the close). A cancel
 * function that ends its thread (pthread_exit) or the process (exit())
 * does not strand the rest of the queue: the close is resumed on that
 * thread, from a cleanup handler or from the exit path, and every
 * remaining message is canceled before the thread or process goes. */
typedef void (*mbx_cancel_fn)(void *arg, int reason);

/* Human-readable name of a return code. Never returns NULL. */
const char *mbx_strerror(int code);

/* 1 if h is the null handle. */
static inline int mbx_handle_is_null(mbx_handle h) { return h.bits == 0; }
static inline int mbx_handle_equal(mbx_handle a, mbx_handle b) {
  return a.bits == b.bits;
}

/* ---------------------------------------------------------------- sending */

/*
 * Queue run(arg) on the mailbox named by `to`. Any thread.
 * cancel may be NULL: a message canceled at shutdown is then just dropped
 * (counted in mbx_stats.dropped).
 * Returns MBX_OK (exactly one of run/cancel will be called exactly once),
 * or, calling nothing: MBX_EINVAL (null/forged handle, run == NULL),
 * MBX_ECLOSED, MBX_ESTALE, MBX_EFULL, MBX_ENOMEM.
 */
int mbx_send(mbx_handle to, mbx_run_fn run, mbx_cancel_fn cancel, void *arg);

/* ---------------------------------------------------------------- receiving */

/*
 * Exceptions (C++ natively, or on Emscripten with -fexceptions): a handler
 * (run, or a proxied fn) that throws does not wedge the mailbox. The rule
 * is "propagate, and recover at the next drain": the exception leaves
 * mbx_poll/mbx_wait to their caller; the message counts as run (it was
 * popped and its handler called); the next mbx_poll/mbx_wait called from
 * the same frame as the unwound one, or an outer one, works normally (the
 * library sees that the recorded drain's frame no longer exists). A
 * proxied sync or callback fn that throws reports MBX_ECANCELED to its
 * caller (on_cancel for a callback) when the target thread exits at the
 * latest; its caller waits until then. The library's C code runs no
 * cleanup during the unwinding, so an event-loop thread's notification
 * mode may be lost if the exception escapes mbx_wait there: catch inside
 * the handler where that matters. Not on Emscripten without -fexceptions,
 * where a throw aborts the program.
 */

/*
 * Run the messages pending on the calling thread's mailbox: at most as many as
 * were pending on entry, so a handler that re-sends to its own thread cannot
 * make poll loop forever (such messages run on the next poll). Owner only.
 * This is also the entry point the JS event-loop delivery calls.
 * Returns the number of messages run (>= 0), MBX_EBUSY if called from inside
 * a handler, MBX_EPERM if the calling thread has no mailbox (also the
 * thread that ran the runtime exit, typically main, afterwards: its own
 * mailbox was closed and unbound there), MBX_ECLOSED if the mailbox was
 * closed from outside (runtime exit seen from another thread: the exiting
 * thread cancels what is queued).
 */
int mbx_poll(void);

/*
 * Block until at least one message is pending (or timeout_ms passes), then
 * run pending messages like mbx_poll, but at most the larger of 256 and the
 * number pending when it found one, messages that arrive meanwhile
 * included: a handler that re-sends to its own thread runs at most 256
 * times before mbx_wait returns. timeout_ms < 0 (or INFINITY, or NaN) waits
 * forever; any finite timeout, however large, is honoured. A cancellation
 * point (pthread_cancel): at entry, and while it sleeps (a cancel is acted
 * on within 100 ms: the sleep is cut into slices where the platform's futex
 * wait is not itself a cancellation point, which is Linux and Emscripten
 * 3.1.6). Canceled there, the thread unwinds with no
 * message taken and its drain state restored; its exit path (mbx::mbx's
 * pthread_create, or your own cleanup handler calling mbx_thread_exit)
 * then cancels what is queued.
 * Owner only. Returns the number run (>= 1), MBX_ETIMEDOUT, MBX_EBUSY,
 * MBX_EPERM, MBX_ECLOSED (closed from outside, as for mbx_poll).
 */
int mbx_wait(double timeout_ms);

/*
 * Whether the calling thread may spin before it sleeps in mbx_wait (and in
 * the blocking calls of <mbx/proxy.h>). On by default: before sleeping, a
 * waiter polls for a short, adaptive time (at most 50 microseconds, shrinking
 * while nothing arrives in it), which saves the sender a wake and the waiter
 * a reschedule when the partner answers quickly. An idle waiter spins at most
 * once per idle period. Turn it off on a thread that shares its core with its
 * partner. on = 0 turns it off, anything else on. Any thread, for itself.
 * Returns the previous setting (1 on, 0 off).
 */
int mbx_set_spinning(int on);

/* ---------------------------------------------------------------- mailboxes */

/*
 * Handle of the calling thread's mailbox, or the null handle if it has none.
 * Any thread.
 */
mbx_handle mbx_self(void);

/*
 * Create an open mailbox not yet bound to any thread. Messages sent to it
 * wait until a thread binds it with mbx_thread_bind(). The new record carries
 * one hold that belongs to its future owner and is released by
 * mbx_thread_exit(). Any thread.
 * Returns MBX_OK and *out, MBX_EINVAL (out == NULL), MBX_ENOMEM.
 */
int mbx_mailbox_create(mbx_handle *out);

/*
 * Make the calling thread the owner of a mailbox from mbx_mailbox_create().
 * Returns MBX_OK, MBX_EINVAL (null/forged handle, mailbox already bound, or
 * the calling thread already owns a mailbox), MBX_ECLOSED, MBX_ESTALE.
 */
int mbx_thread_bind(mbx_handle h);

/*
 * Create and bind a mailbox for the calling thread in one step (native
 * threads, and the main thread). Returns MBX_OK and *out (may be NULL),
 * MBX_EINVAL (already owns a mailbox), MBX_ENOMEM.
 */
int mbx_thread_attach(mbx_handle *out);

/*
 * Close the calling thread's mailbox and cancel what is queued: one atomic
 * close (after it no send succeeds), a wait for sends already past the check
 * to finish their few instructions, then every queued message's cancel(arg,
 * reason) on this thread, in queue order. Then releases the owner's hold and
 * unbinds the thread. Owner only. reason is an MBX_CANCEL_* value.
 * Returns the number of messages canceled or dropped (>= 0; 0 if a close
 * from outside, the runtime exit, canceled them), MBX_EPERM (no mailbox),
 * MBX_EBUSY (called from inside a handler), MBX_EINVAL (bad reason),
 * MBX_ECLOSED (mbx_mailbox_close_orphan was called on this live owner
 * (misuse): that call closed the mailbox and released the owner's hold;
 * the thread is unbound, and nothing is released twice).
 */
int mbx_thread_exit(int reason);

/*
 * Close a mailbox whose owner is known to be dead without having run
 * mbx_thread_exit() (e.g. its worker was terminated), or that was created but
 * never bound. Cancels queued messages on the calling thread with
 * MBX_CANCEL_ABNORMAL_EXIT, cancels proxied work (<mbx/proxy.h>) the owner
 * was running or left unfinished (its callers return MBX_ECANCELED; before
 * the queued messages, as at an owner's exit), and releases the owner's
 * hold. Must not be called while the owner may still run (its proxied
 * work's state is freed here). If it is, the owner's hold is still
 * released exactly once, by whichever of the two gets there first, and the
 * record is retired once: this call returns MBX_EINVAL if the owner's exit
 * released it first, and otherwise the owner's mbx_thread_exit returns
 * MBX_ECLOSED. A second call for the same life returns MBX_ECLOSED.
 * Blocks the calling thread at most about 20 ms (never 1 s), when it finds
 * the owner inside a pop: then it takes the queue over from the dead
 * owner, completes or undoes the pop it died in, and cancels the rest. A
 * message the owner had popped but not yet counted is lost, neither run
 * nor canceled, and counted in mbx_stats.abandoned (at most one per death).
 * Returns the number canceled (>= 0), MBX_ECLOSED
 * (already closed and drained), MBX_ESTALE, MBX_EINVAL (bad handle, or the
 * misuse above), MBX_EAGAIN (MBX_MAX_HOLDS holds on the record: nothing
 * done, try again).
 */
int mbx_mailbox_close_orphan(mbx_handle h);

/*
 * Set the soft capacity of a mailbox: sends fail with MBX_EFULL while at
 * least `capacity` messages are pending. 0 means unbounded (the default);
 * every other value up to UINT32_MAX is a bound. Soft: a send may get
 * MBX_EFULL a little below it, while a receiver has not yet subtracted
 * what it consumed (it does once per drain) or another send to the same
 * mailbox is being refused (its count is there for a moment); concurrent
 * senders never take it above the bound (each send counts its message
 * before it checks).
 * Any thread. Returns MBX_OK, MBX_EINVAL, MBX_ECLOSED, MBX_ESTALE.
 */
int mbx_set_capacity(mbx_handle h, uint32_t capacity);

/*
 * Snapshot of the mailboxes open now: writes up to `capacity` handles to out
 * (in record order) and the number open to *open_count, which may exceed
 * capacity (call again with a larger array). Taken under the lock that
 * mailbox creation takes, so no mailbox opened before the call is missed
 * and none opened during it appears half-made; a mailbox that closes during
 * the walk may or may not be listed (a send to it then returns MBX_ECLOSED).
 * Any thread. Returns MBX_OK, MBX_EINVAL (open_count NULL, or out NULL with
 * capacity > 0).
 */
int mbx_mailboxes_list(mbx_handle *out, uint32_t capacity,
                       uint32_t *open_count);

/* ---------------------------------------------------------------- holds */

/*
 * Keep the record named by h from being recycled (Node-API
 * acquire_threadsafe_function semantics). While held, sends through h return
 * MBX_ECLOSED after the thread exits, never MBX_ESTALE, and mbx_stats_get
 * keeps working. Any thread.
 * Returns MBX_OK, MBX_ECLOSED (already closed: no hold taken), MBX_ESTALE,
 * MBX_EINVAL, MBX_EAGAIN (MBX_MAX_HOLDS reached).
 */
int mbx_hold(mbx_handle h);

/*
 * Release one hold taken with mbx_hold(). Releasing the last hold on a closed
 * record lets it go to quarantine. The owner's own hold is separate and
 * cannot be released this way. Any thread.
 * Returns MBX_OK, MBX_EINVAL (no mbx_hold() hold outstanding, bad handle).
 */
int mbx_release(mbx_handle h);

/* ---------------------------------------------------------------- stats */

typedef struct mbx_stats {
  uint64_t sent;      /* sends accepted (MBX_OK) */
  uint64_t run;       /* run functions called */
  uint64_t canceled;  /* cancel functions called */
  uint64_t dropped;   /* canceled messages that had no cancel function */
  uint64_t pending;   /* accepted, not yet run/canceled/dropped */
  uint64_t abandoned; /* accepted, then lost with an owner killed between
                         popping and counting a message (close_orphan) */
  uint64_t rejected_closed;
  uint64_t rejected_stale;
  uint64_t rejected_invalid;
  uint64_t rejected_nomem;
  uint64_t rejected_full;
  uint64_t queue_high_water; /* most messages pending at once */
  uint64_t wakeups;          /* notifications sent to sleeping receivers (global
                                only; at most one per empty->non-empty transition) */
} mbx_stats;

/*
 * Counters of one mailbox. `sent` is derived (run + canceled + dropped +
 * pending + abandoned); rejected_stale and rejected_invalid are always 0 here
 * (such sends cannot be attributed to a mailbox); per life, its rejected_closed
 * saturates at UINT32_MAX and rejected_full counts modulo 2^32 (the global
 * counters are 64-bit).
 * Works on closed lives until
 * the record is reused (hold it to be sure). Any thread.
 * Returns MBX_OK, MBX_ESTALE (the record serves a later life), MBX_EINVAL
 * (out == NULL, null/forged handle, or a generation ahead of the record's:
 * see docs/design.md).
 */
int mbx_stats_get(mbx_handle h, mbx_stats *out);

/*
 * Process-wide counters. `sent` is derived, as for one mailbox: run +
 * canceled + dropped + pending + abandoned, over every mailbox and every
 * ended life (exact once quiescent). A send counts its message in its
 * mailbox's pending before the send succeeds, and only the receiver or a
 * close counts it out, so an accepted message that went missing would stay
 * pending: compare `sent` with the sends your program saw succeed. The
 * rejected_* counters and wakeups are counted by senders. A snapshot taken
 * while messages are in flight is only approximately consistent. Any
 * thread.
 */
void mbx_stats_global(mbx_stats *out);

typedef struct mbx_memory_stats {
  uint64_t records_total;      /* records ever allocated (never freed) */
  uint64_t records_live;       /* bound or waiting to be bound, or held, or
                                  retired for good after 2^32 - 1 lives */
  uint64_t records_quarantine; /* retired, waiting for reuse */
  uint64_t record_bytes;       /* bytes per record */
  uint64_t nodes_live;         /* message nodes holding a message: sent,
                                  not yet run, canceled or dropped (derived
                                  from mbx_stats_global's counters; includes
                                  mbx_stats.abandoned, whose nodes a killed
                                  thread may have leaked) */
  uint64_t bytes_live;         /* bytes the library holds now: record chunks
                                  plus node blocks */
  uint64_t nodes_cached;       /* node slots held but holding no message:
                                  nodes are allocated 32 to a block; each
                                  sending thread keeps the unused rest of its
                                  current block (given back when it exits or
                                  closes its mailbox), and a block is freed
                                  when its last node is consumed. A mailbox
                                  that has received a message keeps the node
                                  of the last one it took (its queue's dummy)
                                  until it takes the next or closes: at most
                                  one block per open mailbox */
} mbx_memory_stats;

/* Memory figures. Any thread. */
void mbx_memory_stats_get(mbx_memory_stats *out);

/* ---------------------------------------------------------------- config */

/*
 * Records retired beyond this many are reused (oldest first); below it a new
 * record is allocated. Larger values delay reuse (stale handles keep getting
 * MBX_ECLOSED instead of MBX_ESTALE for longer) at 1 record per unit.
 * Default 64. Any thread; affects later retirements. Returns MBX_OK.
 */
int mbx_set_quarantine(uint32_t records);

typedef void *(*mbx_alloc_fn)(size_t size, void *ctx);
typedef void (*mbx_free_fn)(void *ptr, void *ctx);

/*
 * Replace the allocator used for message nodes, record chunks, proxy state
 * and the bookkeeping of queues of one's own (<mbx/queue.h>) (e.g. to
 * inject failures in tests). Call before any other mbx function, or while no
 * record and no thread's first queue of one's own is being created. What the
 * library frees later remembers the allocator that made it and is freed with
 * it, whenever that is: message node blocks, proxy call records and
 * per-thread proxy state (record chunks and queue bookkeeping are never
 * freed). So keep a replaced allocator working until every thread that sent
 * a message or used the proxy layer before the switch has exited, and every
 * mailbox that received a message before it has received another or closed
 * (mbx_memory_stats.nodes_cached). The calling thread's cached nodes and
 * call record, and the node blocks and call records kept for reuse by any
 * thread (a few of each), are freed here. NULL functions restore
 * malloc/free. Returns MBX_OK, MBX_EINVAL (only one of the two NULL). Any
 * thread.
 */
int mbx_set_allocator(mbx_alloc_fn alloc, mbx_free_fn free_fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* MBX_MAILBOX_H */
