/*
 * Thread records: a table that only grows, a quarantine FIFO for retired
 * records, generations, holds, and the statistics kept per record.
 *
 * Records are allocated in chunks that are never freed. A handle carries
 * (index + 1, generation); lookup bounds-checks the index against the
 * published record count before touching memory, so a forged handle can at
 * worst name some other live record, where the generation check rejects it.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define CHUNK_SHIFT 6
#define CHUNK_RECORDS (1u << CHUNK_SHIFT)
#define CHUNK_BYTES (sizeof(mbx_record) * CHUNK_RECORDS + _Alignof(mbx_record))
#define DIRECTORY_CHUNKS 4096u /* up to 262144 records */
#define DEFAULT_QUARANTINE 64u

/* Chunk pointers are written once, before record_count covers them. */
static _Atomic(mbx_record *) g_directory[DIRECTORY_CHUNKS];
static _Atomic uint32_t g_record_count;
static _Atomic uint32_t g_quarantine_threshold = DEFAULT_QUARANTINE;

/* Guards record creation and reuse, the quarantine FIFO and the folded
 * totals. Only thread creation/exit and statistics take it, never a send. */
static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t g_quarantine_head; /* index + 1; 0 = empty */
static uint32_t g_quarantine_tail;
static uint32_t g_quarantine_length;
static uint32_t g_chunk_count;
static struct {
  uint64_t run, canceled, dropped;
  uint32_t high_water;
} g_folded; /* counters of lives that ended and whose record was reused */

static mbx_record *record_at(uint32_t index) {
  // Acquire: pairs with the release store in new_record, so the chunk's
  // initialised contents are visible.
  mbx_record *chunk = atomic_load_explicit(&g_directory[index >> CHUNK_SHIFT],
                                           memory_order_acquire);
  return &chunk[index & (CHUNK_RECORDS - 1)];
}

int mbx__lookup(mbx_handle h, mbx_record **out) {
  uint32_t index_plus_one = (uint32_t)h.bits;
  if (index_plus_one == 0 || handle_gen(h) == 0)
    return MBX_EINVAL;
  // Acquire: pairs with the release in new_record; a covered index has its
  // chunk pointer published.
  if (index_plus_one >
      atomic_load_explicit(&g_record_count, memory_order_acquire))
    return MBX_EINVAL;
  *out = record_at(index_plus_one - 1);
  return MBX_OK;
}

static void reset_queue(mbx_record *r) {
  // Relaxed: the record is closed with no sender past the gate; the gate's
  // release when it reopens publishes these.
  atomic_store_explicit(&r->stub.next, NULL, memory_order_relaxed);
  atomic_store_explicit(&r->tail, &r->stub, memory_order_relaxed);
  r->head = &r->stub;
  r->consumed_unflushed = 0;
  r->run_unflushed = 0;
  r->release_block = NULL; /* empty, unless an owner died inside a pop */
  r->release_count = 0;
  atomic_store_explicit(&r->pending, 0, memory_order_relaxed);    // see above
  atomic_store_explicit(&r->waiting, 0, memory_order_relaxed);    // see above
  atomic_store_explicit(&r->consumer, 0, memory_order_relaxed);   // see above
  atomic_store_explicit(&r->capacity, 0, memory_order_relaxed);   // see above
  atomic_store_explicit(&r->bound, 0, memory_order_relaxed);      // see above
  atomic_store_explicit(&r->pthread_id, 0, memory_order_relaxed); // see above
  atomic_store_explicit(&r->owner_proxy, NULL, memory_order_relaxed); // above
}

/* Registry lock held. */
static int new_record(mbx_record **out) {
  // Relaxed: only writers of the count hold the registry lock.
  uint32_t index = atomic_load_explicit(&g_record_count, memory_order_relaxed);
  if (index >= DIRECTORY_CHUNKS * CHUNK_RECORDS)
    return MBX_ENOMEM;
  if ((index & (CHUNK_RECORDS - 1)) == 0) {
    /* Records are cache-line aligned (see internal.h); the allocator
     * promises malloc's alignment only, and chunks are never freed. */
    unsigned char *raw = mbx__alloc(CHUNK_BYTES);
    if (!raw)
      return MBX_ENOMEM;
    mbx_record *chunk =
        (mbx_record *)(raw + (-(uintptr_t)raw & (_Alignof(mbx_record) - 1)));
    memset(chunk, 0, sizeof(mbx_record) * CHUNK_RECORDS);
    for (uint32_t i = 0; i < CHUNK_RECORDS; i++) {
      chunk[i].index = index + i;
      reset_queue(&chunk[i]);
    }
    // Relaxed: published by the release store of the count below.
    atomic_store_explicit(&g_directory[index >> CHUNK_SHIFT], chunk,
                          memory_order_relaxed);
    g_chunk_count++;
  }
  // Release: a lookup that sees the new count sees the chunk and its
  // initialised records.
  atomic_store_explicit(&g_record_count, index + 1, memory_order_release);
  *out = record_at(index);
  return MBX_OK;
}

/* Registry lock held. Fold the ended life's counters into the totals. */
static void fold_counters(mbx_record *r) {
  // Relaxed loads/stores: the record is quiescent (closed, no holds, no
  // sender past the gate); the registry lock orders us with stat readers.
  g_folded.run += atomic_exchange_explicit(&r->run, 0, memory_order_relaxed);
  g_folded.canceled +=
      atomic_exchange_explicit(&r->canceled, 0, memory_order_relaxed);
  g_folded.dropped +=
      atomic_exchange_explicit(&r->dropped, 0, memory_order_relaxed);
  /* Global rejection counts come from the senders' shards: just reset. */
  atomic_store_explicit(&r->rejected_closed, 0, memory_order_relaxed);
  atomic_store_explicit(&r->rejected_full, 0, memory_order_relaxed);
  uint32_t hw =
      atomic_exchange_explicit(&r->high_water, 0, memory_order_relaxed);
  if (hw > g_folded.high_water)
    g_folded.high_water = hw;
}

int mbx__record_open(mbx_record **out, uint32_t *gen_out) {
  mbx_record *r;
  pthread_mutex_lock(&g_registry_lock);
  // Relaxed: a tuning knob; any recent value will do.
  uint32_t threshold =
      atomic_load_explicit(&g_quarantine_threshold, memory_order_relaxed);
  if (g_quarantine_length > threshold) {
    r = record_at(g_quarantine_head - 1);
    g_quarantine_head = r->quarantine_next;
    if (g_quarantine_head == 0)
      g_quarantine_tail = 0;
    g_quarantine_length--;
    fold_counters(r);
    reset_queue(r);
  } else {
    int rc = new_record(&r);
    if (rc != MBX_OK) {
      pthread_mutex_unlock(&g_registry_lock);
      return rc;
    }
  }
  r->quarantine_next = 0;
  // Bump the generation and open with the owner's hold, keeping the
  // in-flight count of stale senders that are about to back out.
  // Relaxed load: the CAS below re-validates (only the in-flight count can
  // change under us: generations change only here, under the lock).
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  uint32_t gen = gate_gen(old) + 1;
  if (gen == 0) /* 0 marks the null handle; skip it on wrap-around */
    gen = 1;
  /* Refusals count for the new life only (see internal.h). */
  // Relaxed: published to senders by the release CAS below.
  atomic_store_explicit(&r->rejected_closed, (uint64_t)gen << 32,
                        memory_order_relaxed);
  uint64_t next;
  do {
    next = ((uint64_t)gen << GATE_GEN_SHIFT) | GATE_OPEN | GATE_OWNER |
           (old & GATE_INFLIGHT_MASK);
    // Release: a sender whose gate RMW sees the new generation sees the
    // reset queue. Relaxed on failure: we retry with the fresh value.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, next, memory_order_release, memory_order_relaxed));
  pthread_mutex_unlock(&g_registry_lock);
  *out = r;
  *gen_out = gate_gen(next);
  return MBX_OK;
}

static void retire(mbx_record *r) {
  pthread_mutex_lock(&g_registry_lock);
  uint32_t id = r->index + 1;
  r->quarantine_next = 0;
  if (g_quarantine_tail)
    record_at(g_quarantine_tail - 1)->quarantine_next = id;
  else
    g_quarantine_head = id;
  g_quarantine_tail = id;
  g_quarantine_length++;
  pthread_mutex_unlock(&g_registry_lock);
}

static int retirable(uint64_t gate) {
  return !(gate & (GATE_OPEN | GATE_OWNER | GATE_HOLD_MASK));
}

/* Drop one counted hold. Returns MBX_EINVAL if gen does not match or no hold
 * is outstanding (a double release), without changing anything. */
static int release_hold_checked(mbx_record *r, uint32_t gen) {
  // Relaxed load: the CAS below re-validates.
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  uint64_t next;
  do {
    if (gate_gen(old) != gen || gate_holds(old) == 0)
      return MBX_EINVAL;
    next = old - GATE_HOLD_ONE;
    // Acq_rel: release orders this holder's earlier uses before a reuse;
    // acquire lets the last releaser see the closer's drain before retiring.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, next, memory_order_acq_rel, memory_order_relaxed));
  if (retirable(next))
    retire(r); /* closed and unheld: exactly one releaser gets here */
  return MBX_OK;
}

void mbx__record_release_owner(mbx_record *r) {
  // Acq_rel: as in release_hold_checked.
  uint64_t next =
      atomic_fetch_and_explicit(&r->gate, ~GATE_OWNER, memory_order_acq_rel) &
      ~GATE_OWNER;
  if (retirable(next))
    retire(r);
}

int mbx__release_unbound_owner(mbx_handle h) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Relaxed load: the CAS below re-validates.
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  do {
    if (gate_gen(old) != handle_gen(h))
      return gen_mismatch_code(handle_gen(h), gate_gen(old));
    if ((old & GATE_OPEN) || !(old & GATE_OWNER))
      return MBX_EINVAL;
    // Acq_rel: as in mbx__record_release_owner.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, old & ~GATE_OWNER, memory_order_acq_rel,
      memory_order_relaxed));
  if (retirable(old & ~GATE_OWNER))
    retire(r);
  return MBX_OK;
}

int mbx_hold(mbx_handle h) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Relaxed load: the CAS below re-validates.
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  do {
    rc = gate_refusal(old, handle_gen(h));
    if (rc != MBX_OK)
      return rc;
    if (gate_holds(old) >= MBX_MAX_HOLDS)
      return MBX_EAGAIN;
    // Acquire: the holder's later reads of the record see its current life.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, old + GATE_HOLD_ONE, memory_order_acquire,
      memory_order_relaxed));
  return MBX_OK;
}

int mbx_release(mbx_handle h) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  return release_hold_checked(r, handle_gen(h));
}

int mbx_set_capacity(mbx_handle h, uint32_t capacity) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  /* Inside the gate, like a send: a check-then-store could land after the
   * record was retired and reused, capping the next thread's mailbox (found
   * by the Spin model, FINDING_STALE_CAPACITY). Reuse cannot happen while
   * we are counted in the gate. */
  // Acquire: pairs with the reuse CAS (we store into the life we checked).
  uint64_t gate = atomic_fetch_add_explicit(&r->gate, GATE_INFLIGHT_ONE,
                                            memory_order_acquire);
  rc = gate_refusal(gate, handle_gen(h));
  if (rc == MBX_OK)
    // Relaxed: senders read it as a soft bound; no data hangs off it.
    atomic_store_explicit(&r->capacity, capacity, memory_order_relaxed);
  // Release: the closer's acquire wait for zero in-flight sees our store.
  atomic_fetch_sub_explicit(&r->gate, GATE_INFLIGHT_ONE, memory_order_release);
  return rc;
}

int mbx_set_quarantine(uint32_t records) {
  // Relaxed: a tuning knob read under the registry lock.
  atomic_store_explicit(&g_quarantine_threshold, records, memory_order_relaxed);
  return MBX_OK;
}

/* Relaxed loads throughout the statistics: they are counters, and the
 * registry lock keeps a record from being reused (and its counters folded)
 * while we read it. */
static void add_record_counters(mbx_record *r, mbx_stats *s) {
  s->run += atomic_load_explicit(&r->run, memory_order_relaxed);
  s->canceled += atomic_load_explicit(&r->canceled, memory_order_relaxed);
  s->dropped += atomic_load_explicit(&r->dropped, memory_order_relaxed);
  int32_t pending = atomic_load_explicit(&r->pending, memory_order_relaxed);
  s->pending += pending > 0 ? (uint64_t)pending : 0;
  s->rejected_closed +=
      (uint32_t)atomic_load_explicit(&r->rejected_closed, memory_order_relaxed);
  s->rejected_full +=
      atomic_load_explicit(&r->rejected_full, memory_order_relaxed);
  uint32_t hw = atomic_load_explicit(&r->high_water, memory_order_relaxed);
  if (pending > 0 && (uint32_t)pending > hw)
    hw = (uint32_t)pending; /* the peak since the drainer last looked */
  if (hw > s->queue_high_water)
    s->queue_high_water = hw;
}

int mbx_stats_get(mbx_handle h, mbx_stats *out) {
  mbx_record *r;
  if (!out)
    return MBX_EINVAL;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&g_registry_lock);
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  if (gate_gen(gate) != handle_gen(h)) {
    pthread_mutex_unlock(&g_registry_lock);
    return gen_mismatch_code(handle_gen(h), gate_gen(gate));
  }
  add_record_counters(r, out);
  pthread_mutex_unlock(&g_registry_lock);
  out->sent = out->run + out->canceled + out->dropped + out->pending;
  return MBX_OK;
}

void mbx_stats_global(mbx_stats *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&g_registry_lock);
  uint32_t count = atomic_load_explicit(&g_record_count, memory_order_relaxed);
  for (uint32_t i = 0; i < count; i++)
    add_record_counters(record_at(i), out);
  out->run += g_folded.run;
  out->canceled += g_folded.canceled;
  out->dropped += g_folded.dropped;
  if (g_folded.high_water > out->queue_high_water)
    out->queue_high_water = g_folded.high_water;
  pthread_mutex_unlock(&g_registry_lock);
  /* Sender-side counts come from the shards, independently of the above. */
  out->sent = mbx__stat_sum(MBX_STAT_SENT);
  out->rejected_closed = mbx__stat_sum(MBX_STAT_REJ_CLOSED);
  out->rejected_stale = mbx__stat_sum(MBX_STAT_REJ_STALE);
  out->rejected_invalid = mbx__stat_sum(MBX_STAT_REJ_INVALID);
  out->rejected_nomem = mbx__stat_sum(MBX_STAT_REJ_NOMEM);
  out->rejected_full = mbx__stat_sum(MBX_STAT_REJ_FULL);
  out->wakeups = mbx__stat_sum(MBX_STAT_WAKEUP);
}

void mbx_memory_stats_get(mbx_memory_stats *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&g_registry_lock);
  out->records_total =
      atomic_load_explicit(&g_record_count, memory_order_relaxed);
  out->records_quarantine = g_quarantine_length;
  uint64_t chunk_bytes = (uint64_t)g_chunk_count * CHUNK_BYTES;
  pthread_mutex_unlock(&g_registry_lock);
  out->records_live = out->records_total - out->records_quarantine;
  out->record_bytes = sizeof(mbx_record);
  uint64_t allocs = mbx__stat_sum(MBX_STAT_SENT);
  uint64_t frees = mbx__stat_sum(MBX_STAT_NODE_FREE);
  out->nodes_live = allocs > frees ? allocs - frees : 0;
  uint64_t slots = mbx__stat_sum(MBX_STAT_NODE_SLOTS_ALLOC) -
                   mbx__stat_sum(MBX_STAT_NODE_SLOTS_FREE);
  out->nodes_cached = slots > out->nodes_live ? slots - out->nodes_live : 0;
  out->bytes_live = chunk_bytes + mbx__stat_sum(MBX_STAT_NODE_BYTES_ALLOC) -
                    mbx__stat_sum(MBX_STAT_NODE_BYTES_FREE);
}

int mbx__record_set_pthread(mbx_handle h, uintptr_t id) {
  mbx_record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Relaxed: callers hold the record (owner or a hold), so the life cannot
  // end under us; readers re-check the gate around their read.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  if (gate_gen(gate) != handle_gen(h))
    return gen_mismatch_code(handle_gen(h), gate_gen(gate));
  // Release: a lookup that reads this value and then fences sees the gate
  // of this life or later in its second snapshot.
  atomic_store_explicit(&r->pthread_id, id, memory_order_release);
  return MBX_OK;
}

mbx_handle mbx__handle_of_pthread(uintptr_t id) {
  // Acquire: see mbx__lookup.
  uint32_t count = atomic_load_explicit(&g_record_count, memory_order_acquire);
  for (uint32_t i = 0; i < count; i++) {
    mbx_record *r = record_at(i);
    // Acquire (both gate loads): order the pthread_id read between two
    // snapshots of the same open life, seqlock style.
    uint64_t before = atomic_load_explicit(&r->gate, memory_order_acquire);
    if (!(before & GATE_OPEN))
      continue;
    // Relaxed: bracketed by the two gate loads.
    uintptr_t owner =
        atomic_load_explicit(&r->pthread_id, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    uint64_t after = atomic_load_explicit(&r->gate, memory_order_relaxed);
    if (owner == id && gate_gen(after) == gate_gen(before) &&
        (after & GATE_OPEN))
      return make_handle(i, gate_gen(before));
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
      atomic_load_explicit(&record_at(index)->gate, memory_order_relaxed);
  if (!(gate & GATE_OPEN))
    return MBX_NULL_HANDLE;
  return make_handle(index, gate_gen(gate));
}

int mbx_mailboxes_list(mbx_handle *out, uint32_t capacity,
                       uint32_t *open_count) {
  if (!open_count || (!out && capacity))
    return MBX_EINVAL;
  uint32_t n = 0;
  /* The registry lock keeps records from being opened or reused mid-walk. */
  pthread_mutex_lock(&g_registry_lock);
  uint32_t count = atomic_load_explicit(&g_record_count, memory_order_relaxed);
  for (uint32_t i = 0; i < count; i++) {
    // Relaxed: opens happen under the lock we hold; a close racing with us
    // is allowed to be seen either way (documented).
    uint64_t gate =
        atomic_load_explicit(&record_at(i)->gate, memory_order_relaxed);
    if (!(gate & GATE_OPEN))
      continue;
    if (n < capacity)
      out[n] = make_handle(i, gate_gen(gate));
    n++;
  }
  pthread_mutex_unlock(&g_registry_lock);
  *open_count = n;
  return MBX_OK;
}
