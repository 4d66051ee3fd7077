// mbx-test-args: --cycles 100000
// mbx-test-args-wasm-asan: --cycles 20000
/*
 * Memory stays bounded while records are created and retired forever:
 * 100,000 mailbox lifetimes, each with messages run and canceled, some held
 * past their death, and old handles kept and used long after. The record
 * table stays at (quarantine threshold + live + held) records and the heap
 * stops growing after warm-up. Also checks the quarantine delay: a retired
 * record is not reused before `threshold` later retirements.
 */
#include "check.h"

#define KEPT 32

static long g_runs, g_cancels;
static void on_run(void *arg) {
  (void)arg;
  g_runs++;
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  g_cancels++;
}

static void check_quarantine_delay(uint32_t threshold) {
  mbx_set_quarantine(threshold);
  mbx_handle victim;
  CHECK_EQ(mbx_thread_attach(&victim), MBX_OK);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  /* While fewer than `threshold` later records have retired, the victim's
   * record is not handed out: its handle keeps answering ECLOSED. */
  for (uint32_t i = 0; i < threshold; i++) {
    mbx_handle h;
    CHECK_EQ(mbx_thread_attach(&h), MBX_OK);
    CHECK((uint32_t)h.bits != (uint32_t)victim.bits);
    CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
    CHECK_EQ(mbx_send(victim, on_run, NULL, NULL), MBX_ECLOSED);
  }
  /* Eventually it is reused, and the old handle becomes stale. */
  int reused = 0;
  for (uint32_t i = 0; i < 4 * threshold + 4 && !reused; i++) {
    mbx_handle h;
    CHECK_EQ(mbx_thread_attach(&h), MBX_OK);
    reused = (uint32_t)h.bits == (uint32_t)victim.bits;
    CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  }
  CHECK(reused);
  CHECK_EQ(mbx_send(victim, on_run, NULL, NULL), MBX_ESTALE);
}

int main(int argc, char **argv) {
  long cycles = arg_long(argc, argv, "--cycles", 100000);
  uint32_t threshold = 64;
  check_quarantine_delay(threshold);

  mbx_set_quarantine(threshold);
  mbx_handle kept[KEPT] = {0};
  int held[KEPT] = {0};
  size_t warm_high = 0, late_high = 0;
  uint64_t records_high = 0;
  long sent_ok = 0, stale_or_closed = 0;
  g_runs = g_cancels = 0;
  for (long c = 0; c < cycles; c++) {
    mbx_handle h;
    CHECK_EQ(mbx_thread_attach(&h), MBX_OK);
    for (int i = 0; i < (int)(c % 5); i++) {
      CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
      sent_ok++;
    }
    if (c % 2)
      mbx_poll();
    int slot = (int)(c % KEPT);
    if (held[slot]) { /* a hold released long after the thread died */
      CHECK_EQ(mbx_release(kept[slot]), MBX_OK);
      held[slot] = 0;
    }
    /* Old handles keep being used: never delivered, never a crash. */
    if (!mbx_handle_is_null(kept[slot])) {
      int rc = mbx_send(kept[slot], on_run, on_cancel, NULL);
      CHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE);
      stale_or_closed++;
    }
    kept[slot] = h;
    if (c % 3 == 0) {
      CHECK_EQ(mbx_hold(h), MBX_OK);
      held[slot] = 1;
    }
    CHECK(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT) >= 0);
    if (c % 1000 == 999) {
      size_t in_use = heap_in_use();
      mbx_memory_stats m;
      mbx_memory_stats_get(&m);
      if (m.records_total > records_high)
        records_high = m.records_total;
      if (c < cycles / 10)
        warm_high = in_use > warm_high ? in_use : warm_high;
      else
        late_high = in_use > late_high ? in_use : late_high;
    }
  }
  for (int i = 0; i < KEPT; i++)
    if (held[i])
      CHECK_EQ(mbx_release(kept[i]), MBX_OK);
  CHECK_EQ(g_runs + g_cancels, sent_ok);
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  printf("cycles=%ld records_total=%llu records_high=%llu quarantine=%llu "
         "record_bytes=%llu bytes_live=%llu heap_high_warmup=%zu "
         "heap_high_after=%zu stale_sends=%ld\n",
         cycles, (unsigned long long)m.records_total,
         (unsigned long long)records_high,
         (unsigned long long)m.records_quarantine,
         (unsigned long long)m.record_bytes, (unsigned long long)m.bytes_live,
         warm_high, late_high, stale_or_closed);
  /* Bounded: threshold + 1 in quarantine, up to KEPT held, 1 live, plus the
   * delay check's records; rounded up to whole chunks of 64. */
  CHECK(m.records_total <= 4 * 64);
  CHECK_EQ(m.nodes_live, 0);
  CHECK(m.record_bytes <= 128 || sizeof(void *) == 8);
  if (cycles >= 20000)
    CHECK(late_high <= warm_high + 4096); /* flat after warm-up */
  printf("PASS quarantine_bound\n");
  return 0;
}
