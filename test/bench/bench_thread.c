/*
 * Thread lifetime and memory. Built twice from this file: bench_thread links
 * mbx::mbx (every pthread_create goes through our interposition and gets a
 * mailbox) and bench_thread_plain links only mbx::core (no interposition).
 * The driver runs the two alternately.
 *
 * Prints, for N threads created, exited and joined one after another:
 *   RESULT thread-lifetime <build> <us per create+exit+join> us
 *   RESULT heap-high-water <build> <bytes> bytes   (C heap above the start)
 * and, in the mbx build, the memory held per retired thread and the
 * library's own bytes:
 *   RESULT retired-thread-bytes mbx <bytes> bytes
 *   RESULT record-table-bytes mbx <bytes> bytes  (records ever allocated)
 *   RESULT library-high-water mbx <bytes> bytes  (mbx_memory_stats.bytes_live)
 *
 * The threads run on stacks of this program's static data, given with
 * pthread_attr_setstack, so no thread stack is on the C heap: on Emscripten
 * a runtime-allocated stack (2 MB on 3.1.6) is freed asynchronously after
 * the join, and whether one more of them was live when the heap was sampled
 * moved the high water by a stack's size either way in either build. With
 * the stacks out of the heap, the difference between the two builds is the
 * library's own memory (and the small per-thread runtime blocks, identical
 * in both). One thread is live at a time in both builds.
 *
 * Usage: bench_thread [--threads N]
 */
#include "bench_common.h"

#include <mbx/mailbox.h>
#include <pthread.h>

#ifdef BENCH_WITH_MBX
#define BUILD_NAME "mbx"
#else
#define BUILD_NAME "plain"
#endif

static void *body(void *arg) { return arg; }

/* Rotated so that a stack is reused only several threads later (a runtime
 * may still be tearing down the previous thread just after the join). */
#define STACKS 8
#define STACK_SIZE (128 * 1024)
static _Alignas(64) char g_stacks[STACKS][STACK_SIZE];

static void create_join(long i) {
  pthread_attr_t attr;
  pthread_t t;
  BENCH_CHECK(pthread_attr_init(&attr) == 0);
  BENCH_CHECK(pthread_attr_setstack(&attr, g_stacks[i % STACKS], STACK_SIZE) ==
              0);
  BENCH_CHECK(pthread_create(&t, &attr, body, NULL) == 0);
  BENCH_CHECK(pthread_join(t, NULL) == 0);
  pthread_attr_destroy(&attr);
}

static size_t library_bytes(void) {
#ifdef BENCH_WITH_MBX
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  return (size_t)m.bytes_live;
#else
  return 0;
#endif
}

int main(int argc, char **argv) {
  long threads = arg_long(argc, argv, "--threads", 2000);
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Warm up: the pool's workers, the allocator, the first record chunk. */
  for (int i = 0; i < 50; i++)
    create_join(i);
  size_t heap_start = heap_in_use(), heap_high = heap_start;
  size_t lib_high = library_bytes();
  double t0 = now_us();
  for (long i = 0; i < threads; i++) {
    create_join(i);
    if ((i & 63) == 0) {
      size_t h = heap_in_use(), l = library_bytes();
      if (h > heap_high)
        heap_high = h;
      if (l > lib_high)
        lib_high = l;
    }
  }
  double t1 = now_us();
  size_t h = heap_in_use();
  if (h > heap_high)
    heap_high = h;
  (void)lib_high;
  result("thread-lifetime", BUILD_NAME, (t1 - t0) / (double)threads, "us");
  result("heap-high-water", BUILD_NAME, (double)(heap_high - heap_start),
         "bytes");
#ifdef BENCH_WITH_MBX
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  BENCH_CHECK(m.nodes_live == 0);
  /* A retired thread costs its record in the quarantine (records come in
   * chunks of 64, so the table's slack is at most 63 records). */
  result("retired-thread-bytes", "mbx", (double)m.record_bytes, "bytes");
  /* The record table: the record chunks (nothing else is held now). */
  result("record-table-bytes", "mbx", (double)m.bytes_live, "bytes");
  result("library-high-water", "mbx", (double)lib_high, "bytes");
  printf("INFO records_total=%llu quarantine=%llu record_bytes=%llu "
         "bytes_live=%llu nodes_cached=%llu\n",
         (unsigned long long)m.records_total,
         (unsigned long long)m.records_quarantine,
         (unsigned long long)m.record_bytes, (unsigned long long)m.bytes_live,
         (unsigned long long)m.nodes_cached);
#endif
  printf("DONE\n");
  return 0;
}
