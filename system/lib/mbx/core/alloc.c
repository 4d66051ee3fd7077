/* The allocator hooks: mbx_set_allocator, mbx__alloc / mbx__free through
 * which the core and the layers above it take all their memory, and the
 * stashes of freed objects kept for reuse. */
#include "record.h"

#include <stddef.h>
#include <stdint.h>
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

/*
 * Kept objects (node blocks, call records, per-thread proxy state) are the
 * data that threads share message by message, so each gets whole cache
 * lines: it starts on a line and its size is rounded up to lines, and no
 * other allocation shares a line with it. From malloc a node block's first
 * and last lines were shared with whatever lay beside it on the heap, a
 * sending thread's stack or another thread's block, and a receiver that
 * RMWs the block's count (or reads its first nodes) then took that line
 * from a thread writing its neighbour once per message. Which neighbour a
 * block got changes from run to run. (Issue 17: the wasm flood with 1
 * producer runs at about 20 M messages per second in some repetitions and
 * 45 M in others. In the two of five alternating comparisons where most
 * repetitions were slow, whole lines moved the median from 21 to 30 and
 * from 23 to 37 M; in the other three, within noise.) The header before
 * the object remembers the allocator that made it and the pointer it
 * returned.
 */
#define KEPT_LINE 64

typedef struct kept_header {
  mbx_free_fn free_fn;
  void *ctx;
  void *raw; /* what the allocator returned */
} kept_header;

static size_t kept_lines(size_t size) {
  return (size + KEPT_LINE - 1) / KEPT_LINE * KEPT_LINE;
}

size_t mbx__kept_bytes(size_t size) {
  return sizeof(kept_header) + KEPT_LINE - 1 + kept_lines(size);
}

void *mbx__alloc_kept(size_t size) {
  // Relaxed (all three): see g_alloc.
  void *ctx = atomic_load_explicit(&g_ctx, memory_order_relaxed);
  mbx_free_fn free_fn = atomic_load_explicit(&g_free, memory_order_relaxed);
  unsigned char *raw = atomic_load_explicit(&g_alloc, memory_order_relaxed)(
      mbx__kept_bytes(size), ctx);
  if (!raw)
    return NULL;
  /* The first line boundary that leaves room for the header. */
  uintptr_t at = ((uintptr_t)(raw + sizeof(kept_header)) + KEPT_LINE - 1) &
                 ~(uintptr_t)(KEPT_LINE - 1);
  kept_header *h = (kept_header *)at - 1;
  h->free_fn = free_fn;
  h->ctx = ctx;
  h->raw = raw;
  return (void *)at;
}

void mbx__free_kept(void *ptr) {
  if (ptr) {
    kept_header *h = (kept_header *)ptr - 1;
    h->free_fn(h->raw, h->ctx);
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
