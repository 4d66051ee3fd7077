/* The allocator hooks: mbx_set_allocator, and mbx__alloc / mbx__free through
 * which the core and the layers above it take all their memory. */
#include "record.h"

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
  /* Made by the allocator being replaced. */
  mbx__node_cache_flush();
  mbx__layers_allocator_change();
  mbx__node_parked_free();
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
