/*
 * Thread lifetime and memory. Built twice from this file: bench_thread links
 * mbx::mbx (every pthread_create goes through our interposition and gets a
 * mailbox) and bench_thread_plain links only mbx::core (no interposition).
 * The driver runs the two alternately.
 *
 * Prints, for N threads created, exited and joined one after another:
 *   RESULT thread-lifetime <build> <us per create+exit+join> us
 *   RESULT heap-high-water <build> <bytes> bytes   (C heap above the start)
 * and, in the mbx build, the memory held per retired thread:
 *   RESULT retired-thread-bytes mbx <bytes> bytes
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

int main(int argc, char **argv) {
  long threads = arg_long(argc, argv, "--threads", 2000);
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Warm up: the pool's workers, the allocator, the first record chunk. */
  for (int i = 0; i < 50; i++) {
    pthread_t t;
    BENCH_CHECK(pthread_create(&t, NULL, body, NULL) == 0);
    pthread_join(t, NULL);
  }
  size_t heap_start = heap_in_use(), heap_high = heap_start;
  double t0 = now_us();
  for (long i = 0; i < threads; i++) {
    pthread_t t;
    BENCH_CHECK(pthread_create(&t, NULL, body, NULL) == 0);
    pthread_join(t, NULL);
    if ((i & 63) == 0) {
      size_t h = heap_in_use();
      if (h > heap_high)
        heap_high = h;
    }
  }
  double t1 = now_us();
  size_t h = heap_in_use();
  if (h > heap_high)
    heap_high = h;
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
