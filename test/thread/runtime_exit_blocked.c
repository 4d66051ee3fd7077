// mbx-test-flavors: native native-asan wasm wasm-asan
// mbx-test-timeout: 60
/*
 * Issue 18 item 15: runtime exit while threads are blocked in
 * mbx_wait(-1). The runtime-exit close must not wake them into a runtime
 * that is freeing them (3.1.6's terminateAllThreads frees thread data
 * before it terminates the workers: "Aborted(Stack overflow! Stack cookie
 * has been overwritten" in browsers). The waiters return from their thread
 * function when mbx_wait reports MBX_ECLOSED. The program must end with
 * exit code 0 and nothing printed after PASS but the exit. (Not under
 * TSan: exiting with unjoined threads is the scenario, a "thread leak".)
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

enum { WAITERS = 6 };
static _Atomic int g_ready;

static void *waiter(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ready, 1);
  while (mbx_wait(-1) != MBX_ECLOSED) {
  }
  /* Work after the wakeup: uses the stack and the heap of this thread. */
  char buf[4096];
  memset(buf, 1, sizeof buf);
  free(malloc(64));
  return NULL;
}

int main(void) {
  pthread_t t[WAITERS];
  for (int i = 0; i < WAITERS; i++)
    CHECK_EQ(pthread_create(&t[i], NULL, waiter, NULL), 0);
  wait_for_count(&g_ready, WAITERS);
  sleep_ms(20);
  printf("PASS runtime_exit_blocked\n");
  fflush(stdout);
  exit(0);
}
