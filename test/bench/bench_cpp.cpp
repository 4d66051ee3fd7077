/*
 * <mbx/mbx.hpp> against the C API it wraps: round-trip time and
 * allocations per call. Contenders are interleaved inside one process; each
 * repetition prints RESULT lines like bench_proxy.c (see bench_common.h).
 *
 * Workloads (the server is an mbx::worker blocked in mbx_wait):
 *   cpp-call-rt        mbx::call(h, [] {})        vs mbx_proxy_sync(h, fn,
 * NULL) cpp-call-rt-value  mbx::call returning an int vs mbx_proxy_sync with
 * the int written through its argument cpp-async-rt mbx::async(...)->get() vs
 * mbx_send + a completion word (informative: a future is a shared state)
 *   allocs-per-call    allocations per call (operator new plus the
 *                      library's allocator, mbx_set_allocator), per form:
 *                      c-sync, cpp-call, c-send, cpp-post-small (fits the
 *                      argument word), cpp-post-large (64-byte capture),
 *                      c-callback, cpp-callback, cpp-async
 *
 * Usage: bench_cpp [--reps R] [--rts K]
 */
#include <mbx/mbx.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

#define BENCH_CHECK(cond)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "bench: check failed %s:%d: %s\n", __FILE__,        \
                   __LINE__, #cond);                                           \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

/* ------------------------------------------------------ allocation counts */
static std::atomic<long> g_allocs{0};

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete" /* malloc/free pair   \
                                                          */
#endif
void *operator new(std::size_t n) {
  // Relaxed: a counter read after the measured calls completed.
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  void *p = std::malloc(n ? n : 1);
  if (!p)
    std::abort();
  return p;
}
void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  // Relaxed: as above.
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { std::free(p); }

static void *count_alloc(size_t size, void *) {
  // Relaxed: as above.
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size);
}
static void count_free(void *p, void *) { std::free(p); }

/* ------------------------------------------------------------------ misc */
static double now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch())
      .count();
}

static long arg_long(int argc, char **argv, const char *name, long fallback) {
  for (int i = 1; i + 1 < argc; i++)
    if (std::strcmp(argv[i], name) == 0)
      return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}

static void result(const char *workload, const char *contender, double value,
                   const char *unit) {
  std::printf("RESULT %s %s %.6g %s\n", workload, contender, value, unit);
  std::fflush(stdout);
}

static void nothing(void *) {}
static void write_int(void *arg) { *static_cast<int *>(arg) = 1; }

/* A one-shot completion word for the bare mbx_send round trip. */
static void signal_done(void *arg) {
  // Release: the waiter's acquire.
  static_cast<std::atomic<int> *>(arg)->store(1, std::memory_order_release);
}

/* Microseconds per round trip. */
static double run_rt(mbx_handle h, const char *contender, long rts) {
  double t0 = now_us();
  if (!std::strcmp(contender, "cpp")) {
    for (long i = 0; i < rts; i++)
      BENCH_CHECK(mbx::call(h, [] {}));
  } else if (!std::strcmp(contender, "c")) {
    for (long i = 0; i < rts; i++)
      BENCH_CHECK(mbx_proxy_sync(h, nothing, nullptr) == MBX_OK);
  } else if (!std::strcmp(contender, "cpp-value")) {
    for (long i = 0; i < rts; i++)
      BENCH_CHECK(*mbx::call(h, [] { return 1; }) == 1);
  } else if (!std::strcmp(contender, "c-value")) {
    for (long i = 0; i < rts; i++) {
      int out = 0;
      BENCH_CHECK(mbx_proxy_sync(h, write_int, &out) == MBX_OK && out == 1);
    }
  } else if (!std::strcmp(contender, "cpp-async")) {
    for (long i = 0; i < rts; i++)
      BENCH_CHECK(mbx::async(h, [] { return 1; })->get() == 1);
  } else if (!std::strcmp(contender, "c-send")) {
    for (long i = 0; i < rts; i++) {
      std::atomic<int> done{0};
      BENCH_CHECK(mbx_send(h, signal_done, nullptr, &done) == MBX_OK);
      // Acquire: pairs with signal_done. Spin a little, then yield (a bare
      // spin starves the server on a loaded machine).
      for (int spins = 0; !done.load(std::memory_order_acquire); spins++)
        if (spins > 2000)
          std::this_thread::yield();
    }
  }
  return (now_us() - t0) / (double)rts;
}

/* Nanoseconds per message sent to the calling thread's own mailbox and run
 * by its mbx_poll (batches of 64): the wrapper's own cost, free of the
 * scheduling noise of a round trip. */
static void count_one(void *arg) { ++*static_cast<long *>(arg); }
static double run_self(const char *contender, long n) {
  long count = 0;
  long *cp = &count;
  mbx_handle self = mbx_self();
  double t0 = now_us();
  for (long i = 0; i < n; i += 64) {
    if (!std::strcmp(contender, "cpp"))
      for (int j = 0; j < 64; j++)
        BENCH_CHECK(mbx::post(self, [cp] { ++*cp; }));
    else
      for (int j = 0; j < 64; j++)
        BENCH_CHECK(mbx_send(self, count_one, nullptr, cp) == MBX_OK);
    BENCH_CHECK(mbx_poll() >= 64); // plus any late proxy replies
  }
  double t1 = now_us();
  BENCH_CHECK(count == (n + 63) / 64 * 64);
  return (t1 - t0) * 1000.0 / (double)count;
}

/* Allocations per call of one form (the calls complete before counting). */
static double run_allocs(mbx_handle h, const char *form, long n) {
  std::atomic<long> ran{0};
  std::atomic<long> *rp = &ran;
  char big[64] = {1};
  long cb_done = 0;
  long before = g_allocs.load(std::memory_order_relaxed);
  for (long i = 0; i < n; i++) {
    if (!std::strcmp(form, "c-sync")) {
      BENCH_CHECK(mbx_proxy_sync(h, nothing, nullptr) == MBX_OK);
    } else if (!std::strcmp(form, "cpp-call")) {
      BENCH_CHECK(mbx::call(h, [] {}));
    } else if (!std::strcmp(form, "c-send")) {
      BENCH_CHECK(mbx_send(h, nothing, nullptr, nullptr) == MBX_OK);
    } else if (!std::strcmp(form, "cpp-post-small")) {
      BENCH_CHECK(mbx::post(h, [rp] { rp->fetch_add(1); }));
    } else if (!std::strcmp(form, "cpp-post-large")) {
      BENCH_CHECK(mbx::post(h, [rp, big] { rp->fetch_add(big[0]); }));
    } else if (!std::strcmp(form, "c-callback")) {
      BENCH_CHECK(mbx_proxy_callback(
                      h, nothing, [](void *a) { ++*static_cast<long *>(a); },
                      nullptr, &cb_done) == MBX_OK);
      while (cb_done <= i)
        mbx_wait(-1);
    } else if (!std::strcmp(form, "cpp-callback")) {
      BENCH_CHECK(mbx::callback(
          h, [] { return 1; }, [&cb_done](int v) { cb_done += v; },
          [](int) { std::abort(); }));
      while (cb_done <= i)
        mbx_wait(-1);
    } else if (!std::strcmp(form, "cpp-async")) {
      BENCH_CHECK(mbx::async(h, [] { return 1; })->get() == 1);
    }
    if (i % 64 == 63) // sends: let the server keep up (its nodes recycle)
      BENCH_CHECK(mbx_proxy_sync(h, nothing, nullptr) == MBX_OK);
  }
  // The calls above include n / 64 syncs that allocate nothing themselves
  // (c-sync shows it); make sure every send has run.
  BENCH_CHECK(mbx_proxy_sync(h, nothing, nullptr) == MBX_OK);
  long after = g_allocs.load(std::memory_order_relaxed);
  return (double)(after - before) / (double)n;
}

int main(int argc, char **argv) {
  BENCH_CHECK(mbx_set_allocator(count_alloc, count_free, nullptr) == MBX_OK);
  int reps = (int)arg_long(argc, argv, "--reps", 9);
  long rts = arg_long(argc, argv, "--rts", 20000);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  mbx::thread_mailbox own; // callbacks need one (no-op if main has it)
  mbx::worker server;
  mbx_handle h = server.handle();

  const char *rt_order[] = {"cpp", "c"};
  const char *value_order[] = {"cpp-value", "c-value"};
  const char *async_order[] = {"cpp-async", "c-send"};
  /* Warm-up, untimed (wasm tiers up; spin budgets adapt). */
  for (int j = 0; j < 2; j++) {
    run_rt(h, rt_order[j], rts);
    run_rt(h, value_order[j], rts);
    run_rt(h, async_order[j], rts / 4);
  }
  for (int j = 0; j < 2; j++)
    run_self(j ? "c" : "cpp", rts * 10);
  for (int rep = 0; rep < reps; rep++) {
    for (int j = 0; j < 2; j++) {
      int k = (j + rep) & 1;
      result("cpp-post-self", k == 0 ? "mbx-cpp-post" : "mbx-c-send",
             run_self(k == 0 ? "cpp" : "c", rts * 10), "ns");
    }
    for (int j = 0; j < 2; j++) {
      int k = (j + rep) & 1; // alternate who goes first
      result("cpp-call-rt",
             rt_order[k] == std::string("cpp") ? "mbx-cpp-call" : "mbx-c-sync",
             run_rt(h, rt_order[k], rts), "us");
    }
    for (int j = 0; j < 2; j++) {
      int k = (j + rep) & 1;
      result("cpp-call-rt-value", k == 0 ? "mbx-cpp-call" : "mbx-c-sync",
             run_rt(h, value_order[k], rts), "us");
    }
    for (int j = 0; j < 2; j++) {
      int k = (j + rep) & 1;
      result("cpp-async-rt", k == 0 ? "mbx-cpp-async" : "mbx-c-send",
             run_rt(h, async_order[k], rts / 4), "us");
    }
  }
  static const char *forms[] = {
      "c-sync",         "cpp-call",   "c-send",       "cpp-post-small",
      "cpp-post-large", "c-callback", "cpp-callback", "cpp-async"};
  for (const char *form : forms) {
    run_allocs(h, form, 1000); // warm the caches (call records, nodes)
    result("allocs-per-call", form, run_allocs(h, form, 20000), "allocs");
  }
  std::printf("DONE\n");
  std::fflush(stdout);
  return 0;
}
