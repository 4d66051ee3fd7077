// mbx-test-flavors: wasm wasm-asan
// mbx-test-requires: emscripten/emscripten.h
// mbx-test-wasm-link: -sEXIT_RUNTIME=0
// mbx-test-timeout: 60
/*
 * emscripten_force_exit() in a program linked without EXIT_RUNTIME (the
 * default for most web apps): the runtime-exit close must still run, so a
 * message queued to a worker that never drains is canceled on the exiting
 * thread with MBX_CANCEL_RUNTIME_EXIT, and a main thread served from its
 * event loop must not keep the process alive afterwards. 5.0.7 reaches its
 * thread teardown through proc_exit -> terminateAllThreads, not
 * terminateRuntime: a hook on the latter alone saw nothing (no cancel, and
 * the event loop's keepalive hung the process).
 */
#include "check.h"

#include <emscripten/emscripten.h>
#include <mbx/mailbox.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

static _Atomic int g_worker_started;

static void never_runs(void *arg) {
  (void)arg;
  printf("FAIL: the worker ran a message it never drains\n");
}

static void canceled(void *arg, int reason) {
  (void)arg;
  /* On the exiting (main) thread, during the teardown. */
  if (reason == MBX_CANCEL_RUNTIME_EXIT)
    printf("PASS force_exit_live_runtime: queued message canceled with "
           "MBX_CANCEL_RUNTIME_EXIT\n");
  else
    printf("FAIL: canceled with reason %d\n", reason);
}

static void *worker(void *unused) {
  (void)unused;
  atomic_store(&g_worker_started, 1);
  for (;;)
    sleep_ms(1); /* never drains its mailbox */
  return NULL;
}

static void exit_now(void *unused) {
  (void)unused;
  emscripten_force_exit(0);
}

static pthread_t g_thread;

static void send_then_exit(void *unused) {
  (void)unused;
  if (!atomic_load(&g_worker_started)) {
    emscripten_async_call(send_then_exit, NULL, 10);
    return;
  }
  mbx_handle to = mbx_thread_handle(g_thread);
  int rc = mbx_send(to, never_runs, canceled, NULL);
  if (rc != MBX_OK) {
    printf("FAIL: send %s\n", mbx_strerror(rc));
    emscripten_force_exit(1);
  }
  emscripten_async_call(exit_now, NULL, 20);
}

int main(void) {
  if (pthread_create(&g_thread, NULL, worker, NULL) != 0)
    return 1;
  /* The main thread served from its event loop keeps the process alive;
   * the teardown must release that too. */
  if (mbx_event_loop_attach() != MBX_OK)
    return 1;
  emscripten_async_call(send_then_exit, NULL, 10);
  return 0; /* no EXIT_RUNTIME: the runtime stays up */
}
