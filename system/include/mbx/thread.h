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
 * pthread_create and is not covered; pthread_create is. std::thread is
 * covered only where libstdc++ (or libc++) is linked statically
 * (-static-libstdc++; always on Emscripten): a shared libstdc++.so calls
 * the real pthread_create, which -Wl,--wrap cannot reach, so such a thread
 * has no mailbox (examples/loader.c checks both).
 *
 * The main thread gets its mailbox before main() runs (a constructor in the
 * same object file as the interposed pthread_create, so it is linked in
 * whenever the program creates threads or calls a function of this header).
 *
 * Shutdown (see docs/lifecycle.md):
 * - Runtime exit (exit(), returning from main with EXIT_RUNTIME, or
 *   emscripten_force_exit): every open mailbox is closed and its queued
 *   messages are canceled with MBX_CANCEL_RUNTIME_EXIT on the exiting
 *   thread (on Emscripten the main thread), after the program's own atexit
 *   handlers and while the other threads still run. An owner that is inside
 *   a handler at that moment keeps running it; the rest of its queue is
 *   canceled.
 * - Abnormal death (Emscripten): when the worker of a running pthread is
 *   terminated (worker.terminate(), pthread_kill with SIGKILL on 3.1.6), its
 *   mailbox is closed and its queued messages are canceled on the main
 *   thread with MBX_CANCEL_ABNORMAL_EXIT, from the main thread's event loop
 *   (on Node when the worker's 'exit' event arrives; in a browser on the
 *   next task). A main thread that blocks waiting for the dead thread does
 *   not run its event loop and so does not see the death.
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
 * Handle of the main thread's mailbox (the null handle if it could not be
 * allocated at startup, or after runtime exit closed it: then sends to the
 * old handle get MBX_ECLOSED). Any thread.
 */
mbx_handle mbx_main_thread(void);

/*
 * Deliver the calling thread's messages from its JS event loop (Emscripten):
 * after this call, return to the event loop (emscripten_exit_with_live_runtime,
 * or on the main thread returning from main without exiting); each time
 * senders notify the mailbox, its messages run from a fresh event-loop task,
 * with no polling. Notifications are coalesced: a burst wakes the thread
 * once per drain. Owner only; works on pthreads and on the main thread.
 *
 * Wakeups use Atomics.waitAsync on the mailbox's notification word. Where
 * the JS engine has no native waitAsync, a sender that finds the mailbox
 * empty instead posts one wakeup task to the thread
 * (emscripten_dispatch_to_thread_async), which schedules the drain with
 * setTimeout; messages then cost one postMessage per burst.
 *
 * While attached, a pthread holds a runtime keepalive (so it stays alive
 * between tasks), and the Node main thread holds a ref'd timer (so Node
 * does not exit while messages may still arrive). Both are dropped on
 * detach, at thread exit and at runtime exit. To end a program whose main
 * thread sits in its event loop, call emscripten_force_exit(): a plain
 * exit() does not end a runtime that emscripten_exit_with_live_runtime keeps
 * alive.
 * Returns MBX_OK (also if already attached), MBX_EPERM (no mailbox),
 * MBX_EINVAL (native build).
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
