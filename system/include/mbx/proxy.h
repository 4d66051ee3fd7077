/*
 * Proxying: run a function on another thread and learn what became of it,
 * built on the per-thread mailboxes of <mbx/mailbox.h>. docs/proxying.md
 * has the full table of functions, codes and threads, and compares them
 * with Emscripten's <emscripten/proxying.h> and Node-API thread-safe
 * functions.
 *
 * Targets are mailbox handles (mbx_thread_handle(), mbx_self(), ...). The
 * target runs proxied work when it drains its mailbox: mbx_poll(),
 * mbx_wait(), its JS event loop after mbx_event_loop_attach(), or while it
 * is itself blocked in a proxy call (see "serving" below).
 *
 * Every blocking call keeps its state in a reference-counted heap record,
 * never on the caller's stack, so a target that completes late (after a
 * timeout, or after the caller was canceled or exited) writes only to that
 * record. The target exiting is reported as MBX_ECANCELED, never as a hang.
 *
 * Return codes (negative MBX_E* from <mbx/mailbox.h>; MBX_OK is zero):
 *   MBX_OK          done: the work ran (and, with a context, was finished)
 *   MBX_ECANCELED   accepted, but the target exited (returned, pthread_exit,
 *                   pthread_cancel) before the work completed
 *   MBX_ECLOSED     not queued: the target is exiting or has exited
 *   MBX_ESTALE      not queued: handle of a thread that exited long ago
 *   MBX_EINVAL      not queued: null or forged handle, null function
 *   MBX_ENOMEM      not queued: out of memory
 *   MBX_EFULL       not queued: the target's mailbox is at its capacity
 *   MBX_EDEADLK     refused: a blocking call to the calling thread itself
 *                   (its mailbox, or a queue it owns: <mbx/queue.h>)
 *   MBX_EWOULDBLOCK refused: the calling thread must not block (the
 *                   browser's main thread)
 *   MBX_ETIMEDOUT   the timed call gave up; the work has not run and never
 *                   will
 *   MBX_EPERM       the call needs a mailbox on the calling thread
 */
#ifndef MBX_PROXY_H
#define MBX_PROXY_H

#include <mbx/mailbox.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A started unit of work that completes later, with mbx_proxy_finish. */
typedef struct mbx_proxy_ctx mbx_proxy_ctx;
typedef void (*mbx_proxy_ctx_fn)(mbx_proxy_ctx *ctx, void *arg);

/*
 * Queue fn(arg) on target and return at once. If the target exits before
 * running it, cancel(arg, reason) runs on the target instead (cancel may be
 * NULL). Exactly mbx_send(): any thread, also the target itself.
 * Returns MBX_OK (exactly one of fn/cancel will be called), or, calling
 * nothing: MBX_EINVAL, MBX_ECLOSED, MBX_ESTALE, MBX_EFULL, MBX_ENOMEM.
 */
int mbx_proxy_async(mbx_handle target, mbx_run_fn fn, mbx_cancel_fn cancel,
                    void *arg);

/*
 * Run fn(arg) on target and wait until it has returned there.
 * Any thread except the target itself (MBX_EDEADLK) and a thread that must
 * not block (MBX_EWOULDBLOCK, see mbx_proxy_set_blocking). While waiting,
 * the caller runs messages sent to its own mailbox (mbx_proxy_set_serving),
 * so A waiting for B while B waits for A completes. The wait is a
 * cancellation point; if the caller is canceled or exits (from a message it
 * runs while waiting) before the work started, the work never runs; if it
 * is running, the caller's exit waits for it to return first, so fn may use
 * memory on the caller's stack.
 * Returns MBX_OK, MBX_ECANCELED (the target exited before fn returned: fn
 * did not run, or it ended the thread), or without queuing: MBX_EINVAL,
 * MBX_ECLOSED, MBX_ESTALE, MBX_EFULL, MBX_ENOMEM, MBX_EDEADLK,
 * MBX_EWOULDBLOCK.
 */
int mbx_proxy_sync(mbx_handle target, mbx_run_fn fn, void *arg);

/*
 * mbx_proxy_sync with a time limit (timeout_ms < 0: none). The limit only
 * applies until the target starts fn: MBX_ETIMEDOUT means fn has not run
 * and never will (so it cannot touch the caller's stack); once fn has
 * started, the call waits for it to return. Returns what mbx_proxy_sync
 * returns, or MBX_ETIMEDOUT.
 */
int mbx_proxy_sync_timed(mbx_handle target, mbx_run_fn fn, void *arg,
                         double timeout_ms);

/*
 * Run fn(ctx, arg) on target and wait until someone calls
 * mbx_proxy_finish(ctx) or mbx_proxy_finish_status(ctx, status): fn
 * itself, or any thread later (after async I/O).
 * If the target exits before the context is finished, the caller returns
 * MBX_ECANCELED at once: the target's exit cancels every context the
 * thread left outstanding right after its mailbox closes and before it
 * cancels its queued messages, so a cancel function that finishes a
 * context gets MBX_ECANCELED, and the caller never gets MBX_OK for work
 * that did not complete. Threads and codes as mbx_proxy_sync, and the
 * status a finisher passed to mbx_proxy_finish_status.
 */
int mbx_proxy_sync_with_ctx(mbx_handle target, mbx_proxy_ctx_fn fn, void *arg);

/*
 * Complete a context. Call it exactly once for every context handed to a
 * mbx_proxy_ctx_fn, from any thread, also after the target exited, and
 * also when fn (or anything after it) ended the target thread: each
 * context's record stays allocated until its finish (mbx_proxy_stats
 * calls_live counts the ones never finished). Finish
 * and the target's exit race for the outcome in one atomic step, and the
 * context's memory stays valid until finish. Never use ctx afterwards.
 * Returns MBX_OK (the waiting caller returns MBX_OK), MBX_ECANCELED (the
 * target exited first; the caller already returned MBX_ECANCELED).
 */
int mbx_proxy_finish(mbx_proxy_ctx *ctx);

/*
 * mbx_proxy_finish with an outcome: the waiting caller's
 * mbx_proxy_sync_with_ctx returns status, which is MBX_OK (the work
 * completed; the same as mbx_proxy_finish), MBX_ECANCELED (it did not) or
 * any other negative code the program wants its caller to see (for
 * example MBX_ETIMEDOUT for an I/O that timed out). Threads and the
 * exactly-once rule as mbx_proxy_finish.
 * Returns MBX_OK (the caller returns status), MBX_ECANCELED (the target
 * exited first: the caller returned MBX_ECANCELED, and ctx is consumed),
 * MBX_EINVAL (ctx NULL, or status > 0: nothing was done, ctx is still to
 * be finished).
 */
int mbx_proxy_finish_status(mbx_proxy_ctx *ctx, int status);

/*
 * Queue fn(arg) on target and return at once; later, on the calling thread,
 * on_done(arg) runs after fn returned, or on_cancel(arg) if the target
 * exited first (either may be NULL). They run when the caller drains its
 * mailbox. If the caller has exited (or exits) before the outcome reaches
 * it, neither runs: the record is freed and the drop counted in
 * mbx_proxy_stats.callbacks_dropped. The caller's exit (when its mailbox
 * closes, before its queued messages are canceled) abandons fn if it has
 * not started: fn then never runs (counted in mbx_proxy_stats.abandoned);
 * if fn is running on the target, the exit waits for it to return. So arg
 * may be released once the caller's mailbox is closed, for example in a
 * thread-specific-data destructor. (A caller killed without its exit path
 * abandons through mbx_mailbox_close_orphan, which cannot wait for a
 * running fn.) Any thread with a mailbox,
 * also the target itself (after runtime exit main has none: MBX_EPERM).
 * Returns MBX_OK (exactly one of on_done/on_cancel/drop will happen), or,
 * calling nothing: MBX_EPERM (no mailbox on the calling thread), MBX_EINVAL,
 * MBX_ECLOSED, MBX_ESTALE, MBX_EFULL, MBX_ENOMEM.
 */
int mbx_proxy_callback(mbx_handle target, mbx_run_fn fn, mbx_run_fn on_done,
                       mbx_run_fn on_cancel, void *arg);

/*
 * Whether the calling thread runs its own mailbox's messages while blocked
 * in a proxy call (default 1). With 0 it sleeps until its call completes;
 * a cycle of such threads then deadlocks (use the timed call). Any thread.
 * Returns the previous setting.
 */
int mbx_proxy_set_serving(int on);

/*
 * Whether the calling thread may block in mbx_proxy_sync* (1), may not (0:
 * they return MBX_EWOULDBLOCK), or the default (-1): every thread may,
 * except the browser's main thread (emscripten_is_main_browser_thread() on
 * a web page). Node's main thread may block. Any thread.
 * Returns the previous setting (-1, 0 or 1).
 */
int mbx_proxy_set_blocking(int allowed);

/*
 * 1 if the calling thread may block in mbx_proxy_sync* now (the rule of
 * mbx_proxy_set_blocking applied), 0 if they would return
 * MBX_EWOULDBLOCK. Any thread, for itself.
 */
int mbx_proxy_may_block(void);

typedef struct mbx_proxy_stats {
  uint64_t calls_live;         /* call records allocated and not yet freed
                                  (a finished context is freed when its
                                  target next runs proxied work, or exits;
                                  a serving caller's sync call counts only
                                  once the caller's first spin on it ended
                                  without the outcome: a quick one never
                                  counts) */
  uint64_t sync_done;          /* blocking calls that returned MBX_OK */
  uint64_t sync_canceled;      /* ... MBX_ECANCELED */
  uint64_t sync_timed_out;     /* ... MBX_ETIMEDOUT */
  uint64_t abandoned;          /* works skipped (not run) because their
                                  caller timed out, was canceled or exited
                                  first; counted when the target disposes
                                  of them */
  uint64_t contexts_canceled;  /* contexts canceled by their target's exit */
  uint64_t callbacks_done;     /* on_done delivered */
  uint64_t callbacks_canceled; /* on_cancel delivered */
  uint64_t callbacks_dropped;  /* outcome not delivered: caller had exited */
  uint64_t replies_skipped;    /* blocking calls whose caller saw the outcome
                                  while polling for it, so no reply message
                                  went to its mailbox (every other blocking
                                  call whose caller has a mailbox sends one) */
  uint64_t replies_canceled;   /* reply messages canceled (counted in
                                  mbx_stats.canceled) because the caller's
                                  mailbox closed first: its thread was
                                  canceled or killed while waiting */
} mbx_proxy_stats;

/* Process-wide counters. Any thread. */
void mbx_proxy_stats_get(mbx_proxy_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* MBX_PROXY_H */
