// mbx-test-timeout: 60
/*
 * A thread with a pthread_cancel pending that meets a cancellation point
 * while it holds one of the library's locks must not end there: the lock
 * would stay held for good and every later taker would hang. Here the
 * point is in the allocator (mbx_set_allocator's: on Emscripten 5.x the
 * sanitizer allocator's futex wait is one the same way), reached while
 * mbx_mailbox_create allocates a new chunk of records under the registry
 * lock. The thread fills the current chunk first, so that its one create
 * with the cancel pending is the one that allocates. Now the create
 * completes (the library holds off cancellation under its locks), the
 * thread ends at its next cancellation point, and main creates mailboxes
 * afterwards. Before (core/lock.h taken back, bf5ebe4) the thread ended
 * in the allocator and main's next create hung on the registry lock.
 */
#include "watchdog.h"

#include <mbx/mailbox.h>
#include <pthread.h>
#include <stdlib.h>

#define CHUNK_RECORDS 64 /* core/table.c */

static _Thread_local int tls_cancel_in_alloc;
static _Atomic int g_points, g_created;

/* A cancellation point in every allocation of the thread under test. */
static void *alloc_with_point(size_t size, void *ctx) {
  (void)ctx;
  if (tls_cancel_in_alloc) {
    atomic_fetch_add(&g_points, 1);
    pthread_testcancel();
  }
  return malloc(size);
}
static void free_plain(void *p, void *ctx) {
  (void)ctx;
  free(p);
}

static uint64_t records_total(void) {
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  return m.records_total;
}

static void *creates_with_cancel_pending(void *arg) {
  (void)arg;
  mbx_handle h;
  /* Fill the chunk: the next record then needs a new one. */
  while (records_total() % CHUNK_RECORDS != 0)
    CHECK_EQ(mbx_mailbox_create(&h), MBX_OK);
  uint64_t before = records_total();
  CHECK_EQ(pthread_cancel(pthread_self()), 0); /* pending: deferred */
  tls_cancel_in_alloc = 1;
  CHECK_EQ(mbx_mailbox_create(&h), MBX_OK);
  tls_cancel_in_alloc = 0;
  CHECK_EQ(records_total(), before + 1);
  atomic_store(&g_created, 1);
  for (;;)
    pthread_testcancel(); /* the cancel acts here */
  return NULL;
}

int main(void) {
  CHECK_EQ(mbx_set_allocator(alloc_with_point, free_plain, NULL), MBX_OK);
  watchdog_start(30000, "cancel_under_lock (the registry lock kept by a "
                        "thread canceled under it?)");
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_points, 0);
    atomic_store(&g_created, 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, creates_with_cancel_pending, NULL), 0);
    void *result = NULL;
    CHECK_EQ(pthread_join(t, &result), 0);
    CHECK(result == PTHREAD_CANCELED);
    CHECK(atomic_load(&g_points) >= 1); /* the allocation was reached */
    CHECK_EQ(atomic_load(&g_created), 1);
    mbx_handle h; /* the registry lock is free */
    CHECK_EQ(mbx_mailbox_create(&h), MBX_OK);
  }
  printf("PASS cancel_under_lock: 3 threads with a cancel pending allocated "
         "a chunk of records under the registry lock, ended at their next "
         "cancellation point, and main created mailboxes afterwards\n");
  return 0;
}
