/*
 * Closing mailboxes whose owners will never run their exit path:
 *
 * - Runtime exit. exit() runs atexit handlers on one thread while every
 *   other thread keeps running, then ends them without any cleanup (native
 *   exit, Emscripten's worker.terminate()). mbx__runtime_exit closes every
 *   open mailbox from outside and cancels what is queued, on the exiting
 *   thread, with MBX_CANCEL_RUNTIME_EXIT. It runs from an atexit handler
 *   registered before main, so it runs after the program's own handlers,
 *   and on Emscripten also from the JS thread teardown (which
 *   emscripten_force_exit reaches even without EXIT_RUNTIME).
 *
 * - fork() (native): the child keeps only the forking thread's mailbox
 *   (pthread_atfork handlers, core/table.c); see <mbx/thread.h>.
 *
 * - Abnormal death (Emscripten): a pthread's worker is terminated while the
 *   thread runs. src/mbx.js watches every worker on the main thread; when
 *   one is terminated it captures the handle of the thread it hosted, and
 *   when the worker is gone it calls mbx__on_thread_death on the main
 *   thread, which closes the mailbox as an orphan (MBX_CANCEL_ABNORMAL_EXIT).
 *
 * - A thread that ends before its start routine ran (Emscripten): its
 *   mailbox, opened by its creator, was never bound and no exit path closes
 *   it. src/mbx.js calls mbx__on_thread_reclaimed on the main thread when
 *   Emscripten takes the thread's worker back, which closes it as an orphan
 *   too.
 */
#include "pthread_layer.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#define CALLED_FROM_JS EMSCRIPTEN_KEEPALIVE
#else
#define CALLED_FROM_JS
#endif

static _Atomic int g_runtime_exiting;

/* An atexit handler, and on Emscripten also called by src/mbx.js (on the
 * main thread) when the JS thread teardown starts, which
 * emscripten_force_exit reaches even without EXIT_RUNTIME. */
CALLED_FROM_JS void mbx__runtime_exit(void) {
  // Relaxed: only one caller may proceed; nothing is published through it.
  if (atomic_exchange_explicit(&g_runtime_exiting, 1, memory_order_relaxed))
    return;
  mbx_handle self = mbx_self();
  /* Others first: their cancel handlers may notify this thread by message,
   * and those messages are then canceled here too instead of refused. */
  uint32_t count = mbx__record_count();
  for (uint32_t i = 0; i < count; i++) {
    mbx_handle h = mbx__open_life_at(i);
    if (!mbx_handle_is_null(h) && !mbx_handle_equal(h, self))
      mbx__close_from_outside(h, MBX_CANCEL_RUNTIME_EXIT);
  }
  mbx__event_loop_on_exit(0);
  /* nested_ok: exit() is often called from inside a message handler. */
  mbx__thread_exit(MBX_CANCEL_RUNTIME_EXIT, 1);
}

/* Whether the runtime exit has started (thread_hooks.c parks threads
 * that would otherwise run their exit path during the teardown). */
int mbx__runtime_exiting(void) {
  // Relaxed: a one-way flag; a late reader only parks later.
  return atomic_load_explicit(&g_runtime_exiting, memory_order_relaxed);
}

void mbx__shutdown_install(void) {
  atexit(mbx__runtime_exit);
#ifdef __EMSCRIPTEN__
  mbx_js_watch_workers();
#else
  /* Emscripten has no fork. If registration fails (ENOMEM), fork keeps
   * the old behaviour: a child's exit may wait for the parent's senders. */
  pthread_atfork(mbx__fork_prepare, mbx__fork_parent, mbx__fork_child);
#endif
}

#ifdef __EMSCRIPTEN__
/* The handle captured by the last mbx__death_capture, split for JS (which
 * cannot take 64-bit values from 3.1.6 without BigInt support). */
static uint32_t g_capture_gen;

/* Close, as an orphan, the mailbox h of a thread that will never run its
 * exit path (killed, or ended before its start routine ran), after freeing
 * its start record if it never took it. Main thread. */
static void close_unexited(mbx_handle h) {
  if (mbx_handle_is_null(h))
    return;
  mbx__start_forget(h);
  mbx_mailbox_close_orphan(h);
}

/* Main thread, from src/mbx.js, when the worker hosting pthread ptr is
 * being terminated. Returns the low half of that thread's handle (0 if it
 * has no open mailbox); mbx__death_capture_gen returns the high half. */
EMSCRIPTEN_KEEPALIVE uint32_t mbx__death_capture(uintptr_t ptr) {
  mbx_handle h = ptr ? mbx__handle_of_pthread(ptr) : MBX_NULL_HANDLE;
  g_capture_gen = (uint32_t)(h.bits >> 32);
  return (uint32_t)h.bits;
}
EMSCRIPTEN_KEEPALIVE uint32_t mbx__death_capture_gen(void) {
  return g_capture_gen;
}

/* Main thread, from src/mbx.js, once the worker is gone. The generation
 * makes this a no-op if the thread exited normally first (MBX_ECLOSED) or
 * its record already serves another thread (MBX_ESTALE). */
EMSCRIPTEN_KEEPALIVE void mbx__on_thread_death(uint32_t low, uint32_t gen) {
  close_unexited((mbx_handle){((uint64_t)gen << 32) | low});
}

/* Main thread, from src/mbx.js, when Emscripten takes back the worker of
 * pthread ptr: the thread has ended and was joined (or was detached), and
 * ptr is freed right after, so no other thread has it yet. Normally the
 * thread closed its mailbox on its way out and nothing is open here. One
 * still open belongs to a thread that ended before start_with_mailbox
 * (thread_hooks.c) ran: a pthread_cancel sent right after pthread_create
 * acts at the first futex wait on 5.x, and under ASan the sanitizer's own
 * thread start (asan_thread_start) waits on its locks before it calls our
 * start routine. Before this, such a mailbox stayed open for good: what
 * was sent to it waited for ever, and mbx_thread_handle() of a later
 * thread that got the same pthread_t named it (torture, 5.0.7 wasm-asan,
 * about 1 run in 300 under load). */
EMSCRIPTEN_KEEPALIVE void mbx__on_thread_reclaimed(uintptr_t ptr) {
  /* Such a thread's start record is still pending. None is, at nearly
   * every thread's end: then skip the scan of every record. */
  if (mbx__starts_pending() != 0)
    close_unexited(mbx__handle_of_pthread(ptr));
}

#endif
