/* The allocator hooks: mbx_set_allocator, mbx__alloc / mbx__free through
 * which the core and the layers above it take all their memory, and the
 * stashes of freed objects kept for reuse. */
#include "record.h"

#include <stddef.h>
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

/* What mbx__alloc_kept puts before the block: the allocator that made it,
 * padded so that the block keeps malloc's alignment. */
typedef struct kept_header {
  _Alignas(max_align_t) mbx_free_fn free_fn;
  void *ctx;
} kept_header;

void *mbx__alloc_kept(size_t size) {
  // Relaxed (all three): see g_alloc.
  void *ctx = atomic_load_explicit(&g_ctx, memory_order_relaxed);
  mbx_free_fn free_fn = atomic_load_explicit(&g_free, memory_order_relaxed);
  kept_header *h = atomic_load_explicit(&g_alloc, memory_order_relaxed)(
      sizeof(kept_header) + size, ctx);
  if (!h)
    return NULL;
  h->free_fn = free_fn;
  h->ctx = ctx;
  return h + 1;
}

void mbx__free_kept(void *ptr) {
  if (ptr) {
    kept_header *h = (kept_header *)ptr - 1;
    h->free_fn(h, h->ctx);
  }
}

int mbx__stash_put(mbx__stash *s, void *p) {
  for (int i = 0; i < MBX__STASH_SLOTS; i++) {
    void *empty = NULL;
    // Release: the taker sees our last uses of p done. Relaxed on failure:
    // the slot is taken, try the next.
    if (atomic_compare_exchange_strong_explicit(
            &s->slot[i], &empty, p, memory_order_release, memory_order_relaxed))
      return 1;
  }
  return 0;
}

void *mbx__stash_take(mbx__stash *s) {
  for (int i = 0; i < MBX__STASH_SLOTS; i++) {
    // Relaxed: a cheap look before the exchange (an RMW even on an empty
    // slot would pull its line from the putters).
    if (!atomic_load_explicit(&s->slot[i], memory_order_relaxed))
      continue;
    // Acquire: pairs with mbx__stash_put's release.
    void *p = atomic_exchange_explicit(&s->slot[i], NULL, memory_order_acquire);
    if (p)
      return p;
  }
  return NULL;
}
