/* Vyukov's intrusive multi-producer single-consumer queue, the mailbox's
 * message list. Producers exchange the tail and then link the previous
 * node; the single consumer pops from the head. Between a producer's
 * exchange and its link the queue looks empty from that node on, and pop
 * says so instead of spinning (see mbx__queue_pop). Private to the core. */
#ifndef MBX__QUEUE_H
#define MBX__QUEUE_H

#include "layer.h"

#include <stddef.h>

typedef struct mbx__queue_ends {
  _Atomic(mbx__node *) *tail; /* producers exchange here */
  mbx__node **head;           /* consumer only */
  mbx__node *stub;            /* sentinel, re-pushed when the queue empties */
} mbx__queue_ends;

/* Any producer, first half of a push: n is private to the caller until
 * the exchange. Returns the node to link n behind (mbx__queue_link). */
static inline mbx__node *mbx__queue_exchange(_Atomic(mbx__node *) *tail,
                                             mbx__node *n) {
  /* A plain store: n is private until the exchange's release publishes it
   * (an atomic store is a full-barrier exchange in wasm). */
  atomic_init(&n->next, NULL);
  // Acq_rel: release publishes n; acquire orders our store into prev after
  // prev's own initialisation by the producer that pushed it.
  return atomic_exchange_explicit(tail, n, memory_order_acq_rel);
}

/* Second half: until this link the consumer sees the queue end at prev. */
static inline void mbx__queue_link(mbx__node *prev, mbx__node *n) {
  // Release: the consumer's acquire load of prev->next sees n's contents.
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

static inline void mbx__queue_push(_Atomic(mbx__node *) *tail, mbx__node *n) {
  mbx__queue_link(mbx__queue_exchange(tail, n), n);
}

/* The consumer only. Returns NULL when empty, or when a producer is between
 * its exchange and its link (that producer is still inside the gate and has
 * not counted the message in pending yet, so nothing is lost by stopping:
 * docs/design.md, "The queue"). */
static inline mbx__node *mbx__queue_pop(mbx__queue_ends q) {
  mbx__node *head = *q.head;
  // Acquire (all loads of next): pairs with the release link in push.
  mbx__node *next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (head == q.stub) {
    if (!next)
      return NULL;
    *q.head = head = next;
    next = atomic_load_explicit(&head->next, memory_order_acquire);
  }
  if (next) {
    *q.head = next;
    return head;
  }
  // Acquire: pairs with push's exchange.
  if (atomic_load_explicit(q.tail, memory_order_acquire) != head)
    return NULL;
  mbx__queue_push(q.tail, q.stub);
  next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (next) {
    *q.head = next;
    return head;
  }
  return NULL;
}

/* The closer that took the queue from an owner that died inside a pop
 * (mbx__token_closer_claim's MBX__TOKEN_FORCED), once no producer is
 * active (close step B). Every state a pop leaves between its plain head
 * writes is a valid queue, but for one: the owner died re-pushing the stub
 * between its exchange and its link, which leaves the end of the chain
 * from head short of the tail. That missing link can only be the stub's
 * (every producer completed its own): restore it. */
static inline void mbx__queue_repair(mbx__queue_ends q) {
  mbx__node *n = *q.head;
  mbx__node *next;
  // Acquire (loads of next and of the tail): pairs with the producers'
  // release link and exchange.
  while ((next = atomic_load_explicit(&n->next, memory_order_acquire)) != NULL)
    n = next;
  if (n != atomic_load_explicit(q.tail, memory_order_acquire))
    // Relaxed: we are now the queue's only consumer and only reader.
    atomic_store_explicit(&n->next, q.stub, memory_order_relaxed);
}

/* Empty the queue (no producer or consumer may be active). */
static inline void mbx__queue_reset(mbx__queue_ends q) {
  // Relaxed: the caller publishes the reset queue with a later release.
  atomic_store_explicit(&q.stub->next, NULL, memory_order_relaxed);
  atomic_store_explicit(q.tail, q.stub, memory_order_relaxed); // see above
  *q.head = q.stub;
  q.stub->arg = NULL; /* no message popped (core/record.h MBX__POPPED) */
}

#endif
