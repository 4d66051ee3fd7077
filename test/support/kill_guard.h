/* Test helper: kills a worker only while it is outside the library's
 * allocator and outside the window in which a kill leaks a node block. A worker
 * terminated while it holds a lock leaves the lock held for ever
 * (<mbx/thread.h>, "Abnormal death"); the one lock a worker takes while it
 * drains a flood is the allocator's, when it frees a node block, and with
 * Emscripten's dlmalloc (one global mutex) the next malloc anywhere, typically
 * on the main thread, then hangs (flood_kill hung so in CI, 1 run in about 100
 * under load). Tests that kill workers mid-drain route the library's allocator
 * through a spin lock that the main thread takes before the kill and gives back
 * only once the worker is gone: Node stops a worker asynchronously, after
 * worker.terminate() returns, so the lock is held until the library's orphan
 * close of the victim's mailbox, which runs on the main thread once the
 * worker's 'exit' event arrived. Header-only; Emscripten only; the kills and
 * closes on the main thread. */
#ifndef MBX_TEST_KILL_GUARD_H
#define MBX_TEST_KILL_GUARD_H
#ifdef __EMSCRIPTEN__

#include "check.h"
#include "test_support.h"

#include <mbx/lifecycle.h>
#include <mbx/mailbox.h>
#include <mbx/thread.h>
#include <stdatomic.h>
#include <stdlib.h>

static atomic_flag kill_guard_lock = ATOMIC_FLAG_INIT;
/* Main thread only: the mailboxes of killed workers not closed yet. While
 * there is one, main holds the lock and passes through it. */
enum { KILL_GUARD_MAX_DYING = 16 };
static mbx_handle kill_guard_dying[KILL_GUARD_MAX_DYING];
static int kill_guard_dying_count;
static _Thread_local int kill_guard_held_here;
/* Kills that found a thread inside the allocator and waited for it. */
static _Atomic long kill_guard_waits;

static inline void kill_guard_take(void) {
  // Acquire: pairs with kill_guard_give's release (the lock's usual pair).
  while (
      atomic_flag_test_and_set_explicit(&kill_guard_lock, memory_order_acquire))
    ;
}
static inline void kill_guard_give(void) {
  // Release: what we did under the lock happens before the next holder.
  atomic_flag_clear_explicit(&kill_guard_lock, memory_order_release);
}

static void *kill_guard_alloc(size_t size, void *ctx) {
  (void)ctx;
  if (kill_guard_held_here)
    return malloc(size);
  kill_guard_take();
  void *p = malloc(size);
  kill_guard_give();
  return p;
}
static void kill_guard_free(void *p, void *ctx) {
  (void)ctx;
  if (kill_guard_held_here) {
    free(p);
    return;
  }
  kill_guard_take();
  free(p);
  kill_guard_give();
}

/* The library's window in which a killed thread leaks a node block
 * (core/test_hooks.c, mbx__test_release_window_guard) is held under the
 * lock too, so the kills of a test that looks for leaks never land there:
 * that leak is accepted and documented (<mbx/thread.h>, "Abnormal death"),
 * and LeakSanitizer reported it in about 1 torture run in 10 with floods.
 * Re-entrant on the thread that holds the lock: the drop may free. */
static _Thread_local int kill_guard_window_took;
static void kill_guard_window(int enter) {
  if (enter) {
    if (kill_guard_held_here)
      return; /* main during a kill, or nested: ours already */
    kill_guard_take();
    kill_guard_held_here = 1;
    kill_guard_window_took = 1;
  } else if (kill_guard_window_took) {
    kill_guard_window_took = 0;
    kill_guard_held_here = 0;
    kill_guard_give();
  }
}
void mbx__test_release_window_guard(void (*guard)(int enter));

/* A killed worker's mailbox closed: it is gone, give the lock back once
 * every killed worker is. */
static void kill_guard_on_close(mbx_handle closed, int reason, void *arg) {
  (void)arg;
  if (reason != MBX_CANCEL_ABNORMAL_EXIT || !kill_guard_held_here)
    return;
  for (int i = 0; i < kill_guard_dying_count; i++)
    if (kill_guard_dying[i].bits == closed.bits) {
      kill_guard_dying[i] = kill_guard_dying[--kill_guard_dying_count];
      if (kill_guard_dying_count == 0) {
        kill_guard_held_here = 0;
        kill_guard_give();
      }
      return;
    }
}

/* Whether a killed worker's mailbox is still to be closed: main then
 * holds the lock, and any other thread that allocates or frees through the
 * library waits for it. So main must not block on such a thread (join it)
 * before this is 0: the close runs from main's event loop, which a blocked
 * main never returns to (torture hung so, 1 run in about 150 under load:
 * a worker killed once the senders were done, then the join of an exiting
 * sender). Main thread only. */
static inline int kill_guard_closes_pending(void) {
  return kill_guard_dying_count;
}

/* On the main thread, before any other mbx call (mbx_set_allocator's rule). */
static inline void kill_guard_install(void) {
  CHECK_EQ(mbx_set_allocator(kill_guard_alloc, kill_guard_free, NULL), MBX_OK);
  CHECK_EQ(mbx_on_mailbox_close(kill_guard_on_close, NULL, NULL), MBX_OK);
  mbx__test_release_window_guard(kill_guard_window);
}

/* mbx_test_terminate_thread once no thread is inside the library's
 * allocator; none enters it until the worker's mailbox was closed as
 * abnormally ended. Main thread only. Returns what it returns. */
static inline int kill_guard_terminate(pthread_t thread) {
  if (!kill_guard_held_here) {
    // Acquire: on success we hold the lock (pairs with kill_guard_give).
    if (atomic_flag_test_and_set_explicit(&kill_guard_lock,
                                          memory_order_acquire)) {
      // Relaxed: a statistic, read after the threads it counts have ended.
      atomic_fetch_add_explicit(&kill_guard_waits, 1, memory_order_relaxed);
      kill_guard_take();
    }
    kill_guard_held_here = 1;
  }
  CHECK(kill_guard_dying_count < KILL_GUARD_MAX_DYING);
  mbx_handle h = mbx_thread_handle(thread);
  int found = mbx_test_terminate_thread(thread);
  if (found)
    kill_guard_dying[kill_guard_dying_count++] = h;
  else if (kill_guard_dying_count == 0) {
    kill_guard_held_here = 0;
    kill_guard_give();
  }
  return found;
}

#endif
#endif
