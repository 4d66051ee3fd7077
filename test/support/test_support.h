/* The test-only JS functions of test_support.js, which CMake links into
 * every test/thread program on Emscripten. Main thread only, as noted. */
#ifndef MBX_TEST_SUPPORT_H
#define MBX_TEST_SUPPORT_H
#ifdef __EMSCRIPTEN__

#include <pthread.h>

/* Hides the native Atomics.waitAsync from the calling thread's JS realm.
 * Returns 1, or 0 if it had none. */
int mbx_test_hide_wait_async(void);

/* Terminates the worker hosting thread, as a crashed worker would end.
 * Main thread only. Returns 1 if a worker was found. */
int mbx_test_terminate_thread(pthread_t thread);

#endif
#endif
