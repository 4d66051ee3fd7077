/*
 * The library's lock: a pthread mutex that its holder keeps with
 * cancellation disabled, so that no pthread_cancel can end a thread while
 * it holds one. Every mutex of the library is one of these.
 *
 * Why: a thread canceled while it holds a lock never unlocks it, and every
 * later taker hangs. Locking itself is no cancellation point, but what
 * runs under a lock can be: pthread_cond_wait (which re-locks the mutex
 * before the thread unwinds), and on Emscripten 5.x any futex wait with
 * cancellation enabled, which includes the allocator's under ASan and a
 * user's allocator (mbx_set_allocator) taking a musl-internal lock. Only
 * the functions listed in <mbx/mailbox.h> are cancellation points of the
 * library; with these, a lock-holding section never is one.
 *
 * The holder's previous cancel state lives in the lock, written and read
 * only by the holder. A condition wait hands the lock to others and gets
 * it back, so it keeps its own state across the wait (mbx__lock_wait).
 * Static inline, and only pthread calls: any layer may include it.
 */
#ifndef MBX__LOCK_H
#define MBX__LOCK_H

#include <pthread.h>
#include <time.h>

typedef struct mbx__lock {
  pthread_mutex_t mutex;
  int saved_cancel_state; /* the holder's, to restore on release */
} mbx__lock;

#define MBX__LOCK_INITIALIZER                                                  \
  { PTHREAD_MUTEX_INITIALIZER, 0 }

static inline void mbx__lock_init(mbx__lock *l) {
  pthread_mutex_init(&l->mutex, NULL);
  l->saved_cancel_state = 0;
}

static inline void mbx__lock_destroy(mbx__lock *l) {
  pthread_mutex_destroy(&l->mutex);
}

static inline void mbx__lock_acquire(mbx__lock *l) {
  int state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
  pthread_mutex_lock(&l->mutex);
  l->saved_cancel_state = state;
}

static inline void mbx__lock_release(mbx__lock *l) {
  int state = l->saved_cancel_state;
  pthread_mutex_unlock(&l->mutex);
  pthread_setcancelstate(state, NULL);
}

/* pthread_cond_wait (deadline NULL) or pthread_cond_timedwait on the
 * held lock; with cancellation disabled it is no cancellation point.
 * Returns what the pthread call returned. */
static inline int mbx__lock_wait(mbx__lock *l, pthread_cond_t *cond,
                                 const struct timespec *deadline) {
  int mine = l->saved_cancel_state;
  int rc = deadline ? pthread_cond_timedwait(cond, &l->mutex, deadline)
                    : pthread_cond_wait(cond, &l->mutex);
  l->saved_cancel_state = mine;
  return rc;
}

#endif
