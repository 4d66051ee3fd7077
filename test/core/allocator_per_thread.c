// mbx-test-timeout: 60
/*
 * Issue 18 item 13: mbx_set_allocator's precondition must cover (or the
 * library must handle) per-thread state of threads that only serve proxy
 * calls: such a thread holds a per-thread proxy block (and may cache a
 * call record) made by allocator A, freed at its exit. If mbx_set_allocator
 * accepts the switch to B (it returns MBX_OK, with every documented
 * precondition met: no message in flight, the other thread keeps no
 * nodes, it made no sync call), no block of A may ever reach B's free.
 * Issue 17: a mailbox keeps the node of the last message it took as its
 * queue's dummy, so a node block of A may outlive the switch in any mailbox
 * that received something (here the server's and main's): it must be freed
 * with A.
 */
#include "check.h"

#include <mbx/proxy.h>
#include <pthread.h>

typedef struct tag {
  uint64_t owner; /* 'A' or 'B' */
  uint64_t pad;
} tag;
static _Atomic int g_foreign_frees;

static void *alloc_tagged(size_t size, void *ctx) {
  tag *t = malloc(sizeof(tag) + size);
  if (!t)
    return NULL;
  t->owner = (uint64_t)(uintptr_t)ctx;
  return t + 1;
}
static void free_tagged(void *ptr, void *ctx) {
  tag *t = (tag *)ptr - 1;
  if (t->owner != (uint64_t)(uintptr_t)ctx)
    atomic_fetch_add(&g_foreign_frees, 1);
  free(t);
}

static mbx_handle g_server;
static _Atomic int g_ready, g_served, g_exit;
static void work(void *arg) {
  (void)arg;
  atomic_store(&g_served, 1);
}

static void *server(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_thread_attach(&g_server), MBX_OK);
  atomic_store(&g_ready, 1);
  while (!atomic_load(&g_exit))
    mbx_wait(5);
  while (mbx_poll() > 0) {
  }
  mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
  return NULL;
}

static _Atomic int g_ran;
static void ran(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
}

/* Main takes a message sent with A, so its dummy is a node of A; after the
 * switch it takes one sent with B, which releases that dummy. */
static void check_dummy_outlives_switch(void) {
  mbx_handle self = mbx_self();
  CHECK_EQ(mbx_send(self, ran, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 1);
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  CHECK(m.nodes_cached >= 1); /* at least the dummy */
  CHECK_EQ(mbx_set_allocator(alloc_tagged, free_tagged, (void *)'B'), MBX_OK);
  mbx_memory_stats_get(&m);
  CHECK_EQ(m.nodes_cached, 32); /* the dummy's block of A, nothing else */
  CHECK_EQ(mbx_send(self, ran, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 1); /* releases A's block: parked, or freed */
  CHECK_EQ(atomic_load(&g_ran), 2);
  CHECK_EQ(atomic_load(&g_foreign_frees), 0);
  CHECK_EQ(mbx_set_allocator(alloc_tagged, free_tagged, (void *)'A'), MBX_OK);
}

int main(void) {
  CHECK_EQ(mbx_set_allocator(alloc_tagged, free_tagged, (void *)'A'), MBX_OK);
  CHECK_EQ(mbx_thread_attach(NULL), MBX_OK);
  check_dummy_outlives_switch();
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, server, NULL), 0);
  wait_for_count(&g_ready, 1);
  for (int i = 0; i < 10; i++)
    CHECK_EQ(mbx_proxy_sync(g_server, work, NULL), MBX_OK);
  sleep_ms(20); /* nothing in flight; the server idles */
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  int rc = mbx_set_allocator(alloc_tagged, free_tagged, (void *)'B');
  atomic_store(&g_exit, 1);
  pthread_join(t, NULL);
  mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
  printf("set_allocator=%s nodes_cached_before=%llu foreign_frees=%d\n",
         mbx_strerror(rc), (unsigned long long)m.nodes_cached,
         atomic_load(&g_foreign_frees));
  CHECK_EQ(atomic_load(&g_foreign_frees), 0);
  printf("PASS allocator_per_thread\n");
  return 0;
}
