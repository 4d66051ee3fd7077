// mbx-test-args: --libs 40
// mbx-test-args-native-tsan: --libs 20
// mbx-test-args-wasm-asan: --libs 12
// mbx-test-timeout: 300
/*
 * A dynamic loader's pattern, as a test: "load library N" must run exactly
 * once on every live thread, and every thread started later must have
 * loaded every library before its own code runs, also threads started by
 * code that knows nothing of mbx (examples/loader/foreign_pthread.c with a
 * plain pthread_create, examples/loader/foreign_std_thread.cpp with
 * std::thread; both compiled into this program).
 *
 * A loader thread loads libraries one after another with a persistent
 * broadcast (blocking form for even ones, callback form for odd ones),
 * while the main thread keeps creating short-lived threads of three kinds
 * that poll their mailbox while they work and then exit. Each thread
 * records which libraries it loaded; a violation is a library loaded twice
 * on one thread, missing at a thread's start although it was loaded before
 * the thread was created, or missing at a thread's end although its load
 * had completed everywhere. Prints PASS with violations=0.
 */
#include "../test/support/check.h"

#include <mbx/broadcast.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <stdatomic.h>

#define MAX_LIBS 64

typedef struct library {
  int id;
} library;

static library g_libs[MAX_LIBS];
static int g_nlibs = 40;
static _Atomic uint64_t g_libs_done; /* loads complete on every thread */
static _Atomic int g_stop;
static _Atomic long g_violations, g_loads_run, g_threads[3];
static _Atomic unsigned g_caught_up, g_exited;
static _Thread_local unsigned char tls_loaded[MAX_LIBS];
static _Thread_local rng tls_rng;

static void violation(const char *what, int lib) {
  fprintf(stderr, "violation: %s (library %d)\n", what, lib);
  atomic_fetch_add_explicit(&g_violations, 1, memory_order_relaxed);
}

/* "Load" a library on the calling thread. */
static void load(void *arg) {
  library *lib = arg;
  if (tls_loaded[lib->id])
    violation("loaded twice on one thread", lib->id);
  tls_loaded[lib->id] = 1;
  atomic_fetch_add_explicit(&g_loads_run, 1, memory_order_relaxed);
}

static void check_loaded(uint64_t upto, const char *what) {
  for (uint64_t i = 0; i < upto; i++)
    if (!tls_loaded[i])
      violation(what, (int)i);
}

/* Every worker thread's code, whoever created it (kind 0: this file,
 * 1: foreign pthread_create, 2: std::thread). libs_at_create: libraries
 * loaded everywhere before the creator called pthread_create. */
void loader_thread_body(uint64_t libs_at_create, int kind) {
  atomic_fetch_add_explicit(&g_threads[kind], 1, memory_order_relaxed);
  check_loaded(libs_at_create, "missing at thread start (no catch-up)");
  if (mbx_handle_is_null(mbx_self())) { /* no mailbox: not interposed */
    fprintf(stderr, "thread kind %d has no mailbox\n", kind);
    CHECK(0);
  }
  rng_seed(&tls_rng, (uint64_t)(uintptr_t)&tls_rng + libs_at_create);
  double end = now_ms() + 0.5 + (double)rng_below(&tls_rng, 3);
  while (now_ms() < end) {
    mbx_poll(); /* a library load arrives as a message */
    sleep_ms(0.1);
  }
  mbx_poll();
  // Acquire: pairs with the loader's release; those loads ran here.
  check_loaded(atomic_load_explicit(&g_libs_done, memory_order_acquire),
               "missing at thread end");
}

int foreign_pthread_start(pthread_t *t, uint64_t libs_at_create);
void *foreign_std_thread_start(uint64_t libs_at_create);
void foreign_std_thread_join(void *t);

static void account(const mbx_broadcast_report *r) {
  CHECK_EQ(r->failed, 0);
  CHECK_EQ(r->late, 0);
  CHECK_EQ(r->done + r->exited, r->targets);
  atomic_fetch_add_explicit(&g_caught_up, r->caught_up, memory_order_relaxed);
  atomic_fetch_add_explicit(&g_exited, r->exited, memory_order_relaxed);
}

static _Atomic int g_async_done;
static void on_loaded(const mbx_broadcast_report *r, void *arg) {
  (void)arg;
  account(r);
  atomic_store_explicit(&g_async_done, 1, memory_order_relaxed);
}

static uint64_t g_seqs[MAX_LIBS];

static void *loader_main(void *unused) {
  (void)unused;
  for (int i = 0; i < g_nlibs; i++) {
    sleep_ms(2);
    g_libs[i].id = i;
    mbx_broadcast_report r;
    if (i % 2 == 0) {
      mbx_handle late[4];
      int rc = mbx_broadcast(load, &g_libs[i], MBX_BROADCAST_PERSIST, 20000, &r,
                             late, 4);
      if (rc != MBX_OK)
        fprintf(stderr, "broadcast %d: %s, %u late\n", i, mbx_strerror(rc),
                r.late);
      CHECK_EQ(rc, MBX_OK);
      account(&r);
      g_seqs[i] = r.seq;
    } else {
      atomic_store(&g_async_done, 0);
      CHECK_EQ(mbx_broadcast_async(load, &g_libs[i], MBX_BROADCAST_PERSIST,
                                   on_loaded, NULL, &g_seqs[i]),
               MBX_OK);
      while (!atomic_load_explicit(&g_async_done, memory_order_relaxed))
        mbx_wait(-1);
    }
    check_loaded((uint64_t)i + 1, "missing on the loader thread");
    // Release: pairs with the workers' acquire.
    atomic_store_explicit(&g_libs_done, (uint64_t)i + 1, memory_order_release);
  }
  atomic_store(&g_stop, 1);
  return NULL;
}

static void *native_worker(void *arg) {
  loader_thread_body((uint64_t)(uintptr_t)arg, 0);
  return NULL;
}

#define LIVE 6
typedef struct child {
  int kind; /* -1: none */
  pthread_t t;
  void *cpp;
} child;

static void reap(child *c) {
  if (c->kind == 2)
    foreign_std_thread_join(c->cpp);
  else if (c->kind >= 0)
    pthread_join(c->t, NULL);
  c->kind = -1;
}

static int g_retired_seen;
static void *after_retire(void *unused) {
  (void)unused;
  for (int i = 0; i < g_nlibs; i++)
    g_retired_seen += tls_loaded[i];
  return NULL;
}

int main(int argc, char **argv) {
  g_nlibs = (int)arg_long(argc, argv, "--libs", 40);
  CHECK(g_nlibs > 0 && g_nlibs <= MAX_LIBS);
  pthread_t loader;
  CHECK_EQ(pthread_create(&loader, NULL, loader_main, NULL), 0);
  child kids[LIVE];
  for (int i = 0; i < LIVE; i++)
    kids[i].kind = -1;
  long created = 0;
  /* The main thread creates every thread (3.1.6 creates workers on it). */
  while (!atomic_load(&g_stop)) {
    child *c = &kids[created % LIVE];
    reap(c);
    // Acquire: as in loader_thread_body.
    uint64_t libs = atomic_load_explicit(&g_libs_done, memory_order_acquire);
    c->kind = (int)(created % 3);
    if (c->kind == 0)
      CHECK_EQ(
          pthread_create(&c->t, NULL, native_worker, (void *)(uintptr_t)libs),
          0);
    else if (c->kind == 1)
      CHECK_EQ(foreign_pthread_start(&c->t, libs), 0);
    else
      CHECK((c->cpp = foreign_std_thread_start(libs)) != NULL);
    created++;
    mbx_poll(); /* the main thread loads libraries too */
    sleep_ms(0.3);
  }
  for (int i = 0; i < LIVE; i++)
    reap(&kids[i]);
  pthread_join(loader, NULL);
  mbx_poll();
  check_loaded((uint64_t)g_nlibs, "missing on the main thread");
  /* Retired libraries are not loaded by threads started afterwards. */
  for (int i = 0; i < g_nlibs; i++)
    CHECK_EQ(mbx_broadcast_retire(g_seqs[i]), MBX_OK);
  CHECK_EQ(mbx_broadcast_retire(g_seqs[0]), MBX_EINVAL);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, after_retire, NULL), 0);
  pthread_join(t, NULL);
  CHECK_EQ(g_retired_seen, 0);
  long violations = atomic_load(&g_violations);
  printf("libs=%d threads=%ld (pthread %ld, foreign pthread %ld, "
         "std::thread %ld) loads_run=%ld caught_up=%u done_by_exit=%u "
         "violations=%ld\n",
         g_nlibs, created, atomic_load(&g_threads[0]),
         atomic_load(&g_threads[1]), atomic_load(&g_threads[2]),
         atomic_load(&g_loads_run), atomic_load(&g_caught_up),
         atomic_load(&g_exited), violations);
  CHECK_EQ(violations, 0);
  CHECK(atomic_load(&g_caught_up) > 0);
  printf("PASS loader\n");
  return 0;
}
