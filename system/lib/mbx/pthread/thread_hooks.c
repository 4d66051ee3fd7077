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
 * The main thread gets its mailbox from a constructor, before main runs;
 * it is closed at runtime exit (shutdown.c).
 */
#include "../internal.h"

#include <errno.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <stdlib.h>

int __real_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg);

typedef struct start_info {
  void *(*start)(void *);
  void *arg;
  mbx_handle mailbox;
} start_info;

void mbx__event_loop_on_exit(void);
void mbx__shutdown_install(void);

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

static void close_on_exit(void *unused) {
  (void)unused;
  mbx__event_loop_on_exit(); /* drop the keepalive before the thread goes */
  /* nested_ok: the thread may be ending from inside a message handler. */
  mbx__thread_exit(MBX_CANCEL_THREAD_EXIT, 1);
}

static void *start_with_mailbox(void *p) {
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
  pthread_cleanup_push(close_on_exit, NULL);
  mbx__lifecycle_thread_start();
  result = info.start(info.arg);
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
  int rc = __real_pthread_create(thread, attr, start_with_mailbox, info);
  if (rc != 0) {
    mbx_mailbox_close_orphan(mailbox);
    free(info);
  } else {
    mbx__record_set_pthread(mailbox, (uintptr_t)*thread);
  }
  if (held)
    mbx_release(mailbox);
  return rc;
}

mbx_handle mbx_thread_handle(pthread_t thread) {
  if (pthread_equal(thread, pthread_self()))
    return mbx_self();
  return mbx__handle_of_pthread((uintptr_t)thread);
}
