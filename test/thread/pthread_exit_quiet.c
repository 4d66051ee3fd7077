// mbx-test-timeout: 60
/*
 * Issue 18 item 18: with the library linked, pthread_exit must not make
 * Emscripten 3.1.6 (built with assertions) print "Pthread 0x0 completed
 * its main entry point with an `unwind`" (a plain program does not).
 * test/pthread_exit_quiet.test.mjs runs this program and checks stderr.
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
