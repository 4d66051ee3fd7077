/*
 * The record table: records in chunks that are never freed, handle lookup,
 * the quarantine FIFO that delays reuse, and finding records by pthread.
 *
 * A handle carries (index + 1, generation); lookup bounds-checks the index
 * against the published record count before touching memory, so a forged
 * handle can at worst name some other live record, where the generation
 * check (core/gate.c) rejects it.
 */
#include "record.h"

#include <pthread.h>
#include <string.h>

#define CHUNK_SHIFT 6
#define CHUNK_RECORDS (1u << CHUNK_SHIFT)
#define CHUNK_BYTES                                                            \
  (sizeof(mbx__record) * CHUNK_RECORDS + _Alignof(mbx__record))
#define DIRECTORY_CHUNKS 4096u /* up to 262144 records */
#define DEFAULT_QUARANTINE 64u

/* Chunk pointers are written once, before record_count covers them. */
static _Atomic(mbx__record *) g_directory[DIRECTORY_CHUNKS];
static _Atomic uint32_t g_record_count;
static _Atomic uint32_t g_quarantine_threshold = DEFAULT_QUARANTINE;

static mbx__lock g_registry_lock = MBX__LOCK_INITIALIZER;
/* Registry lock held for all of these. */
static uint32_t g_quarantine_head; /* index + 1; 0 = empty */
static uint32_t g_quarantine_tail;
static uint32_t g_quarantine_length;
static uint32_t g_chunk_count;

void mbx__registry_lock(void) { mbx__lock_acquire(&g_registry_lock); }
void mbx__registry_unlock(void) { mbx__lock_release(&g_registry_lock); }

mbx__record *mbx__record_at(uint32_t index) {
  // Acquire: pairs with the release store in new_record, so the chunk's
  // initialised contents are visible.
  mbx__record *chunk = atomic_load_explicit(&g_directory[index >> CHUNK_SHIFT],
                                            memory_order_acquire);
  return &chunk[index & (CHUNK_RECORDS - 1)];
}

int mbx__lookup(mbx_handle h, mbx__record **out) {
  uint32_t index_plus_one = (uint32_t)h.bits;
  if (index_plus_one == 0 || mbx__handle_gen(h) == 0)
    return MBX_EINVAL;
  // Acquire: pairs with the release in new_record; a covered index has its
  // chunk pointer published.
  if (index_plus_one >
      atomic_load_explicit(&g_record_count, memory_order_acquire))
    return MBX_EINVAL;
  *out = mbx__record_at(index_plus_one - 1);
  return MBX_OK;
}

/* Reset a retired (or fresh) record for its next life. */
static void reset_life(mbx__record *r) {
  /* The record is closed with no sender past the gate; the gate's release
   * when it reopens (mbx__gate_open) publishes all of these. */
  mbx__queue_reset(mbx__queue_of(r));
  r->consumed_unflushed = 0;
  r->run_unflushed = 0;
  r->release_block = NULL; /* empty, unless an owner died inside a pop */
  r->release_count = 0;
  /* A closed life leaves MBX__PENDING_CLOSED plus the counts of stale
   * senders on their way out (core/send.c): take away the first, keep the
   * second, which those senders take back themselves. A fresh record has
   * 0. */
  // Relaxed (both): see above; the RMW keeps concurrent counts.
  if (atomic_load_explicit(&r->pending, memory_order_relaxed) < 0)
    atomic_fetch_sub_explicit(&r->pending, MBX__PENDING_CLOSED,
                              memory_order_relaxed);
  // Relaxed (all): see above.
  atomic_store_explicit(&r->waiting, 0, memory_order_relaxed);
  atomic_store_explicit(&r->consumer, 0, memory_order_relaxed);
  atomic_store_explicit(&r->capacity, 0, memory_order_relaxed);
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);
  atomic_store_explicit(&r->abandoned, 0, memory_order_relaxed);
  atomic_store_explicit(&r->pthread_id, 0, memory_order_relaxed);
  for (int i = 0; i < MBX__LAYER_SLOTS; i++)
    atomic_store_explicit(&r->layer_slot[i], NULL, memory_order_relaxed);
}

/* Registry lock held. */
static int new_record(mbx__record **out) {
  // Relaxed: only writers of the count hold the registry lock.
  uint32_t index = atomic_load_explicit(&g_record_count, memory_order_relaxed);
  if (index >= DIRECTORY_CHUNKS * CHUNK_RECORDS)
    return MBX_ENOMEM;
  if ((index & (CHUNK_RECORDS - 1)) == 0) {
    /* Records are cache-line aligned (see mbx__record); the allocator
     * promises malloc's alignment only, and chunks are never freed. */
    unsigned char *raw = mbx__alloc(CHUNK_BYTES);
    if (!raw)
      return MBX_ENOMEM;
    mbx__record *chunk =
        (mbx__record *)(raw + (-(uintptr_t)raw & (_Alignof(mbx__record) - 1)));
    memset(chunk, 0, sizeof(mbx__record) * CHUNK_RECORDS);
    for (uint32_t i = 0; i < CHUNK_RECORDS; i++) {
      chunk[i].index = index + i;
      reset_life(&chunk[i]);
    }
    // Relaxed: published by the release store of the count below.
    atomic_store_explicit(&g_directory[index >> CHUNK_SHIFT], chunk,
                          memory_order_relaxed);
    g_chunk_count++;
  }
  // Release: a lookup that sees the new count sees the chunk and its
  // initialised records.
  atomic_store_explicit(&g_record_count, index + 1, memory_order_release);
  *out = mbx__record_at(index);
  return MBX_OK;
}

int mbx__record_open(mbx__record **out, uint32_t *gen_out) {
  mbx__record *r;
  mbx__registry_lock();
  // Relaxed: a tuning knob; any recent value will do.
  uint32_t threshold =
      atomic_load_explicit(&g_quarantine_threshold, memory_order_relaxed);
  if (g_quarantine_length > threshold) {
    r = mbx__record_at(g_quarantine_head - 1);
    g_quarantine_head = r->quarantine_next;
    if (g_quarantine_head == 0)
      g_quarantine_tail = 0;
    g_quarantine_length--;
    mbx__stats_fold(r);
    reset_life(r);
  } else {
    int rc = new_record(&r);
    if (rc != MBX_OK) {
      mbx__registry_unlock();
      return rc;
    }
  }
  r->quarantine_next = 0;
  uint32_t gen = mbx__gate_open(r);
  mbx__registry_unlock();
  *out = r;
  *gen_out = gen;
  return MBX_OK;
}

void mbx__table_retire(mbx__record *r) {
  // Relaxed: the generation changes only under the registry lock, and our
  // caller's RMW on the gate made the record retirable.
  if (mbx__gate_gen(atomic_load_explicit(&r->gate, memory_order_relaxed)) ==
      MBX__GEN_LAST)
    return; /* retired for good: its next generation would wrap */
  mbx__registry_lock();
  uint32_t id = r->index + 1;
  r->quarantine_next = 0;
  if (g_quarantine_tail)
    mbx__record_at(g_quarantine_tail - 1)->quarantine_next = id;
  else
    g_quarantine_head = id;
  g_quarantine_tail = id;
  g_quarantine_length++;
  mbx__registry_unlock();
}

/* Test only (issue 18 item 11): make the retired record of h's life behave
 * as if it had been reused `lives` more times since, so that tests reach the
 * last generation without 2^32 reuses. Returns MBX_OK, MBX_EINVAL (bad
 * handle), MBX_ESTALE (h's life is not the record's current one), MBX_EBUSY
 * (the life is not retired yet: open, owned or held). */
int mbx__test_skip_lives(mbx_handle h, uint64_t lives) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  mbx__registry_lock();
  // Relaxed: generations change only under the registry lock we hold; the
  // CAS below keeps the count of stale senders backing out.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  uint32_t gen = mbx__gate_gen(gate);
  if (gen != mbx__handle_gen(h)) {
    mbx__registry_unlock();
    return mbx__gen_mismatch_code(mbx__handle_gen(h), gen);
  }
  if (gate & (MBX__GATE_OPEN | MBX__GATE_OWNER | MBX__GATE_HOLD_MASK)) {
    mbx__registry_unlock();
    return MBX_EBUSY;
  }
  /* Each skipped life would have been opened and closed: generation + 1. */
  uint64_t target = (uint64_t)gen + lives;
  uint32_t last = target >= MBX__GEN_LAST ? MBX__GEN_LAST : (uint32_t)target;
  if (last == MBX__GEN_LAST) { /* unlink it from the quarantine for good */
    uint32_t id = r->index + 1, prev = 0;
    for (uint32_t i = g_quarantine_head; i && i != id;
         i = mbx__record_at(i - 1)->quarantine_next)
      prev = i;
    if (prev)
      mbx__record_at(prev - 1)->quarantine_next = r->quarantine_next;
    else
      g_quarantine_head = r->quarantine_next;
    if (g_quarantine_tail == id)
      g_quarantine_tail = prev;
    g_quarantine_length--;
  }
  // Relaxed (success and failure): the registry lock orders it with any
  // reuse; senders compare the generation only.
  while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &gate,
      ((uint64_t)last << MBX__GATE_GEN_SHIFT) |
          (gate & ~((uint64_t)UINT32_MAX << MBX__GATE_GEN_SHIFT)),
      memory_order_relaxed, memory_order_relaxed)) {
  }
  mbx__registry_unlock();
  return MBX_OK;
}

/* ---- fork (issue 18 item 2; policy in <mbx/thread.h>) */

void mbx__fork_prepare(void) { mbx__registry_lock(); }
void mbx__fork_parent(void) { mbx__registry_unlock(); }

/* In the child, which has one thread: the forking one. Every record's
 * senders (counted in pending, or capacity setters inside the gate) are
 * the parent's: forget them. Every mailbox but
 * the calling thread's is closed, its queue forgotten without running or
 * canceling anything (those messages are the parent's to handle); the
 * calling thread's stays open, emptied the same way. The parent's other
 * threads' records keep their owner's hold (their threads do not exist
 * here), so they are never reused in the child. Relaxed stores throughout:
 * no other thread exists yet. */
void mbx__fork_child(void) {
  mbx__record *self = mbx__self.record;
  uint32_t count = mbx__record_count();
  for (uint32_t i = 0; i < count; i++) {
    mbx__record *r = mbx__record_at(i);
    uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
    int keep = r == self && (gate & MBX__GATE_OPEN);
    gate &= ~MBX__GATE_INFLIGHT_MASK;
    if (!keep)
      gate &= ~MBX__GATE_OPEN;
    atomic_store_explicit(&r->gate, gate, memory_order_relaxed);
    mbx__queue_reset(mbx__queue_of(r));
    r->consumed_unflushed = 0;
    r->run_unflushed = 0;
    r->release_block = NULL; /* the parent's nodes: leaked in the child */
    r->release_count = 0;
    atomic_store_explicit(&r->pending, keep ? 0 : MBX__PENDING_CLOSED,
                          memory_order_relaxed);
    atomic_store_explicit(&r->consumer,
                          keep ? MBX__CONSUMER_FREE : MBX__CONSUMER_CLOSER,
                          memory_order_relaxed);
  }
  /* Held by mbx__fork_prepare on this very thread. */
  mbx__registry_unlock();
}

void mbx__table_usage(uint32_t *total, uint32_t *quarantined,
                      uint64_t *chunk_bytes) {
  // Relaxed: writers hold the registry lock, as our caller does.
  *total = atomic_load_explicit(&g_record_count, memory_order_relaxed);
  *quarantined = g_quarantine_length;
  *chunk_bytes = (uint64_t)g_chunk_count * CHUNK_BYTES;
}

int mbx_set_quarantine(uint32_t records) {
  // Relaxed: a tuning knob read under the registry lock.
  atomic_store_explicit(&g_quarantine_threshold, records, memory_order_relaxed);
  return MBX_OK;
}

int mbx__record_set_pthread(mbx_handle h, uintptr_t id) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Relaxed: callers hold the record (owner or a hold), so the life cannot
  // end under us; readers re-check the gate around their read.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  if (mbx__gate_gen(gate) != mbx__handle_gen(h))
    return mbx__gen_mismatch_code(mbx__handle_gen(h), mbx__gate_gen(gate));
  // Release: a lookup that reads this value and then fences sees the gate
  // of this life or later in its second snapshot.
  atomic_store_explicit(&r->pthread_id, id, memory_order_release);
  return MBX_OK;
}

mbx_handle mbx__handle_of_pthread(uintptr_t id) {
  uint32_t count = mbx__record_count();
  for (uint32_t i = 0; i < count; i++) {
    mbx__record *r = mbx__record_at(i);
    // Acquire (both gate loads): order the pthread_id read between two
    // snapshots of the same open life, seqlock style.
    uint64_t before = atomic_load_explicit(&r->gate, memory_order_acquire);
    if (!(before & MBX__GATE_OPEN))
      continue;
    // Relaxed: bracketed by the two gate loads.
    uintptr_t owner =
        atomic_load_explicit(&r->pthread_id, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    uint64_t after = atomic_load_explicit(&r->gate, memory_order_relaxed);
    if (owner == id && mbx__gate_gen(after) == mbx__gate_gen(before) &&
        (after & MBX__GATE_OPEN))
      return mbx__make_handle(i, mbx__gate_gen(before));
  }
  return MBX_NULL_HANDLE;
}

uint32_t mbx__record_count(void) {
  // Acquire: see mbx__lookup.
  return atomic_load_explicit(&g_record_count, memory_order_acquire);
}

mbx_handle mbx__open_life_at(uint32_t index) {
  if (index >= mbx__record_count())
    return MBX_NULL_HANDLE;
  // Relaxed: a snapshot; whoever uses the handle re-checks the gate.
  uint64_t gate =
      atomic_load_explicit(&mbx__record_at(index)->gate, memory_order_relaxed);
  if (!(gate & MBX__GATE_OPEN))
    return MBX_NULL_HANDLE;
  return mbx__make_handle(index, mbx__gate_gen(gate));
}

int mbx_mailboxes_list(mbx_handle *out, uint32_t capacity,
                       uint32_t *open_count) {
  if (!open_count || (!out && capacity))
    return MBX_EINVAL;
  uint32_t n = 0;
  /* The registry lock keeps records from being opened or reused mid-walk. */
  mbx__registry_lock();
  // Relaxed: writers of the count hold the lock we hold.
  uint32_t count = atomic_load_explicit(&g_record_count, memory_order_relaxed);
  for (uint32_t i = 0; i < count; i++) {
    // Relaxed: opens happen under the lock we hold; a close racing with us
    // is allowed to be seen either way (documented).
    uint64_t gate =
        atomic_load_explicit(&mbx__record_at(i)->gate, memory_order_relaxed);
    if (!(gate & MBX__GATE_OPEN))
      continue;
    if (n < capacity)
      out[n] = mbx__make_handle(i, mbx__gate_gen(gate));
    n++;
  }
  mbx__registry_unlock();
  *open_count = n;
  return MBX_OK;
}
