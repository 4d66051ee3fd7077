/*
 * Queues of one's own: mailboxes a thread owns besides its automatic one,
 * drained only where the owner says so.
 *
 * A thread's automatic mailbox (<mbx/mailbox.h>) runs its messages whenever
 * the thread drains it: mbx_poll, mbx_wait, its JS event loop, or while it
 * is blocked in a proxy call. Work that takes a lock the thread holds around
 * such a drain then deadlocks (emscripten #20059, #15186, #12309). A queue
 * created here is a separate mailbox bound to the calling thread: its
 * messages run only when the owner calls mbx_queue_poll or mbx_queue_wait on
 * that queue, never from the event loop, mbx_poll, mbx_wait or a blocked
 * proxy call. This is Emscripten's em_proxying_queue +
 * emscripten_proxy_execute_queue, with the guarantees of the automatic
 * mailbox.
 *
 * A queue handle is an ordinary mbx_handle: mbx_send, mbx_set_capacity,
 * mbx_stats_get, mbx_hold/mbx_release and every call of <mbx/proxy.h> take
 * it (mbx_proxy_sync to a queue returns once its owner has drained the
 * queue, or MBX_ECANCELED when the queue closes first; MBX_EDEADLK when
 * the caller owns the queue). mbx_thread_bind refuses it (it is bound), and
 * mbx_thread_handle never returns it. Queues are listed by
 * mbx_mailboxes_list like every open mailbox, but a broadcast
 * (<mbx/broadcast.h>) reaches threads, not their queues (a queue created
 * while a broadcast starts may still get its copy, which then runs or is
 * canceled there like any message).
 *
 * Lifetime, as for the automatic mailbox:
 * - The owner's exit (return, pthread_exit, cancellation, mbx_thread_exit)
 *   closes every queue it still owns, right after its automatic mailbox
 *   (whose queued messages are canceled first), each in one atomic step,
 *   and calls the cancel function of every queued message on the dying
 *   thread with the exit's reason (MBX_CANCEL_THREAD_EXIT, or
 *   MBX_CANCEL_RUNTIME_EXIT). These closes are part of the mailbox's close:
 *   cancellation disabled, and resumed if a cancel function ends the thread
 *   or the process (see mbx_cancel_fn in <mbx/mailbox.h>).
 * - A killed worker's queues are closed by the closer of its automatic
 *   mailbox (the main thread, MBX_CANCEL_ABNORMAL_EXIT); the runtime exit
 *   closes them with the other mailboxes (MBX_CANCEL_RUNTIME_EXIT).
 * - mbx_queue_close closes one early (MBX_CANCEL_QUEUE_CLOSED).
 * After a close, sends fail with MBX_ECLOSED (MBX_ESTALE once the record
 * serves another life); a closed queue's record is recycled like a thread's.
 * Every close is reported once to mbx_watch watchers of the queue and to
 * mbx_on_mailbox_close hooks (<mbx/lifecycle.h>), with the reason above.
 *
 * Bound: a thread owns at most MBX_QUEUE_MAX_PER_THREAD open queues
 * (MBX_EAGAIN beyond). The bookkeeping (a 128-byte list per record that
 * ever owned queues, reused by the record's later lives) is bounded by the
 * record count, so memory stays bounded however many threads come and go.
 *
 * Nesting: a handler running from a queue's drain may drain another queue
 * of the same thread; draining or closing the same queue from inside its
 * own drain returns MBX_EBUSY, and so do mbx_poll, mbx_wait and
 * mbx_thread_exit (as from any handler). A queue may be drained from a
 * handler of the automatic mailbox. A C++ exception that escapes a handler
 * follows the rule of <mbx/mailbox.h> (see mbx_poll): it propagates out of
 * mbx_queue_poll/mbx_queue_wait, its message counts as run, and the next
 * drain of the queue carries on with the rest.
 */
#ifndef MBX_QUEUE_H
#define MBX_QUEUE_H

#include <mbx/mailbox.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Open queues one thread may own at once. */
#define MBX_QUEUE_MAX_PER_THREAD 16

/* Cancel reason (mbx_cancel_fn) for messages still queued when the owner
 * closes the queue with mbx_queue_close. Called on the owner. */
enum { MBX_CANCEL_QUEUE_CLOSED = 4 };

/*
 * Create an open queue owned by the calling thread. The calling thread
 * must own an open mailbox (every pthread of mbx::mbx and the main thread
 * do; with mbx::core, mbx_thread_attach first), because the queue is
 * closed by that mailbox's exit path. Any such thread, for itself.
 * Returns MBX_OK and *out, MBX_EINVAL (out == NULL), MBX_EPERM (the
 * calling thread has no mailbox), MBX_ECLOSED (its mailbox is closed: it
 * is exiting, or the runtime exit closed it), MBX_EAGAIN (it owns
 * MBX_QUEUE_MAX_PER_THREAD open queues), MBX_ENOMEM.
 */
int mbx_queue_create(mbx_handle *out);

/*
 * Run the messages pending on queue q: at most as many as were pending on
 * entry (as mbx_poll). Owner only.
 * Returns the number run (>= 0), or MBX_EPERM (q is another thread's, or
 * the calling thread's automatic mailbox: use mbx_poll), MBX_EBUSY (called
 * from inside a handler of q's own drain), MBX_ECLOSED (q was closed:
 * explicitly, or by the runtime exit from another thread), MBX_ESTALE,
 * MBX_EINVAL (null or forged handle).
 */
int mbx_queue_poll(mbx_handle q);

/*
 * Block until a message is pending on q (or timeout_ms passes; < 0, NaN or
 * INFINITY: forever), then run its messages as mbx_wait does (at most the
 * larger of 256 and the number pending when it found one). Messages sent
 * to the thread's other mailboxes meanwhile wait. A cancellation point, as
 * mbx_wait (at entry, and while asleep, within 100 ms); canceled there,
 * nothing is taken and the drain state is restored. Owner only.
 * Returns the number run (>= 1), MBX_ETIMEDOUT, or what mbx_queue_poll
 * returns on error.
 */
int mbx_queue_wait(mbx_handle q, double timeout_ms);

/*
 * Close queue q: one atomic close (after it no send succeeds), then every
 * queued message's cancel(arg, MBX_CANCEL_QUEUE_CLOSED) on this thread, in
 * queue order (cancellation disabled, as every close); then q's record is
 * released. Owner only. A cancel function that polls, waits on or closes q
 * gets MBX_ECLOSED.
 * Returns the number of messages canceled or dropped (>= 0; 0 also when the
 * runtime exit had already closed q and canceled its messages), MBX_EPERM,
 * MBX_EBUSY (called from inside a handler of q's own drain), MBX_ECLOSED
 * (already closed by mbx_queue_close), MBX_ESTALE, MBX_EINVAL.
 */
int mbx_queue_close(mbx_handle q);

#ifdef __cplusplus
}
#endif

#endif /* MBX_QUEUE_H */
