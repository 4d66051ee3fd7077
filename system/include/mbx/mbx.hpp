/*
 * <mbx/mbx.hpp>: the C++17 front door to mbx, header-only, over the public C
 * API of <mbx/mailbox.h>, <mbx/proxy.h>, <mbx/queue.h>, <mbx/broadcast.h>
 * and <mbx/thread.h>.
 * docs/cpp.md is the user's guide.
 *
 *   mbx::post(to, f [, on_cancel])      queue any callable, return at once
 *   mbx::call(to, f)                    run f there, wait, get its value
 *   mbx::call_for(to, timeout, f)       ... giving up before f starts
 *   mbx::async(to, f)                   run f there, get a std::future
 *   mbx::callback(to, f, done, cancel)  run f there, done(value) back here
 *   mbx::broadcast(f [, timeout])       run f on every thread (and on threads
 *                                       started meanwhile), wait for them
 *   mbx::hold, mbx::thread_mailbox      RAII for holds and owned mailboxes
 *   mbx::queue                          a queue of one's own (<mbx/queue.h>)
 *   mbx::worker                         a std::thread serving its mailbox
 *
 * Errors. Refusals and cancellations are values, never exceptions:
 * mbx::result<T> holds a T or a negative MBX_E* code (code(), error() as a
 * std::error_code of mbx::mbx_category(), message mbx_strerror). value() on
 * an error throws mbx::error (a std::system_error carrying the code), or
 * aborts when the program is built without exceptions. Everything here
 * compiles with -fno-exceptions.
 *
 * Exceptions thrown by user code never cross into the C library (a
 * mailbox is never left half-drained): every function the C library calls
 * catches at its boundary.
 * - call, call_for: the exception is rethrown on the caller.
 * - async: it is stored in the future (get() rethrows it).
 * - post (f or on_cancel), callback (done, cancel, or f itself): nobody waits
 *   for the outcome, so the exception goes to the handler installed with
 *   mbx::set_exception_handler(), called on the thread where it was thrown
 *   (for callback's f: rethrown on the caller, just before done would run);
 *   with no handler, std::terminate() (std::thread's rule). After the
 *   handler returns the mailbox keeps serving.
 * - Native glibc: pthread_exit and pthread_cancel inside a callable unwind
 *   through the wrapper untouched (abi::__forced_unwind is rethrown), so the
 *   proxy layer's exit rules apply (callers get MBX_ECANCELED).
 * - Emscripten without -fexceptions (its default): catching is disabled
 *   and any throw aborts the program; build with -fexceptions (compile and
 *   link) to get the rules above.
 *
 * Storage. A callable with no on-cancel, trivially copyable and at most
 * sizeof(void *) bytes (mbx::inline_capacity: a lambda capturing one pointer
 * or int, or nothing) travels inside the message's argument word: no
 * allocation beyond the C send's own. Any other callable, move-only ones
 * included (never std::function), is moved into one heap block (operator
 * new), freed after it ran or was canceled. call and call_for allocate
 * nothing: the callable and its result stay in the caller's frame (the
 * C layer guarantees fn has returned, or never runs, when the call returns).
 *
 * Cancellation. If the target exits before running f, f is destroyed on the
 * dying thread (its captures' destructors run there), after on_cancel(reason)
 * if one was given (reason: MBX_CANCEL_*; for a killed Emscripten worker,
 * MBX_CANCEL_ABNORMAL_EXIT, both run on the main thread instead). So a
 * std::promise captured by f gives its future broken_promise, as async's future
 * does (in builds that can catch exceptions; see async for the others).
 *
 */
#ifndef MBX_MBX_HPP
#define MBX_MBX_HPP

#include <mbx/broadcast.h>
#include <mbx/mailbox.h>
#include <mbx/proxy.h>
#include <mbx/queue.h>
#include <mbx/thread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define MBX_HPP_EXCEPTIONS 1
#if defined(__GLIBCXX__) && !defined(__EMSCRIPTEN__)
#include <cxxabi.h> /* abi::__forced_unwind (pthread_exit, pthread_cancel) */
#define MBX_HPP_FORCED_UNWIND 1
#endif
#else
#define MBX_HPP_EXCEPTIONS 0
#endif

namespace mbx {

/* ------------------------------------------------------------------ errors */

namespace detail {
class category_impl final : public std::error_category {
public:
  const char *name() const noexcept override { return "mbx"; }
  std::string message(int code) const override { return mbx_strerror(code); }
};
} // namespace detail

/* The category of MBX_E* codes (message: mbx_strerror). */
inline const std::error_category &mbx_category() noexcept {
  static const detail::category_impl category;
  return category;
}

/* An MBX_E* code as a std::error_code (MBX_OK gives an empty one). */
inline std::error_code make_error_code(int code) noexcept {
  return code == MBX_OK ? std::error_code()
                        : std::error_code(code, mbx_category());
}

/* What result::value() throws: the MBX_E* code and its mbx_strerror text. */
class error : public std::system_error {
public:
  explicit error(int code) : std::system_error(code, mbx_category()) {}
  /* The MBX_E* code. */
  int value() const noexcept { return code().value(); }
};

namespace detail {
[[noreturn]] inline void fail(int code) {
#if MBX_HPP_EXCEPTIONS
  throw error(code);
#else
  std::fprintf(stderr, "mbx: value() of a result holding %s\n",
               mbx_strerror(code));
  std::abort();
#endif
}
} // namespace detail

/* A T or a negative MBX_E* code; like std::expected<T, int>. */
template <class T> class [[nodiscard]] result {
  static_assert(!std::is_reference_v<T>, "result<T&> is not supported");

public:
  result(T value) : code_(MBX_OK), value_(std::move(value)) {}
  /* An error (code < 0). */
  static result failure(int code) { return result(code, 0); }

  bool has_value() const noexcept { return code_ == MBX_OK; }
  explicit operator bool() const noexcept { return has_value(); }
  /* MBX_OK, or the MBX_E* code. */
  int code() const noexcept { return code_; }
  std::error_code error() const noexcept { return make_error_code(code_); }

  /* The value; on an error throws mbx::error (aborts without exceptions). */
  T &value() & { return check(), *value_; }
  const T &value() const & { return check(), *value_; }
  T &&value() && { return check(), std::move(*value_); }
  T &operator*() & { return value(); }
  T &&operator*() && { return std::move(*this).value(); }
  T *operator->() { return &value(); }
  template <class U> T value_or(U &&fallback) && {
    return has_value() ? std::move(*value_)
                       : static_cast<T>(std::forward<U>(fallback));
  }

private:
  result(int code, int) : code_(code) {}
  void check() const {
    if (code_ != MBX_OK)
      detail::fail(code_);
  }
  int code_;
  std::optional<T> value_;
};

template <> class [[nodiscard]] result<void> {
public:
  result() noexcept : code_(MBX_OK) {}
  static result failure(int code) noexcept { return result(code); }
  /* MBX_OK or an error code, as a C function returns it. */
  static result from_code(int code) noexcept { return result(code); }

  bool has_value() const noexcept { return code_ == MBX_OK; }
  explicit operator bool() const noexcept { return has_value(); }
  int code() const noexcept { return code_; }
  std::error_code error() const noexcept { return make_error_code(code_); }
  /* Throws mbx::error on an error (aborts without exceptions). */
  void value() const {
    if (code_ != MBX_OK)
      detail::fail(code_);
  }

private:
  explicit result(int code) noexcept : code_(code) {}
  int code_;
};

/* ---------------------------------------------- exceptions nobody awaits */

/* Called with an exception that escaped a post()ed callable, an on_cancel,
 * or a callback's handlers, on the thread where it escaped. It may log,
 * count, or rethrow into its own try; if it lets an exception out,
 * std::terminate(). */
using exception_handler = void (*)(std::exception_ptr);

namespace detail {
// Acquire/release: the handler's own data is published with it.
inline std::atomic<exception_handler> g_exception_handler{nullptr};

/* Inside a catch block only. */
inline void unhandled() noexcept {
  // Acquire: pairs with set_exception_handler's release.
  exception_handler h = g_exception_handler.load(std::memory_order_acquire);
  if (!h)
    std::terminate();
#if MBX_HPP_EXCEPTIONS
  h(std::current_exception());
#endif
}

/* Runs body(); an exception escaping it goes to on_exception() (called in
 * the catch block, so std::current_exception() works). Forced unwinding
 * (glibc pthread_exit/pthread_cancel) passes through. Never declared
 * noexcept for that reason. */
template <class Body, class OnException>
inline void guarded(Body &&body, OnException &&on_exception) {
#if MBX_HPP_EXCEPTIONS
  try {
    body();
  }
#if MBX_HPP_FORCED_UNWIND
  catch (abi::__forced_unwind &) {
    throw;
  }
#endif
  catch (...) {
    on_exception();
  }
#else
  (void)on_exception;
  body();
#endif
}
} // namespace detail

/* Install the handler for exceptions nobody awaits (nullptr: the default,
 * std::terminate). Any thread. Returns the previous handler. */
inline exception_handler set_exception_handler(exception_handler h) noexcept {
  // Acq_rel: publish h's data, and see the previous handler's.
  return detail::g_exception_handler.exchange(h, std::memory_order_acq_rel);
}

/* ----------------------------------------------------------------- storage */

/* Bytes a callable may have and still travel in the message itself. */
inline constexpr std::size_t inline_capacity = sizeof(void *);

namespace detail {
template <class T>
inline constexpr bool fits_inline =
    sizeof(T) <= sizeof(void *) &&
    alignof(T) <= alignof(void *) && std::is_trivially_copyable_v<T>;

/* A trivially copyable T carried in the argument word. */
template <class T> inline void *pack(const T &value) noexcept {
  void *word = nullptr;
  std::memcpy(&word, &value, sizeof(T));
  return word;
}
template <class T> struct unpacked {
  alignas(T) unsigned char bytes[sizeof(T)];
  explicit unpacked(void *word) noexcept {
    std::memcpy(bytes, &word, sizeof(T));
  }
  T &get() noexcept { return *std::launder(reinterpret_cast<T *>(bytes)); }
};

template <class R> using value_t = std::remove_cv_t<std::remove_reference_t<R>>;
} // namespace detail

/* ------------------------------------------------------------------- post */

namespace detail {
template <class F> struct post_box {
  F f;
  static void run_inline(void *arg) {
    unpacked<post_box> box(arg);
    guarded([&] { std::invoke(std::move(box.get().f)); }, unhandled);
  }
  static void run(void *arg) {
    std::unique_ptr<post_box> box(static_cast<post_box *>(arg));
    guarded([&] { std::invoke(std::move(box->f)); }, unhandled);
  }
  /* Destroys f on the dying thread. */
  static void cancel(void *arg, int) { delete static_cast<post_box *>(arg); }
};

template <class F, class C> struct post_cancel_box {
  F f;
  C on_cancel;
  static void run(void *arg) {
    std::unique_ptr<post_cancel_box> box(static_cast<post_cancel_box *>(arg));
    guarded([&] { std::invoke(std::move(box->f)); }, unhandled);
  }
  static void cancel(void *arg, int reason) {
    std::unique_ptr<post_cancel_box> box(static_cast<post_cancel_box *>(arg));
    guarded([&] { std::invoke(std::move(box->on_cancel), reason); }, unhandled);
  }
};

template <class Box, class... A>
inline int send_heap(mbx_handle to, A &&...parts) {
  Box *box = new (std::nothrow) Box{std::forward<A>(parts)...};
  if (!box)
    return MBX_ENOMEM;
  int rc = mbx_send(to, Box::run, Box::cancel, box);
  if (rc != MBX_OK)
    delete box; // nothing was called: still ours
  return rc;
}
} // namespace detail

/*
 * Queue f() on the mailbox `to` and return at once. Any thread, also the
 * target itself. f may be move-only; its result is discarded.
 * Returns MBX_OK (f will run on the target, or be canceled: destroyed on
 * the dying target), or, with f destroyed here without running: MBX_EINVAL,
 * MBX_ECLOSED, MBX_ESTALE, MBX_EFULL, MBX_ENOMEM (mbx_send's codes).
 */
template <class F> result<void> post(mbx_handle to, F &&f) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn &&>, "post: f() must be callable");
  using Box = detail::post_box<Fn>;
  if constexpr (detail::fits_inline<Box>) {
    Box box{std::forward<F>(f)};
    // No cancel function: nothing to destroy (counted as dropped).
    return result<void>::from_code(
        mbx_send(to, Box::run_inline, nullptr, detail::pack(box)));
  } else {
    return result<void>::from_code(
        detail::send_heap<Box>(to, std::forward<F>(f)));
  }
}

/*
 * post() with on_cancel(int reason): if the target exits before running f,
 * on_cancel(reason) runs on the dying thread (reason: MBX_CANCEL_*), then
 * both are destroyed there. Returns post()'s codes.
 */
template <class F, class C>
result<void> post(mbx_handle to, F &&f, C &&on_cancel) {
  using Fn = std::decay_t<F>;
  using Cn = std::decay_t<C>;
  static_assert(std::is_invocable_v<Fn &&>, "post: f() must be callable");
  static_assert(std::is_invocable_v<Cn &&, int>,
                "post: on_cancel(int reason) must be callable");
  return result<void>::from_code(
      detail::send_heap<detail::post_cancel_box<Fn, Cn>>(
          to, std::forward<F>(f), std::forward<C>(on_cancel)));
}

/* ------------------------------------------------------------------- call */

namespace detail {
/* The caller's frame of a call: the target reads f and writes the value
 * (or the exception) here. A void call writes nothing unless f throws, and
 * no std::exception_ptr is constructed until then: on wasm, constructing
 * and destroying an empty one per call cost a fifth of a round trip
 * (Emscripten 3.1.6: mbx::call 1.53 us against 1.27 us for mbx_proxy_sync;
 * issue 17). */
template <class F> struct call_frame {
  using R = std::invoke_result_t<F &&>;
  using V = value_t<R>;
  std::remove_reference_t<F> *f;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<V>> value{};
#if MBX_HPP_EXCEPTIONS
  bool threw = false; /* then `thrown` holds f's exception */
  alignas(std::exception_ptr) unsigned char thrown[sizeof(std::exception_ptr)];
  std::exception_ptr &exception() noexcept {
    return *std::launder(reinterpret_cast<std::exception_ptr *>(thrown));
  }
#endif
  explicit call_frame(std::remove_reference_t<F> *fn) noexcept : f(fn) {}
  call_frame(const call_frame &) = delete;
  call_frame &operator=(const call_frame &) = delete;
#if MBX_HPP_EXCEPTIONS
  ~call_frame() {
    if (threw)
      exception().~exception_ptr();
  }
#endif

  static void run(void *arg) {
    call_frame *self = static_cast<call_frame *>(arg);
    guarded(
        [&] {
          if constexpr (std::is_void_v<R>)
            std::invoke(static_cast<F &&>(*self->f));
          else
            self->value.emplace(std::invoke(static_cast<F &&>(*self->f)));
        },
        [&] {
#if MBX_HPP_EXCEPTIONS
          new (self->thrown) std::exception_ptr(std::current_exception());
          self->threw = true;
#endif
        });
  }

  result<std::conditional_t<std::is_void_v<R>, void, V>> finish(int rc) {
    if (rc != MBX_OK)
      return decltype(finish(rc))::failure(rc);
#if MBX_HPP_EXCEPTIONS
    if (threw)
      std::rethrow_exception(exception());
#endif
    if constexpr (std::is_void_v<R>)
      return {};
    else
      return std::move(*value);
  }
};

template <class F>
using call_result_t =
    result<std::conditional_t<std::is_void_v<std::invoke_result_t<F &&>>, void,
                              value_t<std::invoke_result_t<F &&>>>>;
} // namespace detail

/*
 * Run f() on `to` and wait until it has returned there; its value comes
 * back (a returned reference is copied on the target). f stays in the
 * caller's frame: no allocation. If f throws, the exception is rethrown
 * here. Threads and codes as mbx_proxy_sync: any thread except the target
 * (MBX_EDEADLK) and one that must not block (MBX_EWOULDBLOCK); while
 * waiting the caller serves its own mailbox. Errors: MBX_ECANCELED (the
 * target exited before f returned), or, f not run: MBX_EINVAL, MBX_ECLOSED,
 * MBX_ESTALE, MBX_EFULL, MBX_ENOMEM, MBX_EDEADLK, MBX_EWOULDBLOCK.
 */
template <class F> detail::call_result_t<F> call(mbx_handle to, F &&f) {
  detail::call_frame<F> frame(&f);
  return frame.finish(mbx_proxy_sync(to, detail::call_frame<F>::run, &frame));
}

/*
 * call() giving up after `timeout` if f has not started by then:
 * MBX_ETIMEDOUT means f has not run and never will (mbx_proxy_sync_timed).
 * Once f started, waits for it. A negative timeout waits forever.
 */
template <class Rep, class Period, class F>
detail::call_result_t<F>
call_for(mbx_handle to, std::chrono::duration<Rep, Period> timeout, F &&f) {
  detail::call_frame<F> frame(&f);
  double ms = std::chrono::duration<double, std::milli>(timeout).count();
  return frame.finish(mbx_proxy_sync_timed(to, detail::call_frame<F>::run,
                                           &frame, ms < 0 ? -1.0 : ms));
}

/* ------------------------------------------------------------------ async */

namespace detail {
template <class F> struct async_box {
  using R = value_t<std::invoke_result_t<F &&>>;
  std::promise<R> promise{};
  std::optional<F> f;
  template <class FA>
  explicit async_box(FA &&fn) : f(std::in_place, std::forward<FA>(fn)) {}

  static void run(void *arg) {
    std::unique_ptr<async_box> box(static_cast<async_box *>(arg));
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
    guarded(
        [&] {
          if constexpr (std::is_void_v<R>) {
            std::invoke(std::move(*box->f));
            value.emplace(true);
          } else {
            value.emplace(std::invoke(std::move(*box->f)));
          }
        },
        [&] {
#if MBX_HPP_EXCEPTIONS
          box->promise.set_exception(std::current_exception());
#endif
        });
    // f's captures die before the future becomes ready.
    box->f.reset();
    if (value) {
      if constexpr (std::is_void_v<R>)
        box->promise.set_value();
      else
        box->promise.set_value(std::move(*value));
    }
  }
  /* Destroying the unsatisfied promise gives the future broken_promise. */
  static void cancel(void *arg, int) { delete static_cast<async_box *>(arg); }
};
} // namespace detail

/*
 * Queue f() on `to`; the returned future gets its value, or the exception
 * f threw. If the target exits before f ran, f and the promise are
 * destroyed on the dying thread and the future reports
 * std::future_errc::broken_promise (its get() throws std::future_error).
 * Any thread, also the target itself (never wait on the future from the
 * target: it deadlocks). One allocation for the callable besides
 * std::promise's shared state.
 * Builds that cannot catch (-fno-exceptions, Emscripten without
 * -fexceptions): storing broken_promise makes an exception_ptr, which
 * libc++ does by throwing, so there a canceled async aborts the program
 * (libstdc++ natively does not throw: the future is ready, wait_for says
 * so, and get() must not be called). The same holds for any std::promise a
 * canceled post() destroys. Use call or callback in such builds.
 * Errors, f destroyed here without running: post()'s codes.
 */
template <class F>
result<std::future<detail::value_t<std::invoke_result_t<std::decay_t<F> &&>>>>
async(mbx_handle to, F &&f) {
  using Fn = std::decay_t<F>;
  using Box = detail::async_box<Fn>;
  using Future = std::future<typename Box::R>;
  Box *box = new (std::nothrow) Box(std::forward<F>(f));
  if (!box)
    return result<Future>::failure(MBX_ENOMEM);
  Future future = box->promise.get_future();
  int rc = mbx_send(to, Box::run, Box::cancel, box);
  if (rc != MBX_OK) {
    // The future goes first: a promise destroyed while its future lives
    // stores broken_promise, which throws internally (see above).
    future = Future();
    delete box;
    return result<Future>::failure(rc);
  }
  return future;
}

/* --------------------------------------------------------------- callback */

namespace detail {
/* mbx_proxy_callback drops the outcome (calls nothing) when the caller has
 * exited, so the caller's thread keeps a list of its outstanding blocks and
 * frees them when it ends: its mailbox's close abandoned every f that had
 * not started and waited for one that was running (<mbx/proxy.h>), so by
 * then no target touches a block any more. */
struct callback_node {
  // 1 once f finished on the target (the target is done with the block).
  std::atomic<int> state{0};
  callback_node *prev = nullptr, *next = nullptr; // caller's thread only
  virtual ~callback_node() = default;
};

struct callback_list {
  callback_node *head = nullptr;
  void add(callback_node *n) noexcept {
    n->next = head;
    if (head)
      head->prev = n;
    head = n;
  }
  void remove(callback_node *n) noexcept {
    (n->prev ? n->prev->next : head) = n->next;
    if (n->next)
      n->next->prev = n->prev;
  }
  /* At thread end. Only once the thread's mailbox is closed (as it is by
   * now on a thread the interposed pthread_create or a thread_mailbox
   * gave one): then no f, on_done or on_cancel can run any more. A thread
   * whose mailbox is still open (the main thread at exit) keeps its
   * blocks. */
  ~callback_list() {
    if (!mbx_handle_is_null(mbx_self()))
      return;
    while (head) {
      callback_node *n = head;
      remove(n);
      // Acquire: see the target's writes to a block whose f ran (the
      // close that waited for it ordered them before us already).
      (void)n->state.load(std::memory_order_acquire);
      delete n;
    }
  }
};
inline thread_local callback_list t_callbacks;

template <class F, class D, class C> struct callback_box : callback_node {
  using R = value_t<std::invoke_result_t<F &&>>;
  std::optional<F> f;
  D on_done;
  C on_cancel;
  std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value{};
#if MBX_HPP_EXCEPTIONS
  std::exception_ptr thrown{};
#endif
  template <class FA, class DA, class CA>
  callback_box(FA &&fn, DA &&done, CA &&cancel)
      : f(std::in_place, std::forward<FA>(fn)), on_done(std::forward<DA>(done)),
        on_cancel(std::forward<CA>(cancel)) {}

  /* On the target. */
  static void run(void *arg) {
    callback_box *box = static_cast<callback_box *>(arg);
    guarded(
        [&] {
          if constexpr (std::is_void_v<R>) {
            std::invoke(std::move(*box->f));
            box->value.emplace(true);
          } else {
            box->value.emplace(std::invoke(std::move(*box->f)));
          }
        },
        [&] {
#if MBX_HPP_EXCEPTIONS
          box->thrown = std::current_exception();
#endif
        });
    box->f.reset(); // its captures die on the target
    // Release: an exiting caller that frees the block sees our writes.
    box->state.store(1, std::memory_order_release);
  }
  /* On the caller. */
  static void done(void *arg) {
    std::unique_ptr<callback_box> box(static_cast<callback_box *>(arg));
    t_callbacks.remove(box.get());
    guarded(
        [&] {
#if MBX_HPP_EXCEPTIONS
          if (box->thrown)
            std::rethrow_exception(box->thrown);
#endif
          if constexpr (std::is_void_v<R>)
            std::invoke(std::move(box->on_done));
          else
            std::invoke(std::move(box->on_done), std::move(*box->value));
        },
        unhandled);
  }
  static void canceled(void *arg) {
    std::unique_ptr<callback_box> box(static_cast<callback_box *>(arg));
    t_callbacks.remove(box.get());
    guarded([&] { std::invoke(std::move(box->on_cancel), int(MBX_ECANCELED)); },
            unhandled);
  }
};
} // namespace detail

/*
 * Queue f() on `to`; later, on the calling thread, on_done(value) (on_done()
 * for a void f) runs, or on_cancel(MBX_ECANCELED) if the target exited
 * before f returned (f is then destroyed on the caller). They run when the
 * caller drains its mailbox (mbx_poll, mbx_wait, its JS event loop, or
 * while blocked in a call), like mbx_proxy_callback. An exception thrown
 * by f is rethrown on the caller in on_done's place and goes to the
 * exception handler (set_exception_handler). Any thread with a mailbox,
 * also the target itself. One allocation.
 * If the calling thread exits before the outcome reaches it, neither
 * handler runs (mbx_proxy_callback's rule: its exit abandons an f that has
 * not started, counted in mbx_proxy_stats.abandoned, and waits for one
 * that is running, whose outcome is dropped: callbacks_dropped), and the
 * caller frees the wrapper's block (f, on_done, on_cancel) at its end.
 * Limitation: a caller whose mailbox is still open when its thread-locals
 * are destroyed (the main thread during exit()) keeps its blocks.
 * Errors, nothing called and everything destroyed here: MBX_EPERM (no
 * mailbox on the calling thread), MBX_EINVAL, MBX_ECLOSED, MBX_ESTALE,
 * MBX_EFULL, MBX_ENOMEM.
 */
template <class F, class D, class C>
result<void> callback(mbx_handle to, F &&f, D &&on_done, C &&on_cancel) {
  using Fn = std::decay_t<F>;
  using Box = detail::callback_box<Fn, std::decay_t<D>, std::decay_t<C>>;
  Box *box = new (std::nothrow) Box(
      std::forward<F>(f), std::forward<D>(on_done), std::forward<C>(on_cancel));
  if (!box)
    return result<void>::failure(MBX_ENOMEM);
  // Listed first: the outcome runs on this thread, never before this returns.
  detail::t_callbacks.add(box);
  int rc = mbx_proxy_callback(to, Box::run, Box::done, Box::canceled, box);
  if (rc != MBX_OK) {
    detail::t_callbacks.remove(box);
    delete box;
  }
  return result<void>::from_code(rc);
}

/* -------------------------------------------------------------- broadcast */

namespace detail {
template <class F> struct broadcast_box {
  F f;
  static void run(void *arg) {
    const F &f = static_cast<const broadcast_box *>(arg)->f;
    guarded([&] { std::invoke(f); }, unhandled);
  }
  static void release(void *arg) { delete static_cast<broadcast_box *>(arg); }
};
} // namespace detail

/*
 * Run f() once on every live thread that has a mailbox, the calling thread
 * included (unless flags has MBX_BROADCAST_SKIP_SELF), and on every thread
 * started while the broadcast is registered (catch-up; with
 * MBX_BROADCAST_PERSIST until mbx_broadcast_retire(report.seq)); wait until
 * each ran it or exited, or timeout_ms passed (< 0: no limit), serving the
 * calling thread's mailbox meanwhile: mbx_broadcast_with_release's rules
 * (<mbx/broadcast.h>). One instance of f, moved into one heap block, is
 * shared by every thread: it is called as a const lvalue, possibly on
 * several threads at once, so it must be safe to call concurrently. It is
 * destroyed once it can no longer run anywhere: before broadcast returns
 * when every target answered, else later, on the thread that saw the last
 * of it (a late target right after its run; with MBX_BROADCAST_PERSIST,
 * after mbx_broadcast_retire(report.seq)). An exception escaping f goes
 * to the exception handler (set_exception_handler) on the thread where it
 * was thrown; the broadcast goes on.
 * Calling thread: one that may block (mbx_proxy_may_block), or any with
 * timeout_ms == 0. report (may be null) gets the C report whenever the C
 * call filled it (also with MBX_ETIMEDOUT and MBX_EAGAIN).
 * Returns the report, or MBX_ETIMEDOUT (f still runs on the late targets),
 * MBX_EAGAIN (some messages could not be queued), MBX_EINVAL (bad flags),
 * MBX_ENOMEM, MBX_EWOULDBLOCK (the last three: f never ran and was
 * destroyed here).
 */
template <class F>
result<mbx_broadcast_report> broadcast(F &&f, double timeout_ms = -1,
                                       int flags = 0,
                                       mbx_broadcast_report *report = nullptr) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<const Fn &>,
                "broadcast: f() must be callable as const");
  using Box = detail::broadcast_box<Fn>;
  Box *box = new (std::nothrow) Box{std::forward<F>(f)};
  if (!box)
    return result<mbx_broadcast_report>::failure(MBX_ENOMEM);
  mbx_broadcast_report r{};
  int rc = mbx_broadcast_with_release(Box::run, box, Box::release, flags,
                                      timeout_ms, &r, nullptr, 0);
  if (rc == MBX_EINVAL || rc == MBX_ENOMEM || rc == MBX_EWOULDBLOCK) {
    delete box; // nothing ran, release will not be called: still ours
    return result<mbx_broadcast_report>::failure(rc);
  }
  if (report)
    *report = r;
  if (rc != MBX_OK)
    return result<mbx_broadcast_report>::failure(rc);
  return r;
}

/* broadcast() with a std::chrono timeout. */
template <class Rep, class Period, class F>
result<mbx_broadcast_report>
broadcast_for(std::chrono::duration<Rep, Period> timeout, F &&f, int flags = 0,
              mbx_broadcast_report *report = nullptr) {
  double ms = std::chrono::duration<double, std::milli>(timeout).count();
  return broadcast(std::forward<F>(f), ms < 0 ? 0 : ms, flags, report);
}

/* ------------------------------------------------------------------- RAII */

/*
 * One mbx_hold() on a record, released on destruction: while it lives,
 * sends through the handle get MBX_ECLOSED after the thread exits, never
 * MBX_ESTALE. Any thread. code(): MBX_OK, or mbx_hold's error (MBX_ECLOSED,
 * MBX_ESTALE, MBX_EINVAL, MBX_EAGAIN), and then nothing is held.
 */
class hold {
public:
  hold() noexcept = default;
  explicit hold(mbx_handle h) noexcept : handle_(h), code_(mbx_hold(h)) {}
  hold(hold &&other) noexcept
      : handle_(other.handle_), code_(std::exchange(other.code_, MBX_EINVAL)) {}
  hold &operator=(hold &&other) noexcept {
    if (this != &other) {
      reset();
      handle_ = other.handle_;
      code_ = std::exchange(other.code_, MBX_EINVAL);
    }
    return *this;
  }
  hold(const hold &) = delete;
  hold &operator=(const hold &) = delete;
  ~hold() { reset(); }

  explicit operator bool() const noexcept { return code_ == MBX_OK; }
  int code() const noexcept { return code_; }
  mbx_handle handle() const noexcept { return handle_; }
  /* Release now (nothing if not held). */
  void reset() noexcept {
    if (code_ == MBX_OK)
      mbx_release(handle_);
    code_ = MBX_EINVAL;
  }

private:
  mbx_handle handle_{};
  int code_ = MBX_EINVAL;
};

/*
 * A mailbox owned by the calling thread for the guard's lifetime
 * (mbx_thread_attach; on destruction mbx_thread_exit(MBX_CANCEL_THREAD_EXIT):
 * what is queued is canceled on this thread). For threads not created
 * through the interposed pthread_create (mbx::core programs, foreign
 * runtimes). If the thread already has a mailbox, code() is MBX_EINVAL and
 * the guard does nothing (handle() is still the thread's mailbox).
 * Create and destroy it on one thread, never inside a handler.
 */
class thread_mailbox {
public:
  thread_mailbox() noexcept : code_(mbx_thread_attach(&handle_)) {
    if (code_ != MBX_OK)
      handle_ = mbx_self();
  }
  thread_mailbox(const thread_mailbox &) = delete;
  thread_mailbox &operator=(const thread_mailbox &) = delete;
  ~thread_mailbox() { close(); }

  /* MBX_OK (this guard owns the mailbox), MBX_EINVAL (already had one),
   * MBX_ENOMEM. */
  int code() const noexcept { return code_; }
  explicit operator bool() const noexcept { return code_ == MBX_OK; }
  mbx_handle handle() const noexcept { return handle_; }
  /* Close now: returns what mbx_thread_exit returns (canceled count), or
   * MBX_EPERM if this guard owns nothing (any more). */
  int close(int reason = MBX_CANCEL_THREAD_EXIT) noexcept {
    if (code_ != MBX_OK)
      return MBX_EPERM;
    code_ = MBX_EPERM;
    return mbx_thread_exit(reason);
  }

private:
  mbx_handle handle_{};
  int code_;
};

/*
 * A queue of one's own (<mbx/queue.h>) for the guard's lifetime: a mailbox
 * of the calling thread that runs only in poll() and wait(), never from the
 * thread's mbx_wait, event loop or blocked calls. Its handle() is a target
 * for post, call, async and callback from other threads (call from the
 * owner itself: MBX_EDEADLK). Destruction closes it (mbx_queue_close: what
 * is queued is canceled here, MBX_CANCEL_QUEUE_CLOSED); the owner's exit
 * closes it first if it comes first. Create, drain and destroy it on its
 * owner thread. code(): MBX_OK, or mbx_queue_create's error (MBX_EPERM,
 * MBX_ECLOSED, MBX_EAGAIN, MBX_ENOMEM), which poll, wait and close return.
 */
class queue {
public:
  queue() noexcept : code_(mbx_queue_create(&handle_)) {}
  queue(queue &&other) noexcept
      : handle_(other.handle_), code_(std::exchange(other.code_, MBX_EPERM)) {}
  queue &operator=(queue &&other) noexcept {
    if (this != &other) {
      close();
      handle_ = other.handle_;
      code_ = std::exchange(other.code_, MBX_EPERM);
    }
    return *this;
  }
  queue(const queue &) = delete;
  queue &operator=(const queue &) = delete;
  ~queue() { close(); }

  int code() const noexcept { return code_; }
  explicit operator bool() const noexcept { return code_ == MBX_OK; }
  mbx_handle handle() const noexcept { return handle_; }
  /* mbx_queue_poll: the number run, or an error code. */
  int poll() noexcept {
    return code_ == MBX_OK ? mbx_queue_poll(handle_) : code_;
  }
  /* mbx_queue_wait (a cancellation point), forever or for timeout. */
  int wait() noexcept {
    return code_ == MBX_OK ? mbx_queue_wait(handle_, -1) : code_;
  }
  template <class Rep, class Period>
  int wait(std::chrono::duration<Rep, Period> timeout) noexcept {
    if (code_ != MBX_OK)
      return code_;
    double ms = std::chrono::duration<double, std::milli>(timeout).count();
    return mbx_queue_wait(handle_, ms < 0 ? 0 : ms);
  }
  /* Close now: mbx_queue_close's count, or an error code. */
  int close() noexcept {
    if (code_ != MBX_OK)
      return code_;
    code_ = MBX_ECLOSED;
    return mbx_queue_close(handle_);
  }

private:
  mbx_handle handle_{};
  int code_;
};

/* --------------------------------------------------------------- worker */

/*
 * A std::thread that serves its mailbox (mbx_wait) until stopped. Movable;
 * the destructor stops and joins (never destroy a worker on its own
 * thread). Its members may be called from any thread but the worker's
 * own; posting to handle() from the worker itself is fine. Messages sent before
 * request_stop() run; those sent after it run (if the drain that runs the stop
 * request reaches them) or are canceled on the worker as it exits
 * (MBX_CANCEL_THREAD_EXIT), and sends after the exit get MBX_ECLOSED or
 * MBX_ESTALE. The constructor returns once handle() is valid; it throws
 * std::system_error if the thread cannot be created (std::thread's rule; aborts
 * without exceptions). The mailbox is the thread's automatic one where
 * std::thread goes through the interposed pthread_create (Emscripten, static
 * libstdc++), else one the thread attaches itself (thread_mailbox): natively,
 * libstdc++.so calls pthread_create from inside the shared library, which
 * -Wl,--wrap does not reach. With an attached mailbox, ending the worker from
 * inside a handler (pthread_exit, pthread_cancel) leaves its mailbox open
 * (mbx_thread_exit refuses inside a handler): stop workers with request_stop()
 * only.
 */
class worker {
public:
  worker() : state_(std::make_unique<state>()) {
    state *s = state_.get();
    thread_ = std::thread([s] { serve(s); });
    std::unique_lock<std::mutex> lock(s->mutex);
    s->ready.wait(lock, [s] { return s->published; });
  }
  worker(worker &&) noexcept = default;
  worker &operator=(worker &&other) noexcept {
    if (this != &other) {
      stop_and_join();
      state_ = std::move(other.state_);
      thread_ = std::move(other.thread_);
    }
    return *this;
  }
  ~worker() { stop_and_join(); }

  /* The worker's mailbox (null after a failed attach: sends get MBX_EINVAL). */
  mbx_handle handle() const noexcept {
    return state_ ? state_->handle : mbx_handle{};
  }
  std::thread::id get_id() const noexcept { return thread_.get_id(); }
  bool joinable() const noexcept { return thread_.joinable(); }

  /* Let the worker finish what was sent so far, then exit. Any thread,
   * repeatable; does not wait (join() does). */
  void request_stop() noexcept {
    // Relaxed: only picks the one caller that sends the stop message.
    if (!state_ ||
        state_->stop_requested.exchange(true, std::memory_order_relaxed))
      return;
    // The stop message queues behind earlier work, so that work runs first.
    int rc = mbx_send(state_->handle, stop_message, nullptr, state_.get());
    if (rc == MBX_OK || rc == MBX_ECLOSED || rc == MBX_ESTALE ||
        rc == MBX_EINVAL)
      return;
    // EFULL (the worker is busy and will check the flag after its drain)
    // or ENOMEM: fall back to the flag, and wake it if it sleeps.
    // Release: pairs with the worker's acquire.
    state_->stop_flag.store(true, std::memory_order_release);
    while (mbx_send(state_->handle, wake_message, nullptr, nullptr) ==
           MBX_ENOMEM)
      std::this_thread::yield();
  }
  void join() {
    if (thread_.joinable())
      thread_.join();
  }

  /* Shorthands for the free functions with handle(). */
  template <class... A> result<void> post(A &&...args) const {
    return mbx::post(handle(), std::forward<A>(args)...);
  }
  template <class F> detail::call_result_t<F> call(F &&f) const {
    return mbx::call(handle(), std::forward<F>(f));
  }
  template <class Rep, class Period, class F>
  detail::call_result_t<F> call_for(std::chrono::duration<Rep, Period> timeout,
                                    F &&f) const {
    return mbx::call_for(handle(), timeout, std::forward<F>(f));
  }
  template <class F> auto async(F &&f) const {
    return mbx::async(handle(), std::forward<F>(f));
  }
  template <class... A> result<void> callback(A &&...args) const {
    return mbx::callback(handle(), std::forward<A>(args)...);
  }

private:
  struct state {
    std::mutex mutex;
    std::condition_variable ready;
    bool published = false;
    mbx_handle handle{};
    std::atomic<bool> stop_requested{false};
    std::atomic<bool> stop_flag{false};
    bool stop_seen = false; // worker thread only
  };

  static void stop_message(void *arg) {
    static_cast<state *>(arg)->stop_seen = true;
  }
  static void wake_message(void *) {}

  static void serve(state *s) {
    thread_mailbox own; // no-op when the thread already has its mailbox
    {
      std::lock_guard<std::mutex> lock(s->mutex);
      s->handle = own.handle();
      s->published = true;
    }
    s->ready.notify_one();
    // Acquire: pairs with request_stop's release.
    while (!s->stop_seen && !s->stop_flag.load(std::memory_order_acquire)) {
      int rc = mbx_wait(-1);
      if (rc < 0 && rc != MBX_ETIMEDOUT)
        break; // no mailbox, or closed from outside (runtime exit)
    }
  }

  void stop_and_join() {
    request_stop();
    join();
  }

  std::unique_ptr<state> state_;
  std::thread thread_;
};

/* The calling thread's mailbox (null if none). Any thread. */
inline mbx_handle self() noexcept { return mbx_self(); }

} // namespace mbx

#endif /* MBX_MBX_HPP */
