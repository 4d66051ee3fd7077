// mbx-test-flavors: wasm wasm-asan
// mbx-test-timeout: 60
/*
 * Issue 18 item 7: without a native Atomics.waitAsync an event-loop
 * thread is woken by a posted task (emscripten_dispatch_to_thread_async),
 * and 3.1.6 drops calls to a pthread whose call queue (127 slots) is full,
 * without telling the caller. A dropped wakeup must not leave the mailbox
 * undrained: here the worker is busy inside one foreign call while main
 * queues 127 more, then sends MESSAGES messages (whose wakeup is dropped);
 * they must all run within 3 s once the worker is idle.
 */
#include "watchdog.h"

#ifdef __EMSCRIPTEN__
#include "test_support.h"

#include <emscripten/emscripten.h>
#include <emscripten/threading.h>
#include <mbx/thread.h>
#include <pthread.h>

enum { MESSAGES = 11, FOREIGN = 127 };
static _Atomic int g_ready, g_in_blocker, g_release, g_run, g_foreign;

static void blocker(void) {
  atomic_store(&g_in_blocker, 1);
  while (!atomic_load(&g_release))
    sleep_ms(1);
}
static void foreign(void) { atomic_fetch_add(&g_foreign, 1); }
static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_run, 1);
}

int main(void) {
  watchdog_start(30000, "lost_post_wakeup");
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, test_posted_event_loop_thread, &g_ready),
           0);
  mbx_handle h = mbx_thread_handle(t);
  wait_for_count(&g_ready, 1);
  sleep_ms(20); /* the worker is back in its event loop */
  emscripten_dispatch_to_thread_async(t, EM_FUNC_SIG_V, blocker, NULL);
  wait_for_count(&g_in_blocker, 1);
  for (int i = 0; i < FOREIGN; i++)
    emscripten_dispatch_to_thread_async(t, EM_FUNC_SIG_V, foreign, NULL);
  for (int i = 0; i < MESSAGES; i++)
    CHECK_EQ(mbx_send(h, on_run, NULL, NULL), MBX_OK);
  atomic_store(&g_release, 1);
  int all = 0;
  for (int i = 0; i < 3000 && !all; i++, sleep_ms(1))
    all = atomic_load(&g_run) == MESSAGES;
  printf("sent=%d run=%d foreign_calls_run=%d\n", MESSAGES, atomic_load(&g_run),
         atomic_load(&g_foreign));
  CHECK_EQ(atomic_load(&g_run), MESSAGES);
  printf("PASS lost_post_wakeup\n");
  emscripten_force_exit(0);
  return 0;
}
#else
int main(void) {
  printf("PASS lost_post_wakeup (Emscripten only)\n");
  return 0;
}
#endif
