// mbx-test-timeout: 60
/*
 * Issue 18 item 18: Emscripten 3.1.6 built with assertions prints "Pthread
 * 0x0 completed its main entry point with an `unwind`" at pthread_exit, a
 * plain program too (Emscripten's own message). Pinned by
 * test/pthread_exit_quiet.test.mjs: the library adds none of its own.
 */
#include "watchdog.h"

#include <pthread.h>

static void *exits(void *arg) {
  (void)arg;
  pthread_exit(NULL);
  return NULL;
}

int main(void) {
  for (int i = 0; i < 3; i++) {
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, exits, NULL), 0);
    pthread_join(t, NULL);
  }
  printf("PASS pthread_exit_quiet\n");
  return 0;
}
