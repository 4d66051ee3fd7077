/*
 * Automatic per-pthread mailboxes (link mbx::mbx, which passes
 * -Wl,--wrap=pthread_create).
 *
 * Every thread created with pthread_create, thrd_create or std::thread gets
 * a mailbox that is open before pthread_create returns (messages wait until
 * the thread starts) and closed when the thread exits by returning,
 * pthread_exit or cancellation; queued messages are then canceled on the
 * dying thread with MBX_CANCEL_THREAD_EXIT, before its thread-specific-data
 * destructors run (those that send to the thread get MBX_ECLOSED).
 *
 * The interposed pthread_create returns EAGAIN, creating no thread, if the
 * mailbox or its start record cannot be allocated; otherwise it returns what
 * the real pthread_create returns.
 *
 * Natively (glibc, the sanitizer builds) thrd_create does not go through
 * pthread_create and is not covered; pthread_create and std::thread are.
 */
#ifndef MBX_THREAD_H
#define MBX_THREAD_H

#include <mbx/mailbox.h>
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Handle of the mailbox of a live thread, or the null handle if it has none
 * (not created through the interposed pthread_create, or already exiting).
 * Any thread. Meaningful only while `thread` has not exited: a pthread_t of
 * an exited and joined (or detached) thread may be reused for a new thread,
 * and then names that new thread. Handles do not have this problem: keep the
 * handle, not the pthread_t. Cost: a scan of the record table (live
 * threads plus the quarantine), so look a thread up once and keep the
 * handle.
 */
mbx_handle mbx_thread_handle(pthread_t thread);

/*
 * Deliver the calling thread's messages from its JS event loop (Emscripten):
 * after this call, return to the event loop (emscripten_exit_with_live_runtime
 * on a pthread); each time senders notify the mailbox, its messages run from
 * a fresh event-loop task, with no polling. Notifications are coalesced: a
 * burst wakes the thread once per drain. The thread holds a runtime
 * keepalive while attached. Owner only.
 * Returns MBX_OK (also if already attached), MBX_EPERM (no mailbox),
 * MBX_EINVAL (native build, or no Atomics.waitAsync in this JS engine).
 */
int mbx_event_loop_attach(void);

/*
 * Stop event-loop delivery and drop the keepalive (the thread may then end
 * when it next returns to the event loop). Thread exit does this itself.
 * Owner only. Returns MBX_OK, MBX_EPERM (no mailbox), MBX_EINVAL (not
 * attached, or native build).
 */
int mbx_event_loop_detach(void);

#ifdef __cplusplus
}
#endif

#endif
