/*
 * Every pthread gets a mailbox: link-time interposition of pthread_create
 * (-Wl,--wrap=pthread_create, carried by the mbx::mbx CMake target).
 *
 * The creator opens the mailbox before the thread exists, so it can send at
 * once; the new thread binds it first thing and installs a cleanup handler
 * that closes it on every exit path (return, pthread_exit, cancellation):
 * queued messages are canceled on the dying thread, while its stack exists
 * and before thread-specific-data destructors run. C11 thrd_create and C++
 * std::thread go through pthread_create, so they are covered too.
 *
 * Natively, --wrap only reaches calls linked into the executable; a shared
 * library's calls (the default shared libstdc++'s std::thread, a plugin's
 * pthread_create) bind at run time. So the executable also defines
 * pthread_create itself, which the dynamic linker prefers for every shared
 * object, and both entries create through the next definition: the
 * sanitizer runtime's interceptor when linked (so it still sees every
 * thread), else the C library's. Emscripten links statically: --wrap alone.
 *
 * The main thread gets its mailbox from a constructor, before main runs;
 * it is closed at runtime exit (shutdown.c).
 */
#include "pthread_layer.h"

#include <errno.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <stdlib.h>

typedef int (*create_fn)(pthread_t *thread, const pthread_attr_t *attr,
                         void *(*start)(void *), void *arg);

#ifdef __EMSCRIPTEN__
int __real_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg);
static create_fn real_create(void) { return __real_pthread_create; }
#else
#include <dlfcn.h>
/* The sanitizer runtimes' pthread_create (weak there, so ours wins the
 * name; theirs stays reachable under this one). */
int __interceptor_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                                 void *(*start)(void *), void *arg)
    __attribute__((weak));

static create_fn real_create(void) {
  static _Atomic(create_fn) cached;
  // Relaxed: every thread computes the same value; the pointer is to code.
  create_fn f = atomic_load_explicit(&cached, memory_order_relaxed);
  if (!f) {
    f = __interceptor_pthread_create;
    if (!f)
      *(void **)&f = dlsym(RTLD_NEXT, "pthread_create");
    atomic_store_explicit(&cached, f, memory_order_relaxed); // see above
  }
  return f;
}
#endif

typedef struct start_info {
  void *(*start)(void *);
  void *arg;
  mbx_handle mailbox;
#ifdef __EMSCRIPTEN__
  /* On the list of start records not taken yet (g_starting). */
  struct start_info *next, *prev;
#endif
} start_info;

#ifdef __EMSCRIPTEN__
/* Start records whose thread has not taken them yet. A thread can end
 * before its start routine runs (shutdown.c, mbx__on_thread_reclaimed) or
 * be killed before it does, and then never frees its own: the main thread
 * frees it with mbx__start_forget when it closes that thread's mailbox. */
static mbx__lock g_starting_lock = MBX__LOCK_INITIALIZER;
static start_info *g_starting;

static void starting_link(start_info *info) {
  mbx__lock_acquire(&g_starting_lock);
  info->prev = NULL;
  info->next = g_starting;
  if (g_starting)
    g_starting->prev = info;
  g_starting = info;
  mbx__lock_release(&g_starting_lock);
}

/* g_starting_lock held. */
static void starting_unlink(start_info *info) {
  if (info->prev)
    info->prev->next = info->next;
  else
    g_starting = info->next;
  if (info->next)
    info->next->prev = info->prev;
}

static void starting_take(start_info *info) {
  mbx__lock_acquire(&g_starting_lock);
  starting_unlink(info);
  mbx__lock_release(&g_starting_lock);
}

void mbx__start_forget(mbx_handle mailbox) {
  start_info *info;
  mbx__lock_acquire(&g_starting_lock);
  for (info = g_starting; info; info = info->next)
    if (mbx_handle_equal(info->mailbox, mailbox)) {
      starting_unlink(info);
      break;
    }
  mbx__lock_release(&g_starting_lock);
  free(info);
}

int mbx__starts_pending(void) {
  int n = 0;
  mbx__lock_acquire(&g_starting_lock);
  for (start_info *info = g_starting; info; info = info->next)
    n++;
  mbx__lock_release(&g_starting_lock);
  return n;
}
#else
/* Natively a thread always runs its start routine: nothing to forget. */
static void starting_link(start_info *info) { (void)info; }
static void starting_take(start_info *info) { (void)info; }
#endif

#ifdef __EMSCRIPTEN__
#include <emscripten/threading.h>
#include <math.h>
/* A thread whose start routine returns once the runtime exit has begun
 * (typically an owner that mbx_wait woke with MBX_ECLOSED when the exit
 * closed its mailbox) must not run its exit path: 3.1.6's
 * terminateAllThreads frees every thread's data (stack, TLS, pthread
 * struct) before it terminates the workers, and a thread returning into
 * that memory aborted with "Stack overflow! Stack cookie has been
 * overwritten" (issue 18 item 15). It sleeps instead until its worker is
 * terminated, which the teardown is about to do. Its mailbox was already
 * closed and drained by the runtime exit. */
static void park_if_runtime_exiting(void) {
  static int32_t never_set;
  while (mbx__runtime_exiting())
    emscripten_futex_wait(&never_set, 0, INFINITY);
}
#else
/* Natively exit() ends every thread itself; running the exit path
 * meanwhile is harmless. */
static void park_if_runtime_exiting(void) {}
#endif

/* Runs on a new thread after its mailbox is bound, before its start
 * function: broadcast catch-up and start hooks (lifecycle/hooks.c overrides
 * this no-op when linked), so this layer does not depend on that one. */
void mbx__lifecycle_thread_start(void);
__attribute__((weak)) void mbx__lifecycle_thread_start(void) {}

static _Atomic uint64_t g_main_handle;

/* Runs on the main thread before main(). If it fails (out of memory) the
 * main thread simply has no mailbox: mbx_main_thread() says so. */
__attribute__((constructor)) static void open_main_mailbox(void) {
  mbx_handle h;
  if (mbx_thread_attach(&h) != MBX_OK)
    return;
  mbx__record_set_pthread(h, (uintptr_t)pthread_self());
  // Release: pairs with mbx_main_thread; other constructors may already
  // have started threads that read it.
  atomic_store_explicit(&g_main_handle, h.bits, memory_order_release);
  mbx__shutdown_install();
}

mbx_handle mbx_main_thread(void) {
  // Acquire: pairs with the release in open_main_mailbox.
  mbx_handle h = {atomic_load_explicit(&g_main_handle, memory_order_acquire)};
  return h;
}

/* Set once the start routine has returned (then Emscripten may still keep
 * the thread alive for its timers: their keepalives are not ours). */
static _Thread_local int tls_returned;

static void close_on_exit(void *unused) {
  (void)unused;
  park_if_runtime_exiting();
  /* Drop our keepalive before the thread goes. */
  mbx__event_loop_on_exit(tls_returned);
  tls_returned = 0;
  /* nested_ok: the thread may be ending from inside a message handler. */
  mbx__thread_exit(MBX_CANCEL_THREAD_EXIT, 1);
}

/* Test-only (test/thread/cancel_at_start.c): the next thread to start stops
 * where close_on_exit is not installed yet, for ms milliseconds (*reached
 * set first), then reaches a cancellation point, as a contended lock there
 * does on Emscripten 5.0.7 (see start_with_mailbox). Tests declare it. */
static _Atomic int g_test_start_stall_ms;
static _Atomic(_Atomic int *) g_test_start_stall_reached;

void mbx__test_start_stall_ms(int ms, _Atomic int *reached) {
  // Relaxed (both): the test creates the thread afterwards, which orders
  // these stores before the thread's loads.
  atomic_store_explicit(&g_test_start_stall_reached, reached,
                        memory_order_relaxed);
  atomic_store_explicit(&g_test_start_stall_ms, ms, memory_order_relaxed);
}

static void test_start_stall(void) {
  // Relaxed: see mbx__test_start_stall_ms; the exchange gives the stall to
  // one thread only.
  if (__builtin_expect(atomic_load_explicit(&g_test_start_stall_ms,
                                            memory_order_relaxed) == 0,
                       1))
    return;
  int ms =
      atomic_exchange_explicit(&g_test_start_stall_ms, 0, memory_order_relaxed);
  if (!ms)
    return;
  // Relaxed: as above.
  _Atomic int *reached =
      atomic_load_explicit(&g_test_start_stall_reached, memory_order_relaxed);
  if (reached)
    // Seq_cst: a test flag; the test then sends the cancel.
    atomic_store(reached, 1);
  mbx__test_sleep_ms(ms);
  pthread_testcancel();
}

/* Test-only (test/thread/cancel_at_start.c, part 2): the next thread created
 * reaches cancellation points before start_with_mailbox runs, for up to
 * ms milliseconds (*reached set first), as a thread on Emscripten 5.x
 * under ASan does inside the sanitizer's thread start. Tests declare it. */
static _Atomic int g_test_prestart_ms, g_test_prestart_run_ms;
static _Atomic(_Atomic int *) g_test_prestart_reached;

void mbx__test_prestart_point_ms(int ms, _Atomic int *reached) {
  // Relaxed (both): as in mbx__test_start_stall_ms.
  atomic_store_explicit(&g_test_prestart_reached, reached,
                        memory_order_relaxed);
  atomic_store_explicit(&g_test_prestart_ms, ms, memory_order_relaxed);
}

static void *start_with_mailbox(void *p);

static void *start_after_points(void *p) {
  // Relaxed: see mbx__test_prestart_point_ms.
  _Atomic int *reached =
      atomic_load_explicit(&g_test_prestart_reached, memory_order_relaxed);
  if (reached)
    // Seq_cst: a test flag; the test then sends the cancel.
    atomic_store(reached, 1);
  // Relaxed: written by the creator before pthread_create.
  int ms = atomic_load_explicit(&g_test_prestart_run_ms, memory_order_relaxed);
  for (int i = 0; i < ms; i++) {
    pthread_testcancel();
    mbx__test_sleep_ms(1);
  }
  return start_with_mailbox(p);
}

static void *start_with_mailbox(void *p) {
  /* No cancellation until close_on_exit is installed. A pthread_cancel sent
   * right after pthread_create acts at the thread's first cancellation
   * point, and on Emscripten 5.0.7 any futex wait made with cancellation
   * enabled is one (it runs the calls queued to the thread,
   * pthread_kill(SIGCANCEL)'s among them, and then tests for
   * cancellation): in here, the allocator's lock under ASan, or a musl
   * internal lock (pthread_mutex_lock is not one).
   * A thread canceled in here left its mailbox open for good: what was sent
   * to it was never run or canceled, and mbx_thread_handle() of a later
   * thread that got the same pthread_t named the dead thread's mailbox
   * (torture, 5.0.7 wasm-asan, about 1 run in 150 with many kills). The
   * cancel now acts at the first cancellation point after this, with the
   * handler in place. */
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  starting_take(p);
  start_info info = *(start_info *)p;
  free(p);
  void *result;
  /* Fails only if the mailbox was closed meanwhile (runtime exit, or as an
   * orphan); the thread then runs without one, and gives up the owner's
   * hold that its exit would have released (close_orphan already did). */
  int bound = mbx_thread_bind(info.mailbox);
  if (bound == MBX_OK)
    mbx__record_set_pthread(info.mailbox, (uintptr_t)pthread_self());
  else
    mbx__release_unbound_owner(info.mailbox);
  test_start_stall();
  pthread_cleanup_push(close_on_exit, NULL);
  pthread_setcancelstate(cancel_state, NULL);
  mbx__lifecycle_thread_start();
  result = info.start(info.arg);
  tls_returned = 1;
  pthread_cleanup_pop(1);
  return result;
}

int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg) {
  start_info *info = malloc(sizeof *info);
  if (!info)
    return EAGAIN;
  info->start = start;
  info->arg = arg;
  if (mbx_mailbox_create(&info->mailbox) != MBX_OK) {
    free(info);
    return EAGAIN;
  }
  mbx_handle mailbox = info->mailbox;
  /* Hold the record across creation so that recording the pthread_t below
   * cannot land on a later life if the thread exits at once. */
  int held = mbx_hold(mailbox) == MBX_OK;
  // Relaxed: see mbx__test_prestart_point_ms; the exchange gives the
  // points to one thread only.
  int prestart_ms =
      atomic_load_explicit(&g_test_prestart_ms, memory_order_relaxed)
          ? atomic_exchange_explicit(&g_test_prestart_ms, 0,
                                     memory_order_relaxed)
          : 0;
  if (prestart_ms)
    // Relaxed: pthread_create orders it before the thread's load.
    atomic_store_explicit(&g_test_prestart_run_ms, prestart_ms,
                          memory_order_relaxed);
  starting_link(info);
  create_fn create = real_create();
  int rc =
      create
          ? create(thread, attr,
                   prestart_ms ? start_after_points : start_with_mailbox, info)
          : EAGAIN;
  if (rc != 0) {
    starting_take(info);
    mbx_mailbox_close_orphan(mailbox);
    free(info);
  } else {
    mbx__record_set_pthread(mailbox, (uintptr_t)*thread);
  }
  if (held)
    mbx_release(mailbox);
  return rc;
}

#ifndef __EMSCRIPTEN__
/* Shared libraries' calls (see the top of this file). --wrap leaves this
 * definition alone: it rewrites only undefined references. */
int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                   void *(*start)(void *), void *arg) {
  return __wrap_pthread_create(thread, attr, start, arg);
}
#endif

mbx_handle mbx_thread_handle(pthread_t thread) {
  if (pthread_equal(thread, pthread_self()))
    return mbx_self();
  return mbx__handle_of_pthread((uintptr_t)thread);
}
