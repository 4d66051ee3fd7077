/* Vyukov's multi-producer single-consumer queue with a rotating dummy, the
 * mailbox's message list. Producers exchange the tail and then link the
 * previous node; the single consumer pops from the head. The head is always
 * a dummy: first the record's stub, then the node a producer exchanged in
 * last before the message popped last. The consumer never writes the tail,
 * the line every producer exchanges on (re-pushing the stub there when the
 * queue emptied put that line in the consumer's cache once per message:
 * issue 17).
 *
 * A message's payload goes into the node before its own: a producer that
 * exchanged n in behind prev writes the payload into prev and then links
 * prev->next = n, so that one line carries both, and the consumer reads
 * the link and the payload in one miss; n itself stays untouched until the
 * next producer fills it. With the payload in n, each message cost the
 * consumer two lines (prev's link, then n) and the producer two (it wrote n
 * and linked prev), and a bare mbx_send round trip to a thread in mbx_wait
 * took 20% longer (issue 17). So a producer must not write n either: its link
 * is NULL already, because the allocator hands out nodes with NULL links
 * (core/nodes.c). The consumer writes no node either: clearing the link of
 * each node it popped made it take that line from the producer once per
 * message (issue 17: native, 1 producer, 24.6 -> 15.8 ns without).
 *
 * A pop returns the head, whose payload is the next message's, and makes
 * the next node the head. Between a producer's exchange and its link the
 * queue looks empty from that node on, and pop says so instead of spinning.
 * Private to the core. */
#ifndef MBX__QUEUE_H
#define MBX__QUEUE_H

#include "layer.h"

#include <stddef.h>

typedef struct mbx__queue_ends {
  _Atomic(mbx__node *) *tail; /* producers exchange here */
  mbx__node **head;           /* consumer only */
  mbx__node *stub;            /* the first dummy, never released */
} mbx__queue_ends;

/* Any producer, first half of a push: n comes from mbx__node_alloc (its
 * link is NULL) and is private to the caller until the exchange. Returns
 * the node to link n behind (mbx__queue_link). */
static inline mbx__node *mbx__queue_exchange(_Atomic(mbx__node *) *tail,
                                             mbx__node *n) {
  // Acq_rel: release publishes n with its NULL link (stored by our
  // allocator when it took n's block); acquire orders our stores into prev
  // after the ones that made it the tail: its pusher's and its allocator's
  // clear.
  return atomic_exchange_explicit(tail, n, memory_order_acq_rel);
}

/* Second half: the message's payload goes into prev, then the link. Until
 * the link the consumer sees the queue end at prev. */
static inline void mbx__queue_link(mbx__node *prev, mbx__node *n,
                                   mbx_run_fn run, mbx_cancel_fn cancel,
                                   void *arg) {
  prev->run = run;
  prev->cancel = cancel;
  prev->arg = arg;
  // Release: the consumer's acquire load of prev->next sees the payload.
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* The consumer only (the consumer token's holder). Returns the node that
 * holds the next message's payload, or NULL when empty or when a producer
 * is between its exchange and its link (that producer has counted its
 * message in pending, so a waiter does not sleep on it and a closer waits
 * for it: docs/design.md, "The queue"). The returned node has left the
 * queue, its link still set (nobody reads it again; its block's next
 * allocator clears it): the caller reads its payload, then releases it
 * (mbx__node_release, which leaves the stub be). A consumer that dies
 * anywhere in here leaves a valid queue: its only write is the head. */
static inline mbx__node *mbx__queue_pop(mbx__queue_ends q) {
  mbx__node *head = *q.head;
  // Acquire: pairs with the release link in push; the payload is visible.
  mbx__node *next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (!next)
    return NULL;
  *q.head = next;
  return head;
}

/* Empty the queue (no producer or consumer may be active). */
static inline void mbx__queue_reset(mbx__queue_ends q) {
  // Relaxed: the caller publishes the reset queue with a later release.
  atomic_store_explicit(&q.stub->next, NULL, memory_order_relaxed);
  atomic_store_explicit(q.tail, q.stub, memory_order_relaxed); // see above
  *q.head = q.stub;
  q.stub->u.popped = NULL; /* no message popped (core/record.h MBX__POPPED) */
}

/* The closer, once it popped everything and no producer is active (close
 * step C): returns the last dummy to release (NULL if it is the stub) and
 * empties the queue (mbx__queue_reset), so that no closed life keeps a
 * node. */
static inline mbx__node *mbx__queue_take_dummy(mbx__queue_ends q) {
  mbx__node *head = *q.head;
  /* Every producer linked its node (step B), and the closer popped them
   * all: the queue ends at the head, whose link is NULL. */
  // Relaxed: the closer is the queue's only user now.
  MBX_ASSERT(atomic_load_explicit(q.tail, memory_order_relaxed) == head);
  mbx__queue_reset(q);
  return head == q.stub ? NULL : head;
}

#endif
