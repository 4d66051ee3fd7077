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
 * pthread_create and is not covered; pthread_create and std::thread are,
 * also with the default shared libstdc++: besides --wrap (calls linked into
 * the executable) the library defines pthread_create in the executable, so
 * that calls from shared libraries (libstdc++.so, plugins) reach it too.
 * Threads created from a shared library that binds pthread_create to
 * itself (-Bsymbolic, dlmopen namespaces) are not covered.
 *
 * Emscripten 3.1.6 built with assertions prints "Pthread 0x0 completed its
 * main entry point with an `unwind` ..." at every pthread_exit; that is
 * Emscripten's own message (a program without this library prints it too)
 * and harmless.
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
 *   not run its event loop and so does not see the death. The one message
 *   the thread had popped or was running when it died (at most one per
 *   death) counts as run, or, if it died between popping and counting it,
 *   as mbx_stats.abandoned; the closer never blocks the main thread for
 *   more than about 20 ms (twice, at most), even when the thread died
 *   inside a pop. A thread that died inside a pop may not have counted
 *   what it consumed, so that closer cannot tell its count from a sender's
 *   that counted its message and has not pushed it yet: it waits until no
 *   message arrived for 20 ms, then counts the rest abandoned. A sender
 *   preempted longer than that between counting and pushing (a few
 *   instructions) would push into the closed mailbox, and its message would
 *   be neither run nor canceled. Memory
 *   a killed worker may leave allocated for good: the node block (32
 *   nodes, about 650 bytes on wasm32) of an abandoned message, and one of
 *   nodes it was releasing when it died. Its record is reused. So memory
 *   stays bounded while threads come and go by returning, exiting or being
 *   canceled, and grows by at most about 1.3 KB per killed worker. A lock
 *   the worker held when it was killed stays held for ever: that is so of
 *   any lock, and the one the library's code takes on a worker is the
 *   allocator's (a sender allocates node blocks, a drain frees them; a
 *   thread also takes a short lock of the library as its start routine
 *   begins, to take its start record), and
 *   with Emscripten's dlmalloc (one global mutex) the next malloc on any
 *   thread then hangs, with no mailbox involved. Kill a worker only where it
 *   cannot be inside the allocator, or give the library an allocator
 *   (mbx_set_allocator) behind a lock that the killer holds from before the
 *   kill until the dead worker's mailbox closed (test/support/kill_guard.h).
 * - A thread that ends before its start routine runs (Emscripten 5.x
 *   under ASan: a pthread_cancel sent right after pthread_create can act
 *   inside the sanitizer's thread start, which waits on its locks before
 *   it calls the start routine). Its mailbox, opened by pthread_create,
 *   was never taken over by the thread, so no exit path of its own closes
 *   it: the library closes it on the main thread when Emscripten takes the
 *   worker back (the join, or the end of a detached thread), and its
 *   queued messages are canceled there with MBX_CANCEL_ABNORMAL_EXIT. A
 *   main thread blocked elsewhere delays that as it delays the join. Not
 *   reachable natively or on 3.1.6 (no cancellation point comes before
 *   the start routine there).
 * - fork() (native; the library registers pthread_atfork handlers): the
 *   child starts with the forking thread's mailbox open and empty. Messages
 *   queued in the parent, in any mailbox, belong to the parent: the child
 *   never runs or cancels them. Every other thread's mailbox is closed in
 *   the child (sends get MBX_ECLOSED; nothing is canceled) and its record
 *   is never reused there. Senders that were mid-send in the parent are
 *   forgotten, so the child's exit() does not wait for them. The nodes of
 *   the parent's queued messages are not freed in the child (a leak
 *   checker run in the child reports them: about 40 bytes a message). The
 *   handlers hold the library's registry lock across fork(); a custom
 *   allocator (mbx_set_allocator) must itself be safe to use in a forked
 *   child.
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
 * Handle of the main thread's mailbox, or the null handle if it could not
 * be allocated at startup. After runtime exit closed it, this still returns
 * the same (now closed) handle: sends to it get MBX_ECLOSED (later
 * MBX_ESTALE). Any thread.
 */
mbx_handle mbx_main_thread(void);

/*
 * Deliver the calling thread's messages from its JS event loop (Emscripten):
 * after this call, return to the event loop (emscripten_exit_with_live_runtime,
 * or on the main thread returning from main without exiting); each time
 * senders notify the mailbox, its messages run from a fresh event-loop task,
 * with no polling. Notifications are coalesced: a burst wakes the thread
 * once per drain. A drain that senders keep busy gives the event loop back
 * after about 2 ms (plus the message running then, and at most 63 more), so
 * the thread's timers and other tasks still run during a flood; it goes on
 * in a fresh task. Under a stream (64 messages run in a row) the thread lets
 * the next 64 gather for up to 1 us before it runs them: taking each
 * message the moment it is linked costs sender and receiver a cache-line
 * transfer per message. Owner only; works on pthreads and on the main
 * thread.
 *
 * Wakeups use Atomics.waitAsync on the mailbox's notification word. Where
 * the JS engine has no native waitAsync, a sender that finds the mailbox
 * empty instead posts one wakeup task to the thread
 * (emscripten_dispatch_to_thread_async), which schedules the drain as a
 * fresh event-loop task (setImmediate in Node, a MessageChannel message in
 * browsers; never a clamped setTimeout); messages then cost one
 * postMessage per burst.
 *
 * Where a posted wakeup can be lost (Emscripten 3.1.6 drops calls to a
 * thread whose call queue is full, silently), a timer also checks the
 * mailbox every 100 ms while attached in that mode: a lost wakeup delays
 * delivery by at most that much.
 *
 * While attached, a pthread holds a runtime keepalive (so it stays alive
 * between tasks), and the Node main thread holds a ref'd timer (so Node
 * does not exit while messages may still arrive). Both are dropped on
 * detach, at thread exit and at runtime exit. Keepalives the program or
 * Emscripten pushed (emscripten_async_call timers, ...) are left alone: a
 * thread whose start routine returns with a timer pending stays alive
 * until it fired (its mailbox is closed when the routine returns). On
 * 3.1.6 only, a thread that ran from its event loop and then ends by
 * pthread_exit also drops the keepalive of emscripten_exit_with_live_runtime,
 * which 3.1.6 would leak into the next thread on that worker. (3.1.6
 * itself aborts when a timer outlives the pthread_exit of its thread, with
 * or without this library: clear timers before pthread_exit there.) To end a
 * program whose main thread sits in its event loop, call
 * emscripten_force_exit(): a plain exit() does not end a runtime that
 * emscripten_exit_with_live_runtime keeps alive. Returns MBX_OK (also if
 * already attached), MBX_EPERM (no mailbox), MBX_EINVAL (native build).
 */
int mbx_event_loop_attach(void);

/*
 * Stop event-loop delivery and drop the keepalive (the thread may then end
 * when it next returns to the event loop). Thread exit does this itself.
 * Owner only. Returns MBX_OK, MBX_EPERM (no mailbox), MBX_EINVAL (not
 * attached, or native build).
 */
int mbx_event_loop_detach(void);

/*
 * 1 if the calling thread's mailbox is served from its JS event loop
 * (mbx_event_loop_attach, not detached since), else 0 (also natively).
 * Any thread, for itself.
 */
int mbx_event_loop_attached(void);

#ifdef __cplusplus
}
#endif

#endif
