/*
 * Statistics: the sharded process-wide counters (the core's own and those a
 * layer claims), each record's counters and their totals once folded at
 * reuse, and mbx_stats_get / mbx_stats_global / mbx_memory_stats_get.
 */
#include "record.h"

#include <string.h>

/* ---- sharded counters */

/* Room for the layers' counters after the core's (the proxy layer takes
 * thirteen). */
#define LAYER_COUNTERS 13
#define COUNTERS (MBX__STAT_CORE_COUNT + LAYER_COUNTERS)
#define SHARD_COUNT 16
typedef struct stat_shard {
  _Alignas(64) _Atomic uint64_t v[COUNTERS];
} stat_shard;
static stat_shard g_shards[SHARD_COUNT];
static _Atomic uint32_t g_next_shard;
static _Thread_local uint32_t tls_shard_plus_one;
static _Atomic int g_counters_claimed = MBX__STAT_CORE_COUNT;

int mbx__counters_claim(int n) {
  // Relaxed: only hands out distinct ranges.
  int first =
      atomic_fetch_add_explicit(&g_counters_claimed, n, memory_order_relaxed);
  return n > 0 && first + n <= COUNTERS ? first : MBX_ENOMEM;
}

void mbx__counter_add(int id, uint64_t n) {
  MBX_ASSERT(id >= 0 && id < COUNTERS);
  uint32_t s = tls_shard_plus_one;
  if (s == 0) {
    // Relaxed: only spreads threads over shards; no data is published.
    s = atomic_fetch_add_explicit(&g_next_shard, 1, memory_order_relaxed) %
            SHARD_COUNT +
        1;
    tls_shard_plus_one = s;
  }
  // Relaxed: a pure counter; readers want a sum, not ordering.
  atomic_fetch_add_explicit(&g_shards[s - 1].v[id], n, memory_order_relaxed);
}

uint64_t mbx__counter_sum(int id) {
  MBX_ASSERT(id >= 0 && id < COUNTERS);
  uint64_t sum = 0;
  for (int i = 0; i < SHARD_COUNT; i++)
    // Relaxed: a snapshot of counters; see mbx_stats_global's contract.
    sum += atomic_load_explicit(&g_shards[i].v[id], memory_order_relaxed);
  return sum;
}

/* ---- per-record counters */

/* Registry lock held for all of it: counters of lives that ended and whose
 * record was reused. */
static struct {
  uint64_t run, canceled, dropped, abandoned;
  uint32_t high_water;
} g_folded;

void mbx__stats_abandon(mbx__record *r, int32_t lost) {
  if (lost > 0)
    // Relaxed (both): a counter; its only writer is the closer that drains.
    atomic_store_explicit(
        &r->abandoned,
        atomic_load_explicit(&r->abandoned, memory_order_relaxed) +
            (uint32_t)lost,
        memory_order_relaxed);
}

void mbx__stats_fold(mbx__record *r) {
  // Relaxed loads/stores: the record is quiescent (closed, no holds, no
  // sender past the gate); the registry lock orders us with stat readers.
  g_folded.run += atomic_exchange_explicit(&r->run, 0, memory_order_relaxed);
  g_folded.canceled +=
      atomic_exchange_explicit(&r->canceled, 0, memory_order_relaxed);
  g_folded.dropped +=
      atomic_exchange_explicit(&r->dropped, 0, memory_order_relaxed);
  g_folded.abandoned +=
      atomic_exchange_explicit(&r->abandoned, 0, memory_order_relaxed);
  /* Global rejection counts come from the senders' shards: just reset. */
  atomic_store_explicit(&r->rejected_closed, 0, memory_order_relaxed);
  atomic_store_explicit(&r->rejected_full, 0, memory_order_relaxed);
  uint32_t hw =
      atomic_exchange_explicit(&r->high_water, 0, memory_order_relaxed);
  if (hw > g_folded.high_water)
    g_folded.high_water = hw;
}

/* Relaxed loads throughout: they are counters, and the registry lock keeps
 * a record from being reused (and its counters folded) while we read it. */
static void add_record_counters(mbx__record *r, mbx_stats *s) {
  s->run += atomic_load_explicit(&r->run, memory_order_relaxed);
  s->canceled += atomic_load_explicit(&r->canceled, memory_order_relaxed);
  s->dropped += atomic_load_explicit(&r->dropped, memory_order_relaxed);
  s->abandoned += atomic_load_explicit(&r->abandoned, memory_order_relaxed);
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
  mbx__record *r;
  if (!out)
    return MBX_EINVAL;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  memset(out, 0, sizeof *out);
  mbx__registry_lock();
  // Relaxed: generations change only under the lock we hold.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  if (mbx__gate_gen(gate) != mbx__handle_gen(h)) {
    mbx__registry_unlock();
    return mbx__gen_mismatch_code(mbx__handle_gen(h), mbx__gate_gen(gate));
  }
  add_record_counters(r, out);
  mbx__registry_unlock();
  out->sent =
      out->run + out->canceled + out->dropped + out->pending + out->abandoned;
  return MBX_OK;
}

void mbx_stats_global(mbx_stats *out) {
  memset(out, 0, sizeof *out);
  mbx__registry_lock();
  uint32_t count = mbx__record_count();
  for (uint32_t i = 0; i < count; i++)
    add_record_counters(mbx__record_at(i), out);
  out->run += g_folded.run;
  out->canceled += g_folded.canceled;
  out->dropped += g_folded.dropped;
  out->abandoned += g_folded.abandoned;
  if (g_folded.high_water > out->queue_high_water)
    out->queue_high_water = g_folded.high_water;
  mbx__registry_unlock();
  /* Derived, as for one mailbox: a send counts its message in its record's
   * pending before it is accepted, and the drain moves it to run (or a
   * close to canceled, dropped or abandoned), so an accepted message that
   * went missing stays pending. Counting sends apart, for a second,
   * independent total, cost an RMW per send: about a sixth of a send's
   * time (issue 17, send-backlog). */
  out->sent =
      out->run + out->canceled + out->dropped + out->pending + out->abandoned;
  /* Refusals are counted by senders, in the shards. */
  out->rejected_closed = mbx__counter_sum(MBX__STAT_REJ_CLOSED);
  out->rejected_stale = mbx__counter_sum(MBX__STAT_REJ_STALE);
  out->rejected_invalid = mbx__counter_sum(MBX__STAT_REJ_INVALID);
  out->rejected_nomem = mbx__counter_sum(MBX__STAT_REJ_NOMEM);
  out->rejected_full = mbx__counter_sum(MBX__STAT_REJ_FULL);
  out->wakeups = mbx__counter_sum(MBX__STAT_WAKEUP);
}

void mbx_memory_stats_get(mbx_memory_stats *out) {
  memset(out, 0, sizeof *out);
  uint32_t total, quarantined;
  uint64_t chunk_bytes;
  mbx__registry_lock();
  mbx__table_usage(&total, &quarantined, &chunk_bytes);
  mbx__registry_unlock();
  out->records_total = total;
  out->records_quarantine = quarantined;
  out->records_live = out->records_total - out->records_quarantine;
  out->record_bytes = sizeof(mbx__record);
  /* A node holds a message from its send until the drainer counts it
   * consumed (run, canceled or dropped); a node a dead owner popped and
   * never counted (abandoned) may be leaked, so it stays counted. Derived
   * from the message counters, not counted at each release: a popped node
   * may stay allocated as its queue's dummy (core/queue.h), and the drain
   * saves an RMW. */
  mbx_stats s;
  mbx_stats_global(&s);
  uint64_t consumed = s.run + s.canceled + s.dropped;
  out->nodes_live = s.sent > consumed ? s.sent - consumed : 0;
  uint64_t slots = mbx__counter_sum(MBX__STAT_NODE_SLOTS_ALLOC) -
                   mbx__counter_sum(MBX__STAT_NODE_SLOTS_FREE);
  out->nodes_cached = slots > out->nodes_live ? slots - out->nodes_live : 0;
  out->bytes_live = chunk_bytes + mbx__counter_sum(MBX__STAT_NODE_BYTES_ALLOC) -
                    mbx__counter_sum(MBX__STAT_NODE_BYTES_FREE);
}
