// mbx-test-timeout: 120
/*
 * <mbx/mbx.hpp>, every front door: post (move-only and small callables, with
 * and without on_cancel, and how many allocations each takes), call and
 * call_for (values, void, references copied, refusals), async (futures),
 * callback (outcome on the caller's thread), exceptions (rethrown on the
 * caller, stored in the future, a throwing fire-and-forget handler leaves
 * the mailbox serving, the default rule is std::terminate), cancellation at
 * the target's exit (captures destroyed on the dying thread, a captured
 * std::promise gives broken_promise, on_cancel there, call -> MBX_ECANCELED),
 * the worker class, the hold, thread_mailbox and queue guards, broadcast
 * (shared callable, destroyed when it can no longer run), the error
 * category.
 *
 * Built three ways: cpp_api (the toolchain's default: exceptions on
 * natively; on Emscripten catching is disabled and throwing aborts, so the
 * exception checks are skipped), cpp_api_exceptions (-fexceptions: the
 * exception checks run on wasm too) and cpp_api_noexceptions
 * (-fno-exceptions: the header compiles and works without them). Where
 * catching is off, libc++ aborts when a std::promise is destroyed
 * unsatisfied (it throws to make the broken_promise exception_ptr): those
 * builds skip the broken_promise checks (the header documents the rule).
 */
#include <mbx/mbx.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if !defined(__EMSCRIPTEN__)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

/* Whether a throw can be caught in this build. Emscripten defines
 * __cpp_exceptions even when catching is disabled (its default), so the
 * -fexceptions variant says so itself. */
#if defined(__EMSCRIPTEN__) && !defined(CPP_TEST_FEXCEPTIONS)
#define CAN_CATCH 0
#elif defined(__cpp_exceptions)
#define CAN_CATCH 1
#else
#define CAN_CATCH 0
#endif

/* Whether destroying an unsatisfied std::promise is safe: libc++ makes the
 * broken_promise exception_ptr by throwing it (so it aborts where catching
 * is off); libstdc++ builds it without a throw. */
#if CAN_CATCH || (defined(__GLIBCXX__) && !defined(__EMSCRIPTEN__))
#define BROKEN_PROMISE_OK 1
#else
#define BROKEN_PROMISE_OK 0
#endif

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
      std::fflush(stderr);                                                     \
      std::abort();                                                            \
    }                                                                          \
  } while (0)
#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long ca_ = (long long)(a), cb_ = (long long)(b);                      \
    if (ca_ != cb_) {                                                          \
      std::fprintf(stderr, "FAIL %s:%d: %s == %s (%lld vs %lld)\n", __FILE__,  \
                   __LINE__, #a, #b, ca_, cb_);                                \
      std::fflush(stderr);                                                     \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

/* ------------------------------------------------ counting operator new */
/* Not under the sanitizers: their runtimes define operator new. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#endif
#ifndef SANITIZED
#define COUNT_NEWS 1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete" /* malloc/free pair   \
                                                          */
#endif
static std::atomic<long> g_news{0};
void *operator new(std::size_t n) {
  // Relaxed: a counter read by the thread that did the allocation.
  g_news.fetch_add(1, std::memory_order_relaxed);
  void *p = std::malloc(n ? n : 1);
  if (!p)
    std::abort();
  return p;
}
void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  // Relaxed: as above.
  g_news.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { std::free(p); }

static long news() { return g_news.load(std::memory_order_relaxed); }
#define CHECK_NEWS(before, n) CHECK_EQ(news() - (before), n)
#else
static long news() { return 0; }
#define CHECK_NEWS(before, n) (void)(before)
#endif

static void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

/* Wait (draining the calling thread's mailbox) until pred() holds. */
template <class P> static void drain_until(P pred) {
  for (int i = 0; !pred(); i++) {
    CHECK(i < 10000);
    mbx_wait(1);
  }
}

/* Records the thread its destructor ran on. */
struct witness {
  std::atomic<std::thread::id> *where;
  explicit witness(std::atomic<std::thread::id> *w) : where(w) {}
  witness(witness &&o) noexcept : where(std::exchange(o.where, nullptr)) {}
  ~witness() {
    if (where)
      where->store(std::this_thread::get_id());
  }
};

/* A thread with its automatic mailbox (pthread_create, interposed: natively
 * std::thread is created inside libstdc++.so, which --wrap does not reach)
 * that does not serve it until released, then returns: whatever is queued
 * is canceled on it as it exits. */
struct doomed {
  std::atomic<bool> release{false};
  std::atomic<std::thread::id> id{};
  pthread_t thread;
  mbx_handle handle;
  static void *body(void *p) {
    doomed *self = static_cast<doomed *>(p);
    self->id = std::this_thread::get_id();
    while (!self->release.load())
      sleep_ms(1);
    return nullptr;
  }
  doomed() {
    CHECK_EQ(pthread_create(&thread, nullptr, body, this), 0);
    handle = mbx_thread_handle(thread);
    CHECK(!mbx_handle_is_null(handle));
    while (id.load() == std::thread::id())
      sleep_ms(1);
  }
  uint64_t pending() const {
    mbx_stats s;
    CHECK_EQ(mbx_stats_get(handle, &s), MBX_OK);
    return s.pending;
  }
  void exit() {
    release.store(true);
    CHECK_EQ(pthread_join(thread, nullptr), 0);
  }
};

/* ------------------------------------------------------------ the checks */

static void test_errors() {
  std::error_code ec = mbx::make_error_code(MBX_ECLOSED);
  CHECK(ec);
  CHECK(std::strcmp(ec.category().name(), "mbx") == 0);
  CHECK(ec.message() == mbx_strerror(MBX_ECLOSED));
  CHECK(!mbx::make_error_code(MBX_OK));
  mbx::error e(MBX_EFULL);
  CHECK_EQ(e.value(), MBX_EFULL);
  CHECK(std::string(e.what()).find(mbx_strerror(MBX_EFULL)) !=
        std::string::npos);
  mbx::result<int> bad = mbx::result<int>::failure(MBX_ESTALE);
  CHECK(!bad);
  CHECK_EQ(bad.code(), MBX_ESTALE);
  CHECK(bad.error() == mbx::make_error_code(MBX_ESTALE));
  CHECK_EQ(std::move(bad).value_or(-1), -1);
#if CAN_CATCH
  bool thrown = false;
  try {
    (void)mbx::result<int>::failure(MBX_ECLOSED).value();
  } catch (const mbx::error &err) {
    thrown = err.value() == MBX_ECLOSED;
  }
  CHECK(thrown);
#endif
}

static void test_post(mbx::worker &w) {
  // A small trivially copyable callable rides in the message: no new.
  std::atomic<int> sum{0};
  std::atomic<int> *sp = &sum;
  long before = news();
  CHECK(mbx::post(w.handle(), [sp] { sp->fetch_add(1); }));
  CHECK_NEWS(before, 0);
  // Larger ones: exactly one.
  char big[64] = {1};
  before = news();
  CHECK(mbx::post(w.handle(), [sp, big] { sp->fetch_add(big[0]); }));
  CHECK_NEWS(before, 1);
  // Move-only, with and without on_cancel.
  auto p = std::make_unique<int>(10);
  CHECK(mbx::post(w.handle(), [sp, p = std::move(p)] { sp->fetch_add(*p); }));
  auto q = std::make_unique<int>(100);
  CHECK(mbx::post(
      w.handle(), [sp, q = std::move(q)]() mutable { sp->fetch_add(*q); },
      [](int) { CHECK(!"not canceled"); }));
  // One-shot callables invoked as rvalues.
  struct once {
    std::atomic<int> *s;
    void operator()() && { s->fetch_add(1000); }
  };
  CHECK(mbx::post(w.handle(), once{sp}));
  CHECK(w.call([] {}));
  CHECK_EQ(sum.load(), 1112);
  // Refused: the callable is destroyed here, not run.
  std::atomic<std::thread::id> where{};
  auto r = mbx::post(mbx_handle{}, [wt = witness(&where)] {});
  CHECK_EQ(r.code(), MBX_EINVAL);
  CHECK(where.load() == std::this_thread::get_id());
}

static void test_call(mbx::worker &w) {
  auto v = mbx::call(w.handle(), [] { return 42; });
  CHECK(v && *v == 42);
  auto s = w.call([] { return std::string(100, 'x'); });
  CHECK(s->size() == 100);
  // void, runs on the worker.
  std::thread::id ran_on;
  auto r = mbx::call(w.handle(), [&] { ran_on = std::this_thread::get_id(); });
  static_assert(std::is_same_v<decltype(r), mbx::result<void>>);
  CHECK(r && ran_on == w.get_id());
  // Move-only callable returning a move-only value; no allocation by the
  // wrapper (the C layer caches its call record).
  (void)mbx::call(w.handle(), [] { return 0; });
  long before = news();
  auto u = mbx::call(w.handle(),
                     [p = std::unique_ptr<int>()]() mutable { return 7; });
  CHECK_NEWS(before, 0);
  CHECK(*u == 7);
  auto m = mbx::call(w.handle(), [] { return std::make_unique<int>(5); });
  CHECK(**m == 5);
  // A returned reference comes back as a copy made on the target.
  static std::string shared = "on the target";
  auto c =
      mbx::call(w.handle(), []() -> const std::string & { return shared; });
  static_assert(std::is_same_v<decltype(c), mbx::result<std::string>>);
  CHECK(*c == shared);
  // An lvalue callable is used in place.
  int calls = 0;
  auto counter = [&calls] { return ++calls; };
  CHECK(*mbx::call(w.handle(), counter) == 1);
  CHECK(*mbx::call(w.handle(), counter) == 2);
  // Timed.
  auto t = mbx::call_for(w.handle(), std::chrono::seconds(5), [] { return 3; });
  CHECK(*t == 3);
  // Refusals.
  CHECK_EQ(mbx::call(mbx::self(), [] { return 1; }).code(), MBX_EDEADLK);
  CHECK_EQ(mbx::call(mbx_handle{}, [] {}).code(), MBX_EINVAL);
  // Timed out before starting: never runs.
  std::atomic<bool> gate{false}, ran{false};
  CHECK(w.post([&gate] {
    while (!gate.load())
      sleep_ms(1);
  }));
  auto late = mbx::call_for(w.handle(), std::chrono::milliseconds(20),
                            [&ran] { ran = true; });
  CHECK_EQ(late.code(), MBX_ETIMEDOUT);
  gate = true;
  CHECK(w.call([] {}));
  CHECK(!ran.load());
}

static void test_async(mbx::worker &w) {
  auto f = mbx::async(w.handle(), [] { return 6 * 7; });
  CHECK(f);
  CHECK_EQ(f->get(), 42);
  std::atomic<int> n{0};
  auto v = w.async([&n] { n = 1; });
  static_assert(std::is_same_v<decltype(v), mbx::result<std::future<void>>>);
  v->get();
  CHECK_EQ(n.load(), 1);
  auto mo = mbx::async(
      w.handle(), [p = std::make_unique<int>(9)] { return std::move(*p) + 1; });
  CHECK_EQ(mo->get(), 10);
  CHECK_EQ(mbx::async(mbx_handle{}, [] { return 1; }).code(), MBX_EINVAL);
}

static void test_callback(mbx::worker &w) {
  std::thread::id done_on, f_on;
  int got = 0;
  bool finished = false;
  auto r = mbx::callback(
      w.handle(),
      [&f_on, p = std::make_unique<int>(20)] {
        f_on = std::this_thread::get_id();
        return *p + 1;
      },
      [&](int value) {
        got = value;
        done_on = std::this_thread::get_id();
        finished = true;
      },
      [](int) { CHECK(!"not canceled"); });
  CHECK(r);
  drain_until([&] { return finished; });
  CHECK_EQ(got, 21);
  CHECK(f_on == w.get_id());
  CHECK(done_on == std::this_thread::get_id());
  // void, and to the calling thread itself.
  finished = false;
  CHECK(mbx::callback(
      mbx::self(), [] {}, [&] { finished = true; },
      [](int) { CHECK(!"not canceled"); }));
  drain_until([&] { return finished; });
}

/* A callback's caller exits before its outcome arrives: neither handler
 * runs; f runs only if it had started (the caller's exit abandons it
 * otherwise, and waits for it if it is running), and the caller frees the
 * block at its end (ASan's leak check would see a leak). */
struct orphan_args {
  mbx_handle target;
  std::atomic<bool> *f_ran;
  std::atomic<std::thread::id> *f_captures, *block;
  std::atomic<std::thread::id> caller{};
  bool wait_for_f;
};
static void *orphan_caller(void *p) {
  orphan_args *a = static_cast<orphan_args *>(p);
  a->caller = std::this_thread::get_id();
  std::atomic<bool> *ran = a->f_ran;
  CHECK(mbx::callback(
      a->target,
      [ran, wf = witness(a->f_captures)] {
        ran->store(true);
        return 1;
      },
      [wd = witness(a->block)](int) { CHECK(!"caller gone"); },
      [](int) { CHECK(!"caller gone"); }));
  if (a->wait_for_f)
    while (!ran->load())
      sleep_ms(1);
  return nullptr; // exits without draining
}

static void test_callback_caller_exits(mbx::worker &w) {
  for (int wait_for_f = 0; wait_for_f < 2; wait_for_f++) {
    std::atomic<bool> gate{wait_for_f != 0}, f_ran{false};
    std::atomic<std::thread::id> f_captures{}, block{};
    CHECK(w.post([&gate] {
      while (!gate.load())
        sleep_ms(1);
    }));
    mbx_proxy_stats before, after;
    mbx_proxy_stats_get(&before);
    orphan_args a{w.handle(), &f_ran, &f_captures, &block, {}, wait_for_f != 0};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, nullptr, orphan_caller, &a), 0);
    CHECK_EQ(pthread_join(t, nullptr), 0);
    gate = true;
    CHECK(w.call([] {}));
    for (int i = 0; block.load() == std::thread::id(); i++) {
      CHECK(i < 10000);
      sleep_ms(1);
    }
    mbx_proxy_stats_get(&after);
    if (wait_for_f) { /* f ran before the caller exited */
      CHECK(f_ran.load());
      CHECK(f_captures.load() == w.get_id());
      CHECK_EQ(after.callbacks_dropped - before.callbacks_dropped, 1);
    } else { /* f had not started: abandoned, destroyed on the caller */
      CHECK(!f_ran.load());
      CHECK(f_captures.load() == a.caller.load());
      CHECK_EQ(after.abandoned - before.abandoned, 1);
    }
    CHECK(block.load() == a.caller.load());
  }
}

/* The target exits with work queued. */
static void test_cancel_at_exit() {
  doomed d;
  std::thread::id dying = d.id.load();
  uint64_t queued = 0;
#if BROKEN_PROMISE_OK
  // 1. A captured std::promise: broken_promise; the captures die on the
  //    dying thread.
  std::promise<int> promise;
  std::future<int> future = promise.get_future();
  std::atomic<std::thread::id> where1{};
  CHECK(mbx::post(d.handle,
                  [pr = std::move(promise), wt = witness(&where1)]() mutable {
                    pr.set_value(1);
                  }));
  // 3. async: the future reports broken_promise.
  auto af = mbx::async(d.handle, [] { return 5; });
  CHECK(af);
  queued += 2;
#endif
  // 2. on_cancel on the dying thread, with the reason.
  std::atomic<int> reason{0};
  std::atomic<std::thread::id> cancel_on{}, where2{};
  CHECK(mbx::post(
      d.handle, [wt = witness(&where2)] { CHECK(!"never runs"); },
      [&](int why) {
        reason = why;
        cancel_on = std::this_thread::get_id();
      }));
  // 4. callback: on_cancel(MBX_ECANCELED) back on this thread.
  int cb_code = 0;
  CHECK(mbx::callback(
      d.handle, [] { return 1; }, [](int) { CHECK(!"not done"); },
      [&cb_code](int code) { cb_code = code; }));
  // 5. A blocked call: MBX_ECANCELED.
  int call_code = 0;
  std::thread caller(
      [&] { call_code = mbx::call(d.handle, [] { return 1; }).code(); });
  queued += 3;
  for (int i = 0; d.pending() < queued; i++) {
    CHECK(i < 10000);
    sleep_ms(1);
  }
  d.exit();
  caller.join();
  CHECK_EQ(call_code, MBX_ECANCELED);
  CHECK(where2.load() == dying);
  CHECK(cancel_on.load() == dying);
  CHECK_EQ(reason.load(), MBX_CANCEL_THREAD_EXIT);
#if BROKEN_PROMISE_OK
  CHECK(where1.load() == dying);
  CHECK(future.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  CHECK(af->wait_for(std::chrono::seconds(0)) == std::future_status::ready);
#endif
#if CAN_CATCH
  for (std::future<int> *fut : {&future, &*af}) {
    bool broken = false;
    try {
      fut->get();
    } catch (const std::future_error &e) {
      broken = e.code() == std::future_errc::broken_promise;
    }
    CHECK(broken);
  }
#endif
  drain_until([&] { return cb_code != 0; });
  CHECK_EQ(cb_code, MBX_ECANCELED);
  // Afterwards: refused, with the code; the callable destroyed here.
  std::atomic<std::thread::id> where3{};
  auto late = mbx::post(d.handle, [wt = witness(&where3)] {});
  CHECK(late.code() == MBX_ECLOSED || late.code() == MBX_ESTALE);
  CHECK(where3.load() == std::this_thread::get_id());
  CHECK(mbx::call(d.handle, [] {}).code() == late.code());
}

#if CAN_CATCH
static std::atomic<int> g_handled{0};
static std::atomic<std::thread::id> g_handled_on{};
static void record_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::runtime_error &err) {
    CHECK(std::strcmp(err.what(), "fire and forget") == 0);
  }
  g_handled_on = std::this_thread::get_id();
  g_handled.fetch_add(1);
}

static void test_exceptions(mbx::worker &w) {
  // call: rethrown on the caller, the mailbox keeps serving.
  bool caught = false;
  try {
    (void)mbx::call(w.handle(),
                    []() -> int { throw std::runtime_error("in call"); });
  } catch (const std::runtime_error &e) {
    caught = std::strcmp(e.what(), "in call") == 0;
  }
  CHECK(caught);
  caught = false;
  try {
    (void)mbx::call_for(w.handle(), std::chrono::seconds(5), [] { throw 17; });
  } catch (int v) {
    caught = v == 17;
  }
  CHECK(caught);
  // async: in the future.
  auto f = mbx::async(w.handle(), [] { throw std::logic_error("future"); });
  caught = false;
  try {
    f->get();
  } catch (const std::logic_error &) {
    caught = true;
  }
  CHECK(caught);
  // post: the handler, on the worker; the worker keeps serving.
  CHECK(mbx::set_exception_handler(record_exception) == nullptr);
  for (int i = 0; i < 3; i++)
    CHECK(mbx::post(w.handle(),
                    [] { throw std::runtime_error("fire and forget"); }));
  CHECK(*w.call([] { return 1; }) == 1);
  CHECK_EQ(g_handled.load(), 3);
  CHECK(g_handled_on.load() == w.get_id());
  // A throwing on_cancel: the handler, on the dying thread.
  {
    doomed d;
    CHECK(mbx::post(
        d.handle, [] {},
        [](int) { throw std::runtime_error("fire and forget"); }));
    d.exit();
    CHECK_EQ(g_handled.load(), 4);
  }
  // callback: f's exception goes to the handler on the caller.
  bool done = false;
  CHECK(mbx::callback(
      w.handle(), []() -> int { throw std::runtime_error("fire and forget"); },
      [&](int) { done = true; }, [](int) {}));
  drain_until([] { return g_handled.load() == 5; });
  CHECK(!done);
  CHECK(g_handled_on.load() == std::this_thread::get_id());
  CHECK(mbx::set_exception_handler(nullptr) == record_exception);
  CHECK(*w.call([] { return 2; }) == 2);
}

#if !defined(__EMSCRIPTEN__)
/* Without a handler the rule is std::terminate (checked in a child, before
 * this process starts any thread). */
static void test_terminate_rule() {
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    std::freopen("/dev/null", "w", stderr); // terminate's message
    CHECK(mbx::post(mbx::self(), [] { throw 1; }));
    mbx_poll();
    _exit(0); // not reached
  }
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* pthread_exit inside a called lambda unwinds through the wrapper: the
 * caller gets MBX_ECANCELED and the thread ends. */
static void test_forced_unwind() {
  pthread_t t;
  CHECK_EQ(pthread_create(
               &t, nullptr,
               [](void *) -> void * {
                 for (;;)
                   mbx_wait(-1);
               },
               nullptr),
           0);
  mbx_handle h = mbx_thread_handle(t);
  std::atomic<std::thread::id> where{};
  auto r = mbx::call(h, [wt = witness(&where)] { pthread_exit(nullptr); });
  CHECK_EQ(r.code(), MBX_ECANCELED);
  CHECK_EQ(pthread_join(t, nullptr), 0);
}
#endif
#endif /* CAN_CATCH */

static void test_worker() {
  std::atomic<int> ran{0}, canceled{0}, late_ran{0};
  std::thread::id id;
  mbx_handle h;
  {
    mbx::worker w;
    h = w.handle();
    id = w.get_id();
    CHECK(!mbx_handle_is_null(h));
    for (int i = 0; i < 100; i++)
      CHECK(w.post([&ran] { ran.fetch_add(1); }));
    w.request_stop();
    // After the stop request: run (if the drain that ran the stop message
    // reaches it) or canceled on the worker as it exits, exactly once; or
    // refused if the worker has exited already.
    auto late = mbx::post(
        h, [&late_ran] { late_ran.fetch_add(1); },
        [&canceled, id](int reason) {
          CHECK(std::this_thread::get_id() == id);
          CHECK_EQ(reason, MBX_CANCEL_THREAD_EXIT);
          canceled.fetch_add(1);
        });
    CHECK(late || late.code() == MBX_ECLOSED || late.code() == MBX_ESTALE);
    w.join();
    CHECK(!w.joinable());
  }
  CHECK_EQ(ran.load(), 100); // everything sent before the stop ran
  CHECK(canceled.load() + late_ran.load() <= 1);
  auto r = mbx::post(h, [] {});
  CHECK(r.code() == MBX_ECLOSED || r.code() == MBX_ESTALE);
  // Movable: a pool; each worker its own thread.
  std::vector<mbx::worker> pool(3);
  pool.emplace_back();
  std::vector<std::thread::id> ids;
  for (auto &w : pool)
    ids.push_back(*w.call([] { return std::this_thread::get_id(); }));
  for (size_t i = 0; i < ids.size(); i++) {
    CHECK(ids[i] == pool[i].get_id());
    for (size_t j = 0; j < i; j++)
      CHECK(ids[i] != ids[j]);
  }
  mbx::worker moved = std::move(pool[0]);
  CHECK(*moved.call([] { return 1; }) == 1);
}

static void test_hold() {
  mbx_handle h;
  mbx::hold kept;
  {
    mbx::worker w;
    h = w.handle();
    mbx::hold first(h);
    CHECK(first);
    kept = std::move(first);
    CHECK(!first);
    CHECK(kept && mbx_handle_equal(kept.handle(), h));
  }
  // Held: the record is not recycled, so sends keep getting MBX_ECLOSED.
  for (int i = 0; i < 100; i++) {
    mbx::worker churn; // exited threads' records go to quarantine
  }
  CHECK_EQ(mbx::post(h, [] {}).code(), MBX_ECLOSED);
  mbx::hold late(h);
  CHECK_EQ(late.code(), MBX_ECLOSED);
  kept.reset();
  CHECK(!kept);
}

/* A thread created without the interposition: the guard gives it a mailbox
 * for its lifetime. */
extern "C" int __real_pthread_create(pthread_t *, const pthread_attr_t *,
                                     void *(*)(void *), void *);
static std::atomic<int> g_guard_phase{0};
static std::atomic<uint64_t> g_guard_handle{0};
static std::atomic<int> g_guard_ran{0}, g_guard_canceled{0};

static void *bare_thread(void *) {
  /* Natively the library also defines pthread_create itself (for shared
   * libraries' threads), so even __real_pthread_create gives a mailbox:
   * give it up first. */
  if (!mbx_handle_is_null(mbx::self()))
    CHECK(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT) >= 0);
  CHECK(mbx_handle_is_null(mbx::self()));
  {
    mbx::thread_mailbox own;
    CHECK(own);
    CHECK(mbx_handle_equal(own.handle(), mbx::self()));
    mbx::thread_mailbox again; // already has one: does nothing
    CHECK_EQ(again.code(), MBX_EINVAL);
    g_guard_handle = own.handle().bits;
    drain_until([] { return g_guard_ran.load() == 1; });
    g_guard_phase = 1;
    while (g_guard_phase.load() != 2)
      sleep_ms(1);
  } // queued work canceled here, on this thread
  CHECK(mbx_handle_is_null(mbx::self()));
  return nullptr;
}

static void test_thread_mailbox() {
  mbx::thread_mailbox on_main; // main has its mailbox already
  CHECK_EQ(on_main.code(), MBX_EINVAL);
  CHECK(mbx_handle_equal(on_main.handle(), mbx::self()));
  pthread_t t;
  CHECK_EQ(__real_pthread_create(&t, nullptr, bare_thread, nullptr), 0);
  while (g_guard_handle.load() == 0)
    sleep_ms(1);
  mbx_handle h{g_guard_handle.load()};
  CHECK(mbx::post(h, [] { g_guard_ran = 1; }));
  while (g_guard_phase.load() != 1)
    sleep_ms(1);
  CHECK(mbx::post(
      h, [] {},
      [](int reason) {
        CHECK_EQ(reason, MBX_CANCEL_THREAD_EXIT);
        g_guard_canceled = 1;
      }));
  g_guard_phase = 2;
  CHECK_EQ(pthread_join(t, nullptr), 0);
  CHECK_EQ(g_guard_canceled.load(), 1);
  CHECK_EQ(mbx::post(h, [] {}).code() < 0, 1);
}

/* mbx::queue: a queue of one's own, drained only by poll/wait, a target
 * for post and call, closed (canceling) by its destructor. */
static void test_queue() {
  std::atomic<int> ran{0};
  std::atomic<int> canceled_reason{0};
  auto tracked = std::make_shared<int>(0);
  {
    mbx::queue q;
    CHECK_EQ(q.code(), MBX_OK);
    CHECK(!mbx_handle_equal(q.handle(), mbx::self()));
    CHECK(mbx::post(q.handle(), [&ran] { ran++; }));
    CHECK(mbx_poll() >= 0); // the automatic mailbox does not run it
    CHECK_EQ(ran.load(), 0);
    CHECK_EQ(q.poll(), 1);
    CHECK_EQ(ran.load(), 1);
    CHECK_EQ(q.wait(std::chrono::milliseconds(5)), MBX_ETIMEDOUT);
    // From the owner, a call would wait for itself.
    CHECK_EQ(mbx::call(q.handle(), [] { return 1; }).code(), MBX_EDEADLK);
    // Another thread calls into it; the owner drains at its own point.
    std::atomic<int> value{0};
    std::thread caller([&value, h = q.handle()] {
      value = mbx::call(h, [] { return 42; }).value_or(-1);
    });
    while (value.load() == 0)
      q.wait(std::chrono::milliseconds(10));
    caller.join();
    CHECK_EQ(value.load(), 42);
    // Move-only, with an on-cancel: canceled by the destructor, here.
    std::thread::id main_id = std::this_thread::get_id();
    CHECK(mbx::post(
        q.handle(), [p = std::make_unique<int>(1), t = tracked] {},
        [&canceled_reason, main_id](int reason) {
          CHECK(std::this_thread::get_id() == main_id);
          canceled_reason = reason;
        }));
    CHECK_EQ(tracked.use_count(), 2);
    mbx::queue moved = std::move(q);
    CHECK_EQ(q.poll(), MBX_EPERM); // moved from: owns nothing
  }
  CHECK_EQ(canceled_reason.load(), MBX_CANCEL_QUEUE_CLOSED);
  CHECK_EQ(tracked.use_count(), 1); // captures destroyed
  mbx::queue q2;
  mbx_handle h = q2.handle();
  CHECK_EQ(q2.close(), 0);
  CHECK_EQ(mbx::post(h, [] {}).code(), MBX_ECLOSED);
}

/* broadcast: one shared callable (move-only captures allowed) runs once on
 * every thread with a mailbox, is destroyed before broadcast returns when
 * all answered, and after a timeout stays alive until the late target ran
 * it, then is destroyed there. */
static void test_broadcast() {
  std::vector<mbx::worker> pool(3);
  auto token = std::make_shared<int>(7);
  std::atomic<int> runs{0}, on_workers{0};
  std::thread::id ids[3] = {pool[0].get_id(), pool[1].get_id(),
                            pool[2].get_id()};
  auto r = mbx::broadcast(
      [token, owned = std::make_unique<int>(1), &runs, &on_workers, &ids] {
        CHECK_EQ(*owned, 1);
        runs.fetch_add(1);
        for (auto &id : ids)
          if (id == std::this_thread::get_id())
            on_workers.fetch_add(1);
      },
      10000);
  CHECK(r);
  CHECK_EQ(r->late, 0);
  CHECK_EQ(r->done, runs.load());
  CHECK(r->done >= 4); // the three workers and this thread, at least
  CHECK_EQ(on_workers.load(), 3);
  CHECK_EQ(token.use_count(), 1); // destroyed before broadcast returned

  // A worker stuck in a handler answers late: the callable outlives the
  // call and is destroyed once that worker ran it.
  std::atomic<int> gate{0}, late_runs{0};
  CHECK(pool[1].post([&gate] {
    while (!gate.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }));
  mbx_broadcast_report report{};
  auto t = mbx::broadcast_for(
      std::chrono::milliseconds(50), [token, &late_runs] { late_runs++; }, 0,
      &report);
  CHECK_EQ(t.code(), MBX_ETIMEDOUT);
  CHECK(report.late >= 1);
  CHECK_EQ(token.use_count(), 2); // kept for the late target
  gate = 1;
  for (int i = 0; i < 5000 && token.use_count() != 1; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK_EQ(token.use_count(), 1); // destroyed after the late run
  CHECK_EQ(late_runs.load(), (int)report.done + 1);

  // Refused before anything ran: destroyed here.
  auto bad = mbx::broadcast([token] {}, -1, 0x100);
  CHECK_EQ(bad.code(), MBX_EINVAL);
  CHECK_EQ(token.use_count(), 1);
}

int main() {
#if CAN_CATCH && !defined(__EMSCRIPTEN__)
  test_terminate_rule();
#endif
  test_errors();
  {
    mbx::worker w;
    test_post(w);
    test_call(w);
    test_async(w);
    test_callback(w);
    test_callback_caller_exits(w);
#if CAN_CATCH
    test_exceptions(w);
#endif
  }
  test_cancel_at_exit();
#if CAN_CATCH && !defined(__EMSCRIPTEN__)
  test_forced_unwind();
#endif
  test_worker();
  test_hold();
  test_thread_mailbox();
  test_queue();
  test_broadcast();

  mbx_stats g;
  mbx_stats_global(&g);
  // sent is derived (<mbx/mailbox.h>): a message still pending now, with
  // every thread done, went missing.
  CHECK_EQ(g.pending, 0u);
  CHECK_EQ(g.abandoned, 0u);
  mbx_proxy_stats ps;
  mbx_proxy_stats_get(&ps);
  std::printf("PASS cpp_api (%s): %llu sent, %llu run, %llu canceled, "
              "%llu dropped; calls %llu done %llu canceled\n",
              CAN_CATCH ? "exceptions caught" : "no exception checks",
              (unsigned long long)g.sent, (unsigned long long)g.run,
              (unsigned long long)g.canceled, (unsigned long long)g.dropped,
              (unsigned long long)ps.sync_done,
              (unsigned long long)ps.sync_canceled);
  return 0;
}
