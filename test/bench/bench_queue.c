/*
 * The core's figures: send + receive cost per message with 1, 2, 4, 8 and
 * 16 producers to one consumer, natively and in wasm (where threads cannot
 * be pinned: see Placement). Three contenders, rotated per repetition
 * inside one process:
 *   mbx         ours, the consumer in mbx_wait;
 *   mutex-ring  a mutex-protected growable ring buffer of (function,
 *               argument) tasks in the style of upstream's em_task_queue
 *               (the consumer takes the lock once per task and sleeps on a
 *               futex; producers notify on empty -> non-empty);
 *   vyukov      a well-known fast MPSC design: Dmitry Vyukov's bounded
 *               array queue with a sequence number per slot (a producer
 *               claims a slot with one CAS on the tail and publishes it with
 *               a release store of the slot's sequence), plus the usual
 *               sleeping-consumer handshake (a flag the consumer sets
 *               before sleeping, a seq_cst fence on both sides).
 *
 * Placement (--placement): where the scheduler puts a consumer and its
 * producer decides these figures more than any queue does. On a 2-core
 * machine, left free, one build measured 20 to 41 ns per message and the
 * mutex ring 30 to 71 in one run of 15 repetitions, and 11 to 26 and 16 to
 * 63 in the next (issue 17): a consumer that sleeps is woken onto its
 * waker's CPU now and then, and the two then share that CPU until the
 * balancer parts them. So each contender runs pinned, the same way:
 *   split  (default) the consumer on the first CPU the process may use,
 *          producers round-robin over the others (on 2 CPUs all on the
 *          second): each side has a core; the rows with targets;
 *   one    everything on the first CPU: no cache line moves, and a queue's
 *          cost is its instructions and its locked operations;
 *   free   no pinning (the scheduler's lottery).
 * split pins nothing when the process may use one CPU only (and says so).
 * On 2 CPUs split also puts every producer on the same CPU, so producers
 * never contend from two cores at once: its flatness is that of producers
 * taking turns. Unpinned they do contend, and no design here stays flat
 * (js/bench.mjs reports the -free rows without targets: issue 17).
 * In wasm every placement is free: a pthread is a Worker, which no program
 * can place (the rows are named -free).
 *
 * Prints RESULT send-receive-<P>p[-one-cpu|-free] <contender> <ns per
 * message> ns (no suffix for split).
 * Usage: bench_queue [--reps R] [--msgs N] [--only mbx|mutex-ring|vyukov]
 *                    [--producers P]  (--only, --producers: for profiling)
 *                    [--placement split|one|free]
 */
#include "bench_common.h"

#include <mbx/mailbox.h>
#include <pthread.h>
#include <sched.h>

/* ---------------------------------------------------- the ring baseline */
typedef struct task {
  void (*fn)(void *);
  void *arg;
} task;

static struct {
  pthread_mutex_t lock;
  task *tasks;
  uint32_t capacity, head, count;
  _Atomic int32_t seq; /* bumped on empty -> non-empty; consumer sleeps on it */
  _Atomic int32_t stop;
} g_ring = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void ring_push(void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&g_ring.lock);
  if (g_ring.count == g_ring.capacity) {
    uint32_t cap = g_ring.capacity ? g_ring.capacity * 2 : 128;
    task *t = malloc(sizeof *t * cap);
    BENCH_CHECK(t);
    for (uint32_t i = 0; i < g_ring.count; i++)
      t[i] = g_ring.tasks[(g_ring.head + i) % g_ring.capacity];
    free(g_ring.tasks);
    g_ring.tasks = t;
    g_ring.capacity = cap;
    g_ring.head = 0;
  }
  int was_empty = g_ring.count == 0;
  g_ring.tasks[(g_ring.head + g_ring.count) % g_ring.capacity] =
      (task){fn, arg};
  g_ring.count++;
  pthread_mutex_unlock(&g_ring.lock);
  if (was_empty) {
    // Release: nothing rides on it (the lock publishes the task); the
    // consumer only needs the value to change.
    atomic_fetch_add_explicit(&g_ring.seq, 1, memory_order_release);
    futex_wake_i32(&g_ring.seq, 1);
  }
}

static void *ring_consumer(void *unused) {
  (void)unused;
  for (;;) {
    // Acquire: pairs with the producer's bump (see ring_push).
    int32_t seq = atomic_load_explicit(&g_ring.seq, memory_order_acquire);
    pthread_mutex_lock(&g_ring.lock);
    while (g_ring.count) {
      task t = g_ring.tasks[g_ring.head];
      g_ring.head = (g_ring.head + 1) % g_ring.capacity;
      g_ring.count--;
      pthread_mutex_unlock(&g_ring.lock);
      t.fn(t.arg);
      pthread_mutex_lock(&g_ring.lock);
    }
    pthread_mutex_unlock(&g_ring.lock);
    // Relaxed: set before the stop task, which the lock orders.
    if (atomic_load_explicit(&g_ring.stop, memory_order_relaxed))
      return NULL;
    futex_wait_i32(&g_ring.seq, seq);
  }
}

/* ------------------------------------------------- the Vyukov baseline */
#define VQ_SLOTS (1u << 16) /* a power of two */
#define VQ_SPINS 1000       /* consumer polls before it sleeps */

typedef struct vq_slot {
  _Atomic size_t seq; /* pos: free for the producer of pos; pos + 1: full */
  task t;
} vq_slot;

static struct {
  vq_slot *slots;
  _Alignas(64) _Atomic size_t tail;      /* next position to claim */
  _Alignas(64) size_t head;              /* consumer only */
  _Alignas(64) _Atomic int32_t sleeping; /* 1 while the consumer may sleep */
  int stop;                              /* consumer only, set by a task */
} g_vq;

static void vq_init(void) {
  if (!g_vq.slots) {
    g_vq.slots = malloc(sizeof *g_vq.slots * VQ_SLOTS);
    BENCH_CHECK(g_vq.slots);
  }
  for (size_t i = 0; i < VQ_SLOTS; i++)
    // Relaxed: published by pthread_create of the threads that use them.
    atomic_store_explicit(&g_vq.slots[i].seq, i, memory_order_relaxed);
  atomic_store_explicit(&g_vq.tail, 0, memory_order_relaxed); // likewise
  g_vq.head = 0;
  g_vq.stop = 0;
  atomic_store_explicit(&g_vq.sleeping, 0, memory_order_relaxed); // likewise
}

static void vq_push(void (*fn)(void *), void *arg) {
  // Relaxed: only a guess, the CAS below decides.
  size_t pos = atomic_load_explicit(&g_vq.tail, memory_order_relaxed);
  vq_slot *slot;
  for (;;) {
    slot = &g_vq.slots[pos & (VQ_SLOTS - 1)];
    // Acquire: the consumer's release of the slot (its read of the task).
    size_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
    intptr_t diff = (intptr_t)seq - (intptr_t)pos;
    if (diff == 0) {
      // Relaxed: the claim orders nothing; the slot's seq publishes.
      if (atomic_compare_exchange_weak_explicit(&g_vq.tail, &pos, pos + 1,
                                                memory_order_relaxed,
                                                memory_order_relaxed))
        break;
    } else {
      if (diff < 0)
        sched_yield(); /* full: the consumer is a whole ring behind */
      // Relaxed: a new guess.
      pos = atomic_load_explicit(&g_vq.tail, memory_order_relaxed);
    }
  }
  slot->t = (task){fn, arg};
  // Release: the consumer's acquire of seq sees the task.
  atomic_store_explicit(&slot->seq, pos + 1, memory_order_release);
  // Seq_cst fence: Dekker with the consumer's (store sleeping; fence; load
  // seq): either it sees our slot or we see its flag.
  atomic_thread_fence(memory_order_seq_cst);
  // Relaxed: ordered by the fence above.
  if (atomic_load_explicit(&g_vq.sleeping, memory_order_relaxed) &&
      // Relaxed: the wake carries nothing; one waker is enough.
      atomic_exchange_explicit(&g_vq.sleeping, 0, memory_order_relaxed))
    futex_wake_i32(&g_vq.sleeping, 1);
}

/* Runs the next task if there is one. */
static int vq_pop(void) {
  vq_slot *slot = &g_vq.slots[g_vq.head & (VQ_SLOTS - 1)];
  // Acquire: pairs with vq_push's release (the task).
  if (atomic_load_explicit(&slot->seq, memory_order_acquire) != g_vq.head + 1)
    return 0;
  task t = slot->t;
  // Release: the producer that reuses the slot sees our read done.
  atomic_store_explicit(&slot->seq, g_vq.head + VQ_SLOTS, memory_order_release);
  g_vq.head++;
  t.fn(t.arg);
  return 1;
}

static void *vq_consumer(void *unused) {
  (void)unused;
  while (!g_vq.stop) {
    if (vq_pop())
      continue;
    int got = 0;
    for (int i = 0; i < VQ_SPINS && !(got = vq_pop()); i++)
      ;
    if (got)
      continue;
    // Relaxed: ordered by the fence below.
    atomic_store_explicit(&g_vq.sleeping, 1, memory_order_relaxed);
    // Seq_cst fence: see vq_push.
    atomic_thread_fence(memory_order_seq_cst);
    if (vq_pop()) {
      // Relaxed: the flag only gates wakes.
      atomic_store_explicit(&g_vq.sleeping, 0, memory_order_relaxed);
      continue;
    }
    futex_wait_i32(&g_vq.sleeping, 1);
    // Relaxed: a spurious wake leaves the flag set; clear it either way.
    atomic_store_explicit(&g_vq.sleeping, 0, memory_order_relaxed);
  }
  return NULL;
}

/* --------------------------------------------------------- ours */
static mbx_handle g_consumer_handle;
static completion g_consumer_ready;
static _Atomic int32_t g_mbx_stop;

static void *mbx_consumer(void *unused) {
  (void)unused;
  BENCH_CHECK(mbx_thread_attach(&g_consumer_handle) == MBX_OK);
  completion_signal(&g_consumer_ready);
  // Relaxed: the stop message orders it.
  while (!atomic_load_explicit(&g_mbx_stop, memory_order_relaxed))
    mbx_wait(-1);
  mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
  return NULL;
}

/* ----------------------------------------------------- the workload */
static flood_count g_count; /* consumer only, set before go */
static completion g_all;
static _Atomic int32_t g_go;

static void count_one(void *arg) {
  (void)arg;
  if (++g_count.consumed == g_count.target)
    completion_signal(&g_all);
}
static void stop_ring(void *arg) {
  (void)arg;
  atomic_store_explicit(&g_ring.stop, 1, memory_order_relaxed); // see reader
}
static void stop_vq(void *arg) {
  (void)arg;
  g_vq.stop = 1; /* runs on the consumer */
}
static void stop_mbx(void *arg) {
  (void)arg;
  atomic_store_explicit(&g_mbx_stop, 1, memory_order_relaxed); // see reader
}

enum { MBX, RING, VYUKOV, CONTENDERS };
static const char *const NAMES[CONTENDERS] = {"mbx", "mutex-ring", "vyukov"};

typedef struct producer {
  pthread_t thread;
  int contender;
  long count;
} producer;

static void *producer_main(void *p) {
  producer *self = p;
  // Acquire: see g_count.target.
  while (!atomic_load_explicit(&g_go, memory_order_acquire))
    futex_wait_i32(&g_go, 0);
  if (self->contender == MBX) {
    for (long i = 0; i < self->count; i++)
      BENCH_CHECK(mbx_send(g_consumer_handle, count_one, NULL, NULL) == MBX_OK);
  } else if (self->contender == RING) {
    for (long i = 0; i < self->count; i++)
      ring_push(count_one, NULL);
  } else {
    for (long i = 0; i < self->count; i++)
      vq_push(count_one, NULL);
  }
  return NULL;
}

/* ----------------------------------------------------- placement */
enum { SPLIT, ONE_CPU, FREE };
static int g_placement = SPLIT;
#ifdef __EMSCRIPTEN__
/* A pthread is a Worker, and neither Node nor browsers let a program
 * place one: every placement is free, and the rows say so. */
static void placement_init(const char *name) {
  g_placement = FREE;
  printf("INFO placement free (wasm cannot pin a Worker; asked: %s)\n", name);
}
static void place(pthread_t t, int producer) {
  (void)t;
  (void)producer;
}
#else
static int g_cpus[CPU_SETSIZE]; /* the CPUs the process may use */
static int g_ncpus;
static int g_split_unpinned;

static void placement_init(const char *name) {
  g_placement = strcmp(name, "one") == 0    ? ONE_CPU
                : strcmp(name, "free") == 0 ? FREE
                                            : SPLIT;
  g_ncpus = bench_cpus(g_cpus, CPU_SETSIZE);
  if (g_placement == SPLIT && g_ncpus < 2) {
    /* The rows keep their names (they carry the targets): say so. */
    printf("INFO placement split needs 2 CPUs, %d usable: not pinned\n",
           g_ncpus);
    g_split_unpinned = 1;
  } else if (g_placement == SPLIT)
    printf("INFO placement split: consumer on CPU %d, producers on %d of "
           "the others\n",
           g_cpus[0], g_ncpus - 1);
  else
    printf("INFO placement %s\n", g_placement == ONE_CPU ? "one" : "free");
}

/* Pins a thread: the consumer (producer < 0) or producer number i. */
static void place(pthread_t t, int producer) {
  if (g_placement == FREE || g_split_unpinned)
    return;
  bench_pin(t,
            g_placement == ONE_CPU || producer < 0
                ? &g_cpus[0]
                : &g_cpus[1 + producer % (g_ncpus - 1)],
            1);
}
#endif

static double run(int contender, int producers, long total) {
  pthread_t consumer;
  producer ps[16];
  long per = total / producers;
  g_count.consumed = 0;
  g_count.target = (uint64_t)per * (uint64_t)producers;
  completion_reset(&g_all);
  atomic_store(&g_go, 0);
  if (contender == MBX) {
    completion_reset(&g_consumer_ready);
    atomic_store(&g_mbx_stop, 0);
    BENCH_CHECK(pthread_create(&consumer, NULL, mbx_consumer, NULL) == 0);
    completion_wait(&g_consumer_ready);
  } else if (contender == RING) {
    atomic_store(&g_ring.stop, 0);
    BENCH_CHECK(pthread_create(&consumer, NULL, ring_consumer, NULL) == 0);
  } else {
    vq_init();
    BENCH_CHECK(pthread_create(&consumer, NULL, vq_consumer, NULL) == 0);
  }
  place(consumer, -1);
  for (int i = 0; i < producers; i++) {
    ps[i].contender = contender;
    ps[i].count = per;
    BENCH_CHECK(pthread_create(&ps[i].thread, NULL, producer_main, &ps[i]) ==
                0);
    place(ps[i].thread, i);
  }
  sleep_ms(5);
  double t0 = now_us();
  atomic_store(&g_go, 1);
  futex_wake_i32(&g_go, INT_MAX);
  completion_wait(&g_all);
  double t1 = now_us();
  for (int i = 0; i < producers; i++)
    pthread_join(ps[i].thread, NULL);
  if (contender == MBX)
    BENCH_CHECK(mbx_send(g_consumer_handle, stop_mbx, NULL, NULL) == MBX_OK);
  else if (contender == RING)
    ring_push(stop_ring, NULL);
  else
    vq_push(stop_vq, NULL);
  pthread_join(consumer, NULL);
  return (t1 - t0) * 1e3 / (double)g_count.target;
}

int main(int argc, char **argv) {
  int reps = (int)arg_long(argc, argv, "--reps", 9);
  long msgs = arg_long(argc, argv, "--msgs", 1000000);
  long only_p = arg_long(argc, argv, "--producers", 0);
  const char *only = arg_str(argc, argv, "--only", "");
  setvbuf(stdout, NULL, _IOLBF, 0);
  placement_init(arg_str(argc, argv, "--placement", "split"));
  const char *suffix = g_placement == SPLIT     ? ""
                       : g_placement == ONE_CPU ? "-one-cpu"
                                                : "-free";
  /* Warm-up, untimed: the allocator, the spin budgets. */
  for (int c = 0; c < CONTENDERS; c++)
    run(c, 2, msgs / 4);
  for (int rep = 0; rep < reps; rep++) {
    for (int p = 1; p <= 16; p *= 2) {
      if (only_p && p != only_p)
        continue;
      char name[32];
      snprintf(name, sizeof name, "send-receive-%dp%s", p, suffix);
      for (int j = 0; j < CONTENDERS; j++) {
        int c = (j + rep) % CONTENDERS; /* who goes first rotates */
        if (*only && strcmp(only, NAMES[c]) != 0)
          continue;
        result(name, NAMES[c], run(c, p, msgs), "ns");
      }
    }
  }
  printf("DONE\n");
  return 0;
}
