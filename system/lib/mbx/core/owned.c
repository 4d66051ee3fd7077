/*
 * Queues of one's own (<mbx/queue.h>): extra mailboxes a thread owns,
 * drained only by mbx_queue_poll/mbx_queue_wait, and closed with the
 * thread's automatic mailbox at its exit or death.
 *
 * A queue is an ordinary record (gate, queue, counters, recycling), opened
 * with the owner's hold and marked bound so that no thread can bind it.
 * Its drains are core/drain.c's, on that record; its close is
 * core/closing.c's (MBX__CLOSE_QUEUE: steps A to E, cancellation disabled,
 * resumable), at the end of this file. The thread's open queues are listed in
 * an owned set found through a side table indexed by the automatic record's
 * index: by the owner, and by the closer of a dead owner (a killed worker's TLS
 * is gone; the record has no spare byte, and its layer slot is the proxy
 * layer's). Each entry is taken out with one exchange before its queue is
 * closed, so the owner and a closer never both close one, and a close that a
 * cancel function interrupted is resumed by the close machinery, not repeated.
 */
#include "record.h"

#include <mbx/queue.h>
#include <pthread.h>

/* One life's open queues (handle bits, 0 = free): written by the owner,
 * taken by whoever closes the owner's life. Made on the record index's
 * first queue and never freed: the next lives of that record reuse it
 * (every entry is empty once a life has closed), so memory is bounded by
 * the record count, and nobody can hold a freed set. */
typedef struct owned_set {
  _Atomic uint64_t queue[MBX_QUEUE_MAX_PER_THREAD];
} owned_set;

/* Owner only: bit i = entry i's queue has a drain on this thread's stack,
 * entered at tls_owned_frame[i] with mbx__self.queue tls_owned_outer[i]. */
static _Thread_local uint32_t tls_owned_busy;
static _Thread_local uintptr_t tls_owned_frame[MBX_QUEUE_MAX_PER_THREAD];
static _Thread_local mbx__record *tls_owned_outer[MBX_QUEUE_MAX_PER_THREAD];

/* ---- the side table, by record index: for an automatic mailbox, its owned
 * set; for a queue, the generation of its life (mbx__is_queue). Chunks of
 * 64 entries, made on first use and never freed (like record chunks). */
#define SIDE_SHIFT 6
#define SIDE_SLOTS (1u << SIDE_SHIFT)
#define SIDE_CHUNKS 4096u /* table.c's directory: 262144 records */
typedef struct side_entry {
  _Atomic(owned_set *) set;
  _Atomic uint32_t queue_gen; /* 0: no queue life marked here */
} side_entry;
static _Atomic(side_entry *) g_side[SIDE_CHUNKS];

static side_entry *side_entry_of(uint32_t index, int make) {
  uint32_t chunk_index = index >> SIDE_SHIFT;
  if (chunk_index >= SIDE_CHUNKS)
    return NULL;
  // Acquire: pairs with the CAS below; the chunk's entries are initialised.
  side_entry *chunk =
      atomic_load_explicit(&g_side[chunk_index], memory_order_acquire);
  if (!chunk && make) {
    side_entry *fresh = mbx__alloc(SIDE_SLOTS * sizeof *fresh);
    if (!fresh)
      return NULL;
    for (uint32_t i = 0; i < SIDE_SLOTS; i++) {
      atomic_init(&fresh[i].set, NULL);
      atomic_init(&fresh[i].queue_gen, 0);
    }
    // Release: publishes the initialised entries. Acquire on failure: we
    // use the winner's chunk.
    if (atomic_compare_exchange_strong_explicit(&g_side[chunk_index], &chunk,
                                                fresh, memory_order_acq_rel,
                                                memory_order_acquire))
      chunk = fresh;
    else
      mbx__free(fresh);
  }
  return chunk ? &chunk[index & (SIDE_SLOTS - 1)] : NULL;
}

/* The owned set of record index's lives; make: create it if missing. NULL:
 * none (or out of memory). */
static owned_set *set_of(uint32_t index, int make) {
  side_entry *e = side_entry_of(index, make);
  if (!e)
    return NULL;
  // Acquire: pairs with the CAS below; the set is initialised.
  owned_set *s = atomic_load_explicit(&e->set, memory_order_acquire);
  if (!s && make) {
    owned_set *fresh = mbx__alloc(sizeof *fresh);
    if (!fresh)
      return NULL;
    for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD; i++)
      atomic_init(&fresh->queue[i], 0);
    // Release: publishes it initialised. Acquire on failure: we use the
    // one there (only the owner makes one; a lost race cannot happen, but
    // costs nothing to handle).
    if (atomic_compare_exchange_strong_explicit(
            &e->set, &s, fresh, memory_order_acq_rel, memory_order_acquire))
      s = fresh;
    else
      mbx__free(fresh);
  }
  return s;
}

int mbx__is_queue(mbx_handle h) {
  if (mbx_handle_is_null(h) || !mbx__handle_gen(h))
    return 0;
  side_entry *e = side_entry_of((uint32_t)h.bits - 1, 0);
  // Relaxed: a classification. The mark is stored before
  // mbx_queue_create returns the handle (a listing of open mailboxes may
  // see the life just before: <mbx/queue.h>); a later life of the record
  // has another generation, so a stale mark only matches a closed life.
  return e && atomic_load_explicit(&e->queue_gen, memory_order_relaxed) ==
                  mbx__handle_gen(h);
}

/* The calling thread's owned set, or NULL if it has no mailbox or none. */
static owned_set *self_set(void) {
  return mbx__self.record ? set_of(mbx__self.record->index, 0) : NULL;
}

void mbx__queues_close(mbx__record *self, int reason, int owner_dead) {
  owned_set *s = set_of(self->index, 0);
  if (!s)
    return;
  // Seq_cst: with the one in mbx_queue_create, a queue the owner adds as
  // its mailbox closes is seen here, or the owner sees the close.
  atomic_thread_fence(memory_order_seq_cst);
  for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD; i++) {
    // Relaxed: a first look, most entries are empty; the exchange decides.
    if (!atomic_load_explicit(&s->queue[i], memory_order_relaxed))
      continue;
    // Acquire: a closer of a dead owner sees the entry's record bound and
    // marked as the owner left it.
    mbx_handle q = {
        atomic_exchange_explicit(&s->queue[i], 0, memory_order_acquire)};
    mbx__record *r;
    if (!mbx_handle_is_null(q) && mbx__lookup(q, &r) == MBX_OK)
      mbx__queue_close_life(r, q, reason, owner_dead);
  }
  if (!owner_dead) {
    /* No drain of ours is left on the stack (one that was unwound without
     * its end, by pthread_exit or an exception, is forgotten here). */
    tls_owned_busy = 0;
    mbx__self.queue = NULL;
  }
}

int mbx__queue_is_own(mbx_handle h) {
  owned_set *s = self_set();
  if (!s || mbx_handle_is_null(h))
    return 0;
  for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD; i++)
    // Relaxed: our own entries.
    if (atomic_load_explicit(&s->queue[i], memory_order_relaxed) == h.bits)
      return 1;
  return 0;
}

/* ---- the public functions */

/* Close a life nobody else has seen, or take back an entry: the owner. */
static void close_own(int slot, owned_set *s, mbx_handle q, int reason) {
  // Relaxed: our own entry; an exchange, as a closer may take it first.
  if (atomic_exchange_explicit(&s->queue[slot], 0, memory_order_relaxed) ==
      q.bits) {
    mbx__record *r;
    if (mbx__lookup(q, &r) == MBX_OK)
      mbx__queue_close_life(r, q, reason, 0);
  }
}

int mbx_queue_create(mbx_handle *out) {
  if (!out)
    return MBX_EINVAL;
  mbx__record *self = mbx__self.record;
  if (!self)
    return MBX_EPERM;
  /* Also refused while the owner's exit closes its queues (a cancel
   * function creating one): nothing would close it. */
  if (!mbx__self_open())
    return MBX_ECLOSED;
  owned_set *s = set_of(self->index, 1);
  if (!s)
    return MBX_ENOMEM;
  int slot = -1;
  for (int i = 0; i < MBX_QUEUE_MAX_PER_THREAD && slot < 0; i++)
    // Relaxed: our own entries.
    if (!atomic_load_explicit(&s->queue[i], memory_order_relaxed))
      slot = i;
  if (slot < 0)
    return MBX_EAGAIN;
  mbx__record *r;
  uint32_t gen;
  int rc = mbx__record_open(&r, &gen);
  if (rc != MBX_OK)
    return rc;
  mbx_handle q = mbx__make_handle(r->index, gen);
  // Relaxed: fresh life, ours alone; mbx_thread_bind's CAS then fails.
  atomic_store_explicit(&r->bound, 1, memory_order_relaxed);
  side_entry *e = side_entry_of(r->index, 1);
  if (e)
    // Relaxed: published with the handle (the caller hands it on).
    atomic_store_explicit(&e->queue_gen, gen, memory_order_relaxed);
  // Release: a closer of a dead owner that takes the entry sees the record
  // bound and marked.
  atomic_store_explicit(&s->queue[slot], q.bits, memory_order_release);
  // Seq_cst: the pair of the fence in mbx__queues_close (store the entry,
  // then look at our gate; it clears OPEN, then looks at the entries).
  atomic_thread_fence(memory_order_seq_cst);
  if (!e) { /* out of memory: close the life nobody has seen */
    close_own(slot, s, q, MBX_CANCEL_QUEUE_CLOSED);
    return MBX_ENOMEM;
  }
  /* Our mailbox closed meanwhile (runtime exit, or an orphan close of this
   * live thread: misuse): its closer may have walked the set before the
   * entry was there. */
  if (!mbx__self_open()) {
    close_own(slot, s, q, MBX_CANCEL_QUEUE_CLOSED);
    return MBX_ECLOSED;
  }
  *out = q;
  return MBX_OK;
}

/* The calling thread's entry for q, or the code that says why there is
 * none. */
static int find_own(mbx_handle q, int *slot, mbx__record **r, owned_set **set) {
  int rc = mbx__lookup(q, r);
  if (rc != MBX_OK)
    return rc;
  owned_set *s = self_set();
  for (int i = 0; s && i < MBX_QUEUE_MAX_PER_THREAD; i++) {
    // Relaxed: our own entries.
    if (atomic_load_explicit(&s->queue[i], memory_order_relaxed) == q.bits) {
      *slot = i;
      *set = s;
      return MBX_OK;
    }
  }
  // Relaxed: only classifies a refusal.
  rc =
      mbx__gate_refusal(atomic_load_explicit(&(*r)->gate, memory_order_relaxed),
                        mbx__handle_gen(q));
  return rc != MBX_OK ? rc : MBX_EPERM; /* open, but not our queue */
}

/* A queue drain on the owner's stack: refuses re-entry of the same queue
 * (its close from inside would end the life under the outer drain). */
typedef struct queue_drain {
  int slot;
  mbx__record *r;
  mbx__record *outer; /* mbx__self.queue before us */
} queue_drain;

/* Whether slot's queue has a live drain on our stack. As for the automatic
 * mailbox (core/drain.c, mbx__drain_active): a drain recorded at our depth
 * or above (stacks grow down) is from a frame that an exception thrown by
 * a handler unwound; it is forgotten, and the queue state lives in the
 * record, so nothing else is left over (issue 18 item 3). */
static int slot_draining(int slot, uintptr_t here) {
  if ((tls_owned_busy & (1u << slot)) && here >= tls_owned_frame[slot]) {
    tls_owned_busy &= ~(1u << slot);
    mbx__self.queue = tls_owned_outer[slot];
  }
  return (tls_owned_busy >> slot) & 1;
}

static int drain_enter(queue_drain *d, mbx_handle q, uintptr_t here) {
  owned_set *s;
  int rc = find_own(q, &d->slot, &d->r, &s);
  if (rc != MBX_OK)
    return rc;
  if (slot_draining(d->slot, here))
    return MBX_EBUSY;
  tls_owned_busy |= 1u << d->slot;
  tls_owned_frame[d->slot] = here;
  tls_owned_outer[d->slot] = d->outer = mbx__self.queue;
  mbx__self.queue = d->r;
  return MBX_OK;
}

/* Also a cleanup handler: a cancelable queue wait canceled while asleep. */
static void drain_leave(void *p) {
  queue_drain *d = p;
  tls_owned_busy &= ~(1u << d->slot);
  mbx__self.queue = d->outer;
}

/* One frame layout for both drains (never inlined), so that drains entered
 * one after the other from the same caller record the same stack address,
 * and a nested one a lower address. */
__attribute__((noinline)) static int queue_drain_entry(mbx_handle q, int poll,
                                                       double timeout_ms) {
  char marker;
  queue_drain d;
  int rc = drain_enter(&d, q, (uintptr_t)&marker);
  if (rc != MBX_OK)
    return rc;
  int count;
  if (poll) {
    /* nested_ok: a queue may be drained from a handler of another mailbox;
     * the thread counts as draining meanwhile (mbx_poll from its handlers
     * returns MBX_EBUSY). */
    count = mbx__poll_record(d.r, 1);
  } else {
    pthread_cleanup_push(drain_leave, &d);
    count = mbx__wait_record(d.r, timeout_ms,
                             MBX__WAIT_NESTED_OK | MBX__WAIT_CANCELABLE |
                                 MBX__WAIT_LINGER);
    pthread_cleanup_pop(0);
  }
  drain_leave(&d);
  return count;
}

int mbx_queue_poll(mbx_handle q) { return queue_drain_entry(q, 1, 0); }

/* A cancellation point, as mbx_wait: at entry, and while asleep. */
int mbx_queue_wait(mbx_handle q, double timeout_ms) {
  pthread_testcancel();
  return queue_drain_entry(q, 0, timeout_ms);
}

int mbx_queue_close(mbx_handle q) {
  int slot;
  mbx__record *r;
  owned_set *s;
  int rc = find_own(q, &slot, &r, &s);
  if (rc != MBX_OK)
    return rc;
  char marker;
  if (slot_draining(slot, (uintptr_t)&marker))
    return MBX_EBUSY;
  /* Out of the set first: a cancel function below that closes or drains q
   * gets MBX_ECLOSED, and the exit path will not close it again. */
  // Relaxed: our own entry; an exchange, as a closer of this thread's
  // mailbox (misuse while we run) may take it first.
  if (atomic_exchange_explicit(&s->queue[slot], 0, memory_order_relaxed) !=
      q.bits)
    return MBX_ECLOSED;
  rc = mbx__queue_close_life(r, q, MBX_CANCEL_QUEUE_CLOSED, 0);
  return rc < 0 ? 0 : rc;
}

int mbx__queue_close_life(mbx__record *r, mbx_handle h, int reason,
                          int owner_dead) {
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  mbx__closing c;
  int rc = mbx__closing_begin(
      &c, r, h, owner_dead ? MBX__CLOSE_QUEUE_ORPHAN : MBX__CLOSE_QUEUE,
      reason);
  if (rc == MBX_OK) {
    /* A dead owner's last pop from this queue, not yet started (as in
     * mbx_mailbox_close_orphan). */
    if (owner_dead)
      mbx__layers_orphan(r, MBX__POPPED(r));
    mbx__closing_complete(&c);
    rc = c.rc;
  } else if (rc == MBX_ECLOSED) {
    /* A close from outside (runtime exit) closed and drained it and
     * reported it; the owner's hold is still ours. */
    rc = mbx__orphan_release(r, h, 0);
  }
  pthread_setcancelstate(cancel_state, NULL);
  return rc;
}
