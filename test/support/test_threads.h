/* Message handlers and thread bodies that several test/thread programs
 * share: a handler that keeps its thread busy until released (so what is
 * sent after it stays queued), one that ends its thread from inside a
 * handler, a thread that blocks forever without ever polling its mailbox,
 * one that serves its mailbox until told to stop, and the three ways a
 * thread body can end. Header-only. */
#ifndef MBX_TEST_TEST_THREADS_H
#define MBX_TEST_TEST_THREADS_H

/* First: its feature macros must come before any system header. */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>

/* Handler: spins (yielding) while the _Atomic int that arg points to is
 * non-zero. */
static inline void stay_busy(void *hold) {
  while (atomic_load((_Atomic int *)hold))
    sched_yield();
}

/* Handler: ends its thread with pthread_exit((void *)5). */
static inline void quit(void *unused) {
  (void)unused;
  pthread_exit((void *)5);
}

/* Thread body: adds 1 to the _Atomic int that arg points to, then waits on
 * a condition nobody signals. Its mailbox is never polled; only the runtime
 * ends it (exit, a terminated worker). */
static inline void *block_forever(void *ready) {
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
  atomic_fetch_add((_Atomic int *)ready, 1);
  pthread_mutex_lock(&lock);
  for (;;)
    pthread_cond_wait(&never, &lock);
  return NULL;
}

/* Thread body: serves its mailbox (mbx_wait, 5 ms at a time) until the
 * _Atomic int that arg points to is non-zero. */
static inline void *serve_until(void *stop) {
  while (!atomic_load((_Atomic int *)stop))
    mbx_wait(5);
  return NULL;
}

/* How a thread ends: returning, by pthread_exit, or canceled. */
enum { END_BY_RETURN, END_BY_PTHREAD_EXIT, END_BY_CANCEL };

/* A thread body's last step, `return end_thread(how);`: returns NULL for
 * the body to return, calls pthread_exit(NULL), or waits in a cancellation
 * point until the pthread_cancel its creator sends ends it. */
static inline void *end_thread(int how) {
  if (how == END_BY_PTHREAD_EXIT)
    pthread_exit(NULL);
  if (how == END_BY_CANCEL)
    for (;;)
      pthread_testcancel();
  return NULL;
}

#endif
