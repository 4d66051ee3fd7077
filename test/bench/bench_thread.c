/*
 * Thread lifetime and memory. Built twice from this file: bench_thread links
 * mbx::mbx (every pthread_create goes through our interposition and gets a
 * mailbox) and bench_thread_plain links only mbx::core (no interposition).
 * The driver runs the two alternately.
 *
 * Prints, for N threads created, exited and joined one after another:
 *   RESULT thread-lifetime <build> <us per create+exit+join> us
 *   RESULT heap-high-water <build> <bytes> bytes   (C heap above the start)
 * and, in the mbx build, N more threads created past the interposition
 * (the C library's pthread_create, reached the way the library reaches
 * it), alternating with its own in blocks of BLOCK threads:
 *   RESULT thread-lifetime plain-same-process <us> us
 * the baseline of the overhead row. The two programs, each in a process
 * of its own (its own Worker pool and heap), differed by 10 to 20% between
 * processes of one build, and the quartiles of the ratio of one process of
 * each spanned 0.82 to 1.23 over four runs (issue 17). Then the memory
 * held per retired thread and the library's own bytes (mbx build):
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

typedef int (*create_fn)(pthread_t *thread, const pthread_attr_t *attr,
                         void *(*start)(void *), void *arg);

static void create_join(long i, create_fn create) {
  pthread_attr_t attr;
  pthread_t t;
  BENCH_CHECK(pthread_attr_init(&attr) == 0);
  BENCH_CHECK(pthread_attr_setstack(&attr, g_stacks[i % STACKS], STACK_SIZE) ==
              0);
  BENCH_CHECK(create(&t, &attr, body, NULL) == 0);
  BENCH_CHECK(pthread_join(t, NULL) == 0);
  pthread_attr_destroy(&attr);
}

#ifdef BENCH_WITH_MBX
/* The C library's pthread_create, past our interposition: in wasm the name
 * --wrap gives it, natively the next definition after the executable's own
 * (system/lib/mbx/pthread/thread_hooks.c). */
#ifdef __EMSCRIPTEN__
int __real_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg);
static create_fn plain_create(void) { return __real_pthread_create; }
#else
#include <dlfcn.h>
static create_fn plain_create(void) {
  create_fn f;
  *(void **)&f = dlsym(RTLD_NEXT, "pthread_create");
  BENCH_CHECK(f);
  return f;
}
#endif
#endif

/* Threads per timed block: the mbx build alternates its two ways of
 * creating a thread block by block, which goes first alternating too. */
#define BLOCK 20
#ifdef BENCH_WITH_MBX
#define WAYS 2 /* interposed, plain */
#else
#define WAYS 1
#endif

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
  create_fn create[2] = {pthread_create, NULL};
#ifdef BENCH_WITH_MBX
  create[1] = plain_create();
#endif
  /* Warm up: the pool's workers, the allocator, the first record chunk. */
  for (int way = 0; way < WAYS; way++)
    for (int i = 0; i < 50; i++)
      create_join(i, create[way]);
  size_t heap_start = heap_in_use(), heap_high = heap_start;
  size_t lib_high = library_bytes();
  double spent_us[2] = {0, 0};
  for (long i = 0; i < threads; i += BLOCK) {
    for (int j = 0; j < WAYS; j++) {
      int way = WAYS == 2 ? j ^ (int)((i / BLOCK) & 1) : 0;
      double t0 = now_us();
      for (long k = i; k < i + BLOCK && k < threads; k++)
        create_join(k, create[way]);
      spent_us[way] += now_us() - t0;
    }
    /* Sampled between blocks, outside the timing. */
    size_t h = heap_in_use(), l = library_bytes();
    if (h > heap_high)
      heap_high = h;
    if (l > lib_high)
      lib_high = l;
  }
  size_t h = heap_in_use();
  if (h > heap_high)
    heap_high = h;
  (void)lib_high;
  result("thread-lifetime", BUILD_NAME, spent_us[0] / (double)threads, "us");
#ifdef BENCH_WITH_MBX
  result("thread-lifetime", "plain-same-process", spent_us[1] / (double)threads,
         "us");
#endif
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
