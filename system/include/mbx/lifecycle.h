/*
 * Lifecycle hooks and watches: code that runs when a thread starts (before
 * its user code) or when a mailbox closes, and watches (Erlang-style
 * monitors) that tell one thread, by a message to its own mailbox, that
 * another thread's mailbox closed. Part of mbx::mbx (needs the interposed
 * pthread_create for the start hooks). docs/guide.md shows the patterns.
 *
 * Order on a thread created through the interposed pthread_create:
 *   1. the mailbox is bound;
 *   2. catch-up of broadcasts (<mbx/broadcast.h>) in sequence order;
 *   3. start hooks, in registration order;
 *   4. the thread's own start function (user code).
 * Order when such a thread exits (return, pthread_exit, cancellation):
 *   1. the program's own cancellation cleanup handlers (pushed by user code,
 *      innermost first);
 *   2. the mailbox closes; queued messages' cancel functions run;
 *   3. proxied work the thread left unfinished is canceled
 *      (<mbx/proxy.h>: its callers return MBX_ECANCELED);
 *   4. close hooks, in registration order, then watches of this mailbox
 *      fire (their messages are sent) and this thread's own watches of
 *      others are dropped;
 *   5. thread-specific-data destructors (C11 tss / pthread_key), and C++
 *      thread_local destructors;
 *   6. the thread is gone.
 * So a close hook still runs on the dying thread with its stack, but after
 * its queue was canceled: a message it sends to its own thread gets
 * MBX_ECLOSED.
 */
#ifndef MBX_LIFECYCLE_H
#define MBX_LIFECYCLE_H

#include <mbx/mailbox.h>

#ifdef __cplusplus
extern "C" {
#endif

/* At most this many start hooks and this many close hooks at once. */
#define MBX_LIFECYCLE_MAX_HOOKS 16

/* Called when a mailbox closes: `closed` names the life that closed,
 * reason is MBX_CANCEL_THREAD_EXIT, _ABNORMAL_EXIT or _RUNTIME_EXIT, or
 * MBX_CANCEL_QUEUE_CLOSED for a queue of one's own closed by its owner
 * (<mbx/queue.h>; its queues are reported like mailboxes). */
typedef void (*mbx_close_hook_fn)(mbx_handle closed, int reason, void *arg);

/*
 * Register fn(arg) to run on every thread created through the interposed
 * pthread_create (also by code that includes no mbx header: std::thread,
 * thrd_create where they go through it) after its mailbox is bound and
 * broadcasts were caught up, before its start function. Not on the main
 * thread, nor on threads that attached a mailbox themselves. A thread
 * starting while the hook is registered may or may not run it; every thread
 * that starts after this returns runs it. Any thread.
 * Returns MBX_OK and *id (id may be NULL), MBX_EINVAL (fn NULL),
 * MBX_EFULL (MBX_LIFECYCLE_MAX_HOOKS start hooks registered).
 */
int mbx_on_thread_start(mbx_run_fn fn, void *arg, uint32_t *id);

/*
 * Register fn(closed, reason, arg) to run once for every mailbox life that
 * closes after this returns (a close under way at that moment may or may
 * not call it), on the thread that closed it: the dying thread itself for
 * normal exits (see the order above); the exiting thread at runtime exit
 * (MBX_CANCEL_RUNTIME_EXIT); the thread calling mbx_mailbox_close_orphan
 * (on Emscripten the main thread, when a worker was terminated) for
 * MBX_CANCEL_ABNORMAL_EXIT. It must not block on other threads. Any thread.
 * Returns MBX_OK and *id (may be NULL), MBX_EINVAL, MBX_EFULL.
 */
int mbx_on_mailbox_close(mbx_close_hook_fn fn, void *arg, uint32_t *id);

/*
 * Remove a hook registered by mbx_on_thread_start or mbx_on_mailbox_close.
 * A call already under way on another thread may still complete after this
 * returns. Any thread. Returns MBX_OK, MBX_EINVAL (unknown id).
 */
int mbx_lifecycle_remove(uint32_t id);

/* ---------------------------------------------------------------- watches */

/* Reasons a watch fires with, besides MBX_CANCEL_* (the mailbox closed
 * while watched, for that reason): */
enum {
  MBX_WATCH_WAS_CLOSED = MBX_ECLOSED, /* already closed when watched */
  MBX_WATCH_WAS_STALE = MBX_ESTALE,   /* the handle's record already serves
                                         another thread: long gone */
};

typedef uint64_t mbx_watch_id;

/* Runs on the watcher's thread, from its mailbox. */
typedef void (*mbx_watch_fn)(mbx_handle target, int reason, void *arg);

/*
 * Watch target: when its mailbox closes, on_closed(target, reason, arg) is
 * sent to the calling thread's own mailbox and runs when it drains (poll,
 * wait, event loop, or while it blocks in a proxy call), exactly once. If
 * the target is already closed it is sent at once, with
 * MBX_WATCH_WAS_CLOSED, or MBX_WATCH_WAS_STALE when the record was reused.
 * A watch registered concurrently with the close fires exactly once too.
 * If the watcher exits before on_closed runs, it never runs (the watch is
 * dropped when the watcher's own mailbox closes; arg is the watcher's to
 * release). A thread may watch itself (it then never sees it fire).
 * Calling thread: any thread with a mailbox.
 * Returns MBX_OK and *id (may be NULL), MBX_EPERM (no mailbox),
 * MBX_EINVAL (null or forged handle, on_closed NULL), MBX_ENOMEM; the
 * delivery message itself can fail like mbx_send to self (MBX_EFULL when
 * the watcher caps its own mailbox): the watch is then dropped silently,
 * so do not cap a watcher's mailbox.
 */
int mbx_watch(mbx_handle target, mbx_watch_fn on_closed, void *arg,
              mbx_watch_id *id);

/*
 * Cancel a watch. Returns MBX_OK: on_closed will not run (if it had fired
 * and was queued, it is skipped), so arg is the caller's again; or
 * MBX_EINVAL: unknown id, or on_closed already ran. Only the watcher thread
 * (MBX_EPERM otherwise), so "already ran" is a fact, not a race.
 */
int mbx_unwatch(mbx_watch_id id);

#ifdef __cplusplus
}
#endif

#endif /* MBX_LIFECYCLE_H */
