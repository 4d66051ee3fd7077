/* The test-only JS functions of test_support.js, which CMake links into
 * every test/thread program on Emscripten, the main thread's part of tests
 * driven by a coordinator thread, and an event-loop thread body. Main
 * thread only, as noted. */
#ifndef MBX_TEST_SUPPORT_H
#define MBX_TEST_SUPPORT_H
#ifdef __EMSCRIPTEN__

#include "check.h"

#include <emscripten/emscripten.h>
#include <mbx/thread.h>
#include <pthread.h>

/* Hides the native Atomics.waitAsync from the calling thread's JS realm.
 * Returns 1, or 0 if it had none. */
int mbx_test_hide_wait_async(void);

/* Terminates the worker hosting thread, as a crashed worker would end.
 * Main thread only. Returns 1 if a worker was found. */
int mbx_test_terminate_thread(pthread_t thread);

/* Thread body: serves the thread's mailbox from its JS event loop for good
 * (it ends when its worker is killed or the runtime exits); sets the
 * _Atomic int that ready points to once attached. */
static inline void *test_event_loop_thread(void *ready) {
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store((_Atomic int *)ready, 1);
  emscripten_exit_with_live_runtime();
  return NULL;
}

/* As test_event_loop_thread, woken by posted tasks instead of
 * Atomics.waitAsync (it hides that first), as without a native one. */
static inline void *test_posted_event_loop_thread(void *ready) {
  mbx_test_hide_wait_async();
  return test_event_loop_thread(ready);
}

/* Waits, up to 10 s, until mailbox h has nothing pending. An owner's drain
 * takes its count off pending only after the handlers ran, so a flag that
 * a handler sets is seen first: a check of pending right after it can read
 * the message still counted (post_wake_canceled failed so once in CI,
 * 3.1.6 wasm-asan). Any thread. */
static inline void test_wait_drained(mbx_handle h) {
  mbx_stats st;
  for (int i = 0; i < 10000 && mbx_stats_get(h, &st) == MBX_OK && st.pending;
       i++)
    sleep_ms(1);
}

/* Main thread: serve its event loop for the rest of the test while
 * coordinator(arg) drives it on a detached thread and ends it
 * (emscripten_force_exit). Attaches main's mailbox to its event loop, so
 * work sent to main runs there (Emscripten kills workers from main).
 * Does not return. */
static inline void test_main_serves_loop(void *(*coordinator)(void *),
                                         void *arg) {
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, coordinator, arg), 0);
  CHECK_EQ(pthread_detach(t), 0);
  emscripten_exit_with_live_runtime();
}

#endif
#endif
