/*
 * Message nodes: carved from per-thread blocks, released in batches by the
 * thread that consumed them, and a few empty blocks parked for reuse.
 */
#include "record.h"

#include <pthread.h>

/*
 * Node blocks. A malloc and a free per message serialise every sender and
 * the receiver on the allocator's lock (Emscripten's dlmalloc has one global
 * lock), so a sender carves nodes from a block of NODE_BLOCK nodes it owns,
 * one allocation per block. A block counts the nodes not yet consumed plus
 * those not yet carved; each consumed node decrements it, and whoever takes
 * it to zero frees the block. Nodes of one block are normally consumed by
 * one receiver one after another, so it drops them from the count in one
 * step (mbx__node_release batches per record).
 * Bounds: a sending thread holds one partly carved block, given back when it
 * exits (TSD destructor) or closes its mailbox; a message still queued keeps
 * at most its own block alive; a thread's spare call record keeps its unsent
 * reply node, and so that node's block, until its exit (proxy/ctx.c).
 *
 * Every node handed out has a NULL link, so that a sender writes nothing
 * into the node it pushes (it used to store that link and the block
 * pointer there, each send pulling a line the receiver had read: issue
 * 17). The links are set here, all of a block's at once, when the block is
 * made or taken from the park. A consumer leaves the link of a node it
 * popped as it is: clearing it there took the line from the sender once
 * per message (core/queue.h), where a block's sender takes its lines once
 * per block and without a barrier after each store.
 */
#define NODE_BLOCK 32

typedef struct mbx__node_block {
  _Atomic uint32_t unconsumed; /* nodes not yet freed, carved or not */
  uint32_t slots;
  mbx__node nodes[];
} mbx__node_block;

static _Thread_local mbx__node_block *tls_block;
static _Thread_local uint32_t tls_carved;
/* 1: the TSD destructor will give tls_block back; -1: no TSD key. */
static _Thread_local int tls_registered;
static pthread_key_t g_block_key;
static pthread_once_t g_block_once = PTHREAD_ONCE_INIT;
static int g_block_key_ok;

static void block_destructor(void *unused) {
  (void)unused;
  mbx__node_cache_flush();
}

static void block_key_create(void) {
  g_block_key_ok = pthread_key_create(&g_block_key, block_destructor) == 0;
}

/* Whether the calling thread may keep a partly carved block: only if its
 * exit will give it back. */
static int may_keep_block(void) {
  if (tls_registered)
    return tls_registered > 0;
  pthread_once(&g_block_once, block_key_create);
  tls_registered =
      g_block_key_ok && pthread_setspecific(g_block_key, (void *)1) == 0 ? 1
                                                                         : -1;
  return tls_registered > 0;
}

static size_t block_bytes(uint32_t slots) {
  return sizeof(mbx__node_block) + slots * sizeof(mbx__node);
}

/* What a block takes from the allocator (mbx_memory_stats.bytes_live). */
static size_t block_alloc_bytes(uint32_t slots) {
  return mbx__kept_bytes(block_bytes(slots));
}

/* Fully consumed blocks wait in a stash for the next sender that needs one
 * (when the receiver keeps up it frees a block for every one a sender
 * allocates). Stashed blocks stay counted as allocated
 * (mbx_memory_stats.nodes_cached); mbx_set_allocator frees them. */
static mbx__stash g_parked;

static int block_park(mbx__node_block *b) {
  return b->slots == NODE_BLOCK && mbx__stash_put(&g_parked, b);
}

static mbx__node_block *block_unpark(void) {
  return mbx__stash_take(&g_parked);
}

static void block_release(mbx__node_block *b) {
  mbx__counter_add(MBX__STAT_NODE_SLOTS_FREE, b->slots);
  mbx__counter_add(MBX__STAT_NODE_BYTES_FREE, block_alloc_bytes(b->slots));
  mbx__free_kept(b);
}

static void block_free(mbx__node_block *b) {
  if (!block_park(b))
    block_release(b);
}

void mbx__node_parked_free(void) {
  for (mbx__node_block *b; (b = block_unpark()) != NULL;)
    block_release(b);
}

/* Drop n uncarved or consumed nodes from b's count. */
static void block_drop(mbx__node_block *b, uint32_t n) {
  // Acq_rel: release orders our reads of the nodes before the free by
  // whoever drops the last; acquire makes that thread see everyone's.
  uint32_t before =
      atomic_fetch_sub_explicit(&b->unconsumed, n, memory_order_acq_rel);
  MBX_ASSERT(before >= n); /* never more drops than nodes */
  if (before == n)
    block_free(b);
}

void mbx__node_cache_flush(void) {
  mbx__node_block *b = tls_block;
  /* A destructor of another key may send again: register anew then. */
  if (tls_registered > 0)
    tls_registered = 0;
  /* Drop, then forget: until the drop has freed or parked the block, our
   * TLS still points to it. A leak check that runs meanwhile on another
   * thread (a process exit) cannot see our locals on wasm, and reported a
   * block that only a local pointed to as leaked (CI, stop 22). */
  if (b && tls_carved < b->slots)
    block_drop(b, b->slots - tls_carved);
  tls_block = NULL;
}

mbx__node *mbx__node_alloc(void) {
  mbx__node_block *b = tls_block;
  if (!b) {
    uint32_t slots = may_keep_block() ? NODE_BLOCK : 1;
    b = slots == NODE_BLOCK ? block_unpark() : NULL;
    if (!b) {
      b = mbx__alloc_kept(block_bytes(slots));
      if (!b)
        return NULL;
      b->slots = slots;
      for (uint32_t i = 0; i < slots; i++)
        b->nodes[i].u.block = b;
      mbx__counter_add(MBX__STAT_NODE_SLOTS_ALLOC, slots);
      mbx__counter_add(MBX__STAT_NODE_BYTES_ALLOC, block_alloc_bytes(slots));
    }
    /* Every node handed out has a NULL link: a new block's are garbage, a
     * parked block's nodes kept the links of the queues they left. Plain
     * stores: the block is private until its nodes are sent, and sends
     * publish them. */
    for (uint32_t i = 0; i < slots; i++)
      atomic_init(&b->nodes[i].next, NULL);
    // Relaxed: the block is private until its nodes are sent, and sends
    // publish them.
    atomic_store_explicit(&b->unconsumed, slots, memory_order_relaxed);
    if (slots == 1)
      return &b->nodes[0];
    tls_carved = 0;
    tls_block = b;
  }
  /* A kept block has NODE_BLOCK nodes, and nothing here reads its header:
   * receivers' drops write the count beside `slots`, and reading `slots`
   * per send took that line from the sender (perf, issue 17). Carve in a
   * stride, not in order: consecutive messages then sit on different cache
   * lines, so the sender filling the tail does not steal the line the
   * receiver is reading the message before from. 7 is coprime with
   * NODE_BLOCK, so every slot is used once. */
  mbx__node *n = &b->nodes[(tls_carved * 7) % NODE_BLOCK];
  if (++tls_carved == NODE_BLOCK)
    tls_block = NULL; /* fully carved: its consumers free it */
  // Relaxed: an assertion-only look (the block's acquire brought it).
  MBX_ASSERT(!atomic_load_explicit(&n->next, memory_order_relaxed));
  return n;
}

void mbx__node_free(mbx__node *n) { block_drop(n->u.block, 1); }

void mbx__node_release(mbx__record *r, mbx__node *n) {
  if (n == &r->stub)
    return; /* it has no block: its union holds MBX__POPPED */
  if (n->u.block != r->release_block) {
    mbx__node_release_flush(r);
    r->release_block = n->u.block;
  }
  r->release_count++;
}

void mbx__node_release_flush(mbx__record *r) {
  uint32_t count = r->release_count;
  mbx__node_block *b = r->release_block;
  if (!count)
    return;
  /* Forget the batch before dropping it: an owner killed in between then
   * leaks one block, instead of its orphan's closer dropping it twice. */
  mbx__test_guard_fn guard =
      mbx__test_hooks_on()
          // Relaxed: see mbx__test_release_window_guard.
          ? atomic_load_explicit(&mbx__test_release_guard, memory_order_relaxed)
          : NULL;
  if (guard)
    guard(1);
  r->release_block = NULL;
  r->release_count = 0;
  block_drop(b, count);
  if (guard)
    guard(0);
}
