/*
 * Native core figures: send + receive cost per message with 1 and 2
 * producers to one consumer, ours (consumer in mbx_wait) against a
 * mutex-protected growable ring buffer of (function, argument) tasks in the
 * style of upstream's em_task_queue (the consumer takes the lock once per
 * task and sleeps on a futex; producers notify on empty -> non-empty).
 *
 * Prints RESULT send-receive-<P>p <contender> <ns per message> ns.
 * Usage: bench_queue [--reps R] [--msgs N]
 */
#include "bench_common.h"

#include <mbx/mailbox.h>
#include <pthread.h>

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
static uint64_t g_consumed, g_target; /* consumer only, set before go */
static completion g_all;
static _Atomic int32_t g_go;

static void count_one(void *arg) {
  (void)arg;
  if (++g_consumed == g_target)
    completion_signal(&g_all);
}
static void stop_ring(void *arg) {
  (void)arg;
  atomic_store_explicit(&g_ring.stop, 1, memory_order_relaxed); // see reader
}
static void stop_mbx(void *arg) {
  (void)arg;
  atomic_store_explicit(&g_mbx_stop, 1, memory_order_relaxed); // see reader
}

typedef struct producer {
  pthread_t thread;
  int ours;
  long count;
} producer;

static void *producer_main(void *p) {
  producer *self = p;
  // Acquire: see g_target.
  while (!atomic_load_explicit(&g_go, memory_order_acquire))
    futex_wait_i32(&g_go, 0);
  for (long i = 0; i < self->count; i++) {
    if (self->ours)
      BENCH_CHECK(mbx_send(g_consumer_handle, count_one, NULL, NULL) == MBX_OK);
    else
      ring_push(count_one, NULL);
  }
  return NULL;
}

static double run(int ours, int producers, long total) {
  pthread_t consumer;
  producer ps[4];
  long per = total / producers;
  g_consumed = 0;
  g_target = (uint64_t)per * (uint64_t)producers;
  completion_reset(&g_all);
  atomic_store(&g_go, 0);
  if (ours) {
    completion_reset(&g_consumer_ready);
    atomic_store(&g_mbx_stop, 0);
    BENCH_CHECK(pthread_create(&consumer, NULL, mbx_consumer, NULL) == 0);
    completion_wait(&g_consumer_ready);
  } else {
    atomic_store(&g_ring.stop, 0);
    BENCH_CHECK(pthread_create(&consumer, NULL, ring_consumer, NULL) == 0);
  }
  for (int i = 0; i < producers; i++) {
    ps[i].ours = ours;
    ps[i].count = per;
    BENCH_CHECK(pthread_create(&ps[i].thread, NULL, producer_main, &ps[i]) ==
                0);
  }
  sleep_ms(5);
  double t0 = now_us();
  atomic_store(&g_go, 1);
  futex_wake_i32(&g_go, INT_MAX);
  completion_wait(&g_all);
  double t1 = now_us();
  for (int i = 0; i < producers; i++)
    pthread_join(ps[i].thread, NULL);
  if (ours)
    BENCH_CHECK(mbx_send(g_consumer_handle, stop_mbx, NULL, NULL) == MBX_OK);
  else
    ring_push(stop_ring, NULL);
  pthread_join(consumer, NULL);
  return (t1 - t0) * 1e3 / (double)g_target;
}

int main(int argc, char **argv) {
  int reps = (int)arg_long(argc, argv, "--reps", 9);
  long msgs = arg_long(argc, argv, "--msgs", 1000000);
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int rep = 0; rep < reps; rep++) {
    for (int p = 1; p <= 2; p++) {
      char name[32];
      snprintf(name, sizeof name, "send-receive-%dp", p);
      for (int j = 0; j < 2; j++) {
        int ours = (j ^ rep) & 1 ? 0 : 1;
        result(name, ours ? "mbx" : "mutex-ring", run(ours, p, msgs), "ns");
      }
    }
  }
  printf("DONE\n");
  return 0;
}
