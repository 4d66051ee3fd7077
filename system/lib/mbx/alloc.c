/* Allocation hooks and sharded process-wide counters. */
#include "internal.h"

#include <stdlib.h>

static void *default_alloc(size_t size, void *ctx) {
  (void)ctx;
  return malloc(size);
}
static void default_free(void *ptr, void *ctx) {
  (void)ctx;
  free(ptr);
}

/* Relaxed: the allocator is configured before use (documented); the atomics
 * only keep a concurrent reconfiguration from being a data race. */
static _Atomic(mbx_alloc_fn) g_alloc = default_alloc;
static _Atomic(mbx_free_fn) g_free = default_free;
static _Atomic(void *) g_ctx;

int mbx_set_allocator(mbx_alloc_fn alloc, mbx_free_fn free_fn, void *ctx) {
  if ((alloc == NULL) != (free_fn == NULL))
    return MBX_EINVAL;
  atomic_store_explicit(&g_ctx, ctx, memory_order_relaxed); // see g_alloc
  atomic_store_explicit(&g_alloc, alloc ? alloc : default_alloc,
                        memory_order_relaxed); // see g_alloc
  atomic_store_explicit(&g_free, free_fn ? free_fn : default_free,
                        memory_order_relaxed); // see g_alloc
  return MBX_OK;
}

void *mbx__alloc(size_t size) {
  // Relaxed: see g_alloc.
  return atomic_load_explicit(&g_alloc, memory_order_relaxed)(
      size, atomic_load_explicit(&g_ctx, memory_order_relaxed));
}

void mbx__free(void *ptr) {
  if (ptr)
    // Relaxed: see g_alloc.
    atomic_load_explicit(&g_free, memory_order_relaxed)(
        ptr, atomic_load_explicit(&g_ctx, memory_order_relaxed));
}

mbx_node *mbx__node_alloc(void) {
  mbx_node *n = mbx__alloc(sizeof *n);
  if (n)
    mbx__stat_add(MBX_STAT_NODE_ALLOC, 1);
  return n;
}

void mbx__node_free(mbx_node *n) {
  mbx__free(n);
  mbx__stat_add(MBX_STAT_NODE_FREE, 1);
}

/* ---- sharded counters */

#define SHARD_COUNT 16
typedef struct stat_shard {
  _Alignas(64) _Atomic uint64_t v[MBX_STAT_COUNT];
} stat_shard;
static stat_shard g_shards[SHARD_COUNT];
static _Atomic uint32_t g_next_shard;
static _Thread_local uint32_t tls_shard_plus_one;

void mbx__stat_add(int which, uint64_t n) {
  uint32_t s = tls_shard_plus_one;
  if (s == 0) {
    // Relaxed: only spreads threads over shards; no data is published.
    s = atomic_fetch_add_explicit(&g_next_shard, 1, memory_order_relaxed) %
            SHARD_COUNT +
        1;
    tls_shard_plus_one = s;
  }
  // Relaxed: a pure counter; readers want a sum, not ordering.
  atomic_fetch_add_explicit(&g_shards[s - 1].v[which], n, memory_order_relaxed);
}

uint64_t mbx__stat_sum(int which) {
  uint64_t sum = 0;
  for (int i = 0; i < SHARD_COUNT; i++)
    // Relaxed: a snapshot of counters; see mbx_stats_global's contract.
    sum += atomic_load_explicit(&g_shards[i].v[which], memory_order_relaxed);
  return sum;
}
