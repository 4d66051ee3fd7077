/* Third-party C code that starts a thread with a plain pthread_create and
 * includes no mbx header: the loader example (examples/loader.c) checks
 * that such a thread still catches up on every loaded library before its
 * own code runs. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* The program's work function, called on the third-party thread. */
void loader_thread_body(uint64_t libs_at_create, int kind);

typedef struct job {
  uint64_t libs;
} job;

static void *run(void *p) {
  job j = *(job *)p;
  free(p);
  loader_thread_body(j.libs, 1);
  return NULL;
}

int foreign_pthread_start(pthread_t *t, uint64_t libs_at_create) {
  job *j = malloc(sizeof *j);
  if (!j)
    return -1;
  j->libs = libs_at_create;
  int rc = pthread_create(t, NULL, run, j);
  if (rc != 0)
    free(j);
  return rc;
}
