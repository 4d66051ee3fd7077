/* Vyukov's multi-producer single-consumer queue with a rotating dummy, the
 * mailbox's message list. Producers exchange the tail and then link the
 * previous node; the single consumer pops from the head. The head is always
 * a dummy: first the record's stub, then the node of the message popped
 * last, whose payload the consumer has taken. So a pop is one plain head
 * store and the consumer never writes the tail, the line every producer
 * exchanges on (re-pushing the stub there when the queue emptied put that
 * line in the consumer's cache once per message: issue 17). The cost: the
 * last popped node stays in the queue until the next pop or the close
 * (mbx__queue_take_dummy), and keeps its node block allocated. Between a
 * producer's exchange and its link the queue looks empty from that node
 * on, and pop says so instead of spinning. Private to the core. */
#ifndef MBX__QUEUE_H
#define MBX__QUEUE_H

#include "layer.h"

#include <stddef.h>

typedef struct mbx__queue_ends {
  _Atomic(mbx__node *) *tail; /* producers exchange here */
  mbx__node **head;           /* consumer only */
  mbx__node *stub;            /* the first dummy, never released */
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

/* The consumer only (the consumer token's holder). Returns the node of the
 * next message, or NULL when empty or when a producer is between its
 * exchange and its link (that producer is still inside the gate and has not
 * counted the message in pending yet, so nothing is lost by stopping:
 * docs/design.md, "The queue"). The returned node becomes the head: its
 * payload is the caller's to read, and it stays valid until the next pop or
 * mbx__queue_take_dummy. *retired: the head it replaced, whose message was
 * popped before and which nobody will read again (NULL for the stub), for
 * the caller to release. A consumer that dies anywhere in here leaves a
 * valid queue: its only write is the head. */
static inline mbx__node *mbx__queue_pop(mbx__queue_ends q,
                                        mbx__node **retired) {
  mbx__node *head = *q.head;
  // Acquire: pairs with the release link in push; the payload is visible.
  mbx__node *next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (!next)
    return NULL;
  *q.head = next;
  *retired = head == q.stub ? NULL : head;
  return next;
}

/* Empty the queue (no producer or consumer may be active). */
static inline void mbx__queue_reset(mbx__queue_ends q) {
  // Relaxed: the caller publishes the reset queue with a later release.
  atomic_store_explicit(&q.stub->next, NULL, memory_order_relaxed);
  atomic_store_explicit(q.tail, q.stub, memory_order_relaxed); // see above
  *q.head = q.stub;
  q.stub->arg = NULL; /* no message popped (core/record.h MBX__POPPED) */
}

/* The closer, once it popped everything and no producer is active (close
 * step C): returns the last dummy to release (NULL if it is the stub) and
 * empties the queue (mbx__queue_reset), so that no closed life keeps a
 * node. */
static inline mbx__node *mbx__queue_take_dummy(mbx__queue_ends q) {
  mbx__node *head = *q.head;
  /* Every producer linked its node (step B), and the closer popped them
   * all: the queue ends at the head. */
  // Relaxed: the closer is the queue's only user now.
  MBX_ASSERT(atomic_load_explicit(q.tail, memory_order_relaxed) == head);
  mbx__queue_reset(q);
  return head == q.stub ? NULL : head;
}

#endif
