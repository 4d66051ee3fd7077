// mbx-test-args: --clients 3 --calls 200
// mbx-test-timeout: 120
/*
 * A WasmFS-style backend that runs its requests only where it chooses: a
 * queue of its own (<mbx/queue.h>).
 *
 * The backend thread owns a file table guarded by a lock (an
 * error-checking mutex, so a deadlock shows as EDEADLK instead of a hang).
 * Now and then it grows its storage with a blocking call to a storage
 * thread, holding the lock across it; while blocked it serves its
 * automatic mailbox, so the storage thread can report progress back to
 * it. Client requests (write, read) take the lock. Sent to the backend's
 * automatic mailbox, a request would run inside that blocked call, on the
 * thread that holds the lock (upstream's em_proxying_queue deadlock,
 * emscripten #20059). Sent to the backend's own queue, requests run only in
 * mbx_queue_wait at the top of its loop, where the lock is free. At the
 * end the backend stops draining and exits with one request still queued:
 * its exit closes the queue, and that client's call returns MBX_ECANCELED.
 */
#include "../test/support/check.h"

#include <mbx/proxy.h>
#include <mbx/queue.h>
#include <mbx/thread.h>
#include <pthread.h>

#define MAX_FILES 8

static pthread_mutex_t g_table_lock;
static long g_table[MAX_FILES]; /* bytes per file, under g_table_lock */
static mbx_handle g_requests;   /* the backend's queue */
static mbx_handle g_storage;    /* the storage thread's mailbox */
static _Atomic int g_backend_ready, g_stop_backend, g_backend_stopped;
static _Atomic int g_storage_ready, g_stop_storage;
static _Atomic long g_grows, g_progress, g_requests_run;

/* ---- requests: run on the backend, from its queue only */
typedef struct request {
  int file;
  long bytes; /* in: to append; out: the file's size */
} request;

static void do_write(void *arg) {
  request *r = arg;
  /* EDEADLK here would mean the request ran inside the backend's blocked
   * storage call, with the lock held. */
  CHECK_EQ(pthread_mutex_lock(&g_table_lock), 0);
  g_table[r->file] += r->bytes;
  r->bytes = g_table[r->file];
  CHECK_EQ(pthread_mutex_unlock(&g_table_lock), 0);
  atomic_fetch_add(&g_requests_run, 1);
}

/* ---- the storage thread: grows the backend's storage */
static mbx_handle g_backend_self;
static void progress(void *arg) { /* on the backend, inside its call */
  (void)arg;
  atomic_fetch_add(&g_progress, 1);
}
static void grow_storage(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_send(g_backend_self, progress, NULL, NULL), MBX_OK);
  sleep_ms(1); /* the backend serves its mailbox meanwhile */
}
static void *storage_main(void *arg) {
  (void)arg;
  g_storage = mbx_self();
  atomic_store(&g_storage_ready, 1);
  while (!atomic_load(&g_stop_storage))
    mbx_wait(10);
  return NULL;
}

/* ---- the backend */
static void *backend_main(void *arg) {
  (void)arg;
  g_backend_self = mbx_self();
  CHECK_EQ(mbx_queue_create(&g_requests), MBX_OK);
  atomic_store(&g_backend_ready, 1);
  while (!atomic_load(&g_stop_backend)) {
    /* The safe point: requests run here, with the lock free. */
    int rc = mbx_queue_wait(g_requests, 5);
    CHECK(rc > 0 || rc == MBX_ETIMEDOUT);
    /* Maintenance with the lock held across a blocking call. */
    CHECK_EQ(pthread_mutex_lock(&g_table_lock), 0);
    CHECK_EQ(mbx_proxy_sync(g_storage, grow_storage, NULL), MBX_OK);
    atomic_fetch_add(&g_grows, 1);
    CHECK_EQ(pthread_mutex_unlock(&g_table_lock), 0);
  }
  /* Shutting down: one late request is queued; our exit cancels it. */
  atomic_store(&g_backend_stopped, 1);
  for (;;) {
    mbx_stats st;
    CHECK_EQ(mbx_stats_get(g_requests, &st), MBX_OK);
    if (st.pending == 1)
      break;
    sleep_ms(1);
  }
  return NULL;
}

/* ---- clients */
typedef struct client {
  int id;
  long calls;
} client;

static void *client_main(void *arg) {
  client *c = arg;
  for (long i = 0; i < c->calls; i++) {
    request r = {.file = c->id % MAX_FILES, .bytes = 1};
    CHECK_EQ(mbx_proxy_sync(g_requests, do_write, &r), MBX_OK);
    CHECK(r.bytes >= i + 1);
  }
  return NULL;
}

static void *late_client(void *arg) {
  request r = {.file = 0, .bytes = 1};
  *(int *)arg = mbx_proxy_sync(g_requests, do_write, &r);
  return NULL;
}

int main(int argc, char **argv) {
  int nclients = (int)arg_long(argc, argv, "--clients", 3);
  long calls = arg_long(argc, argv, "--calls", 200);
  CHECK(nclients > 0 && nclients <= MAX_FILES);
  pthread_mutexattr_t attr;
  CHECK_EQ(pthread_mutexattr_init(&attr), 0);
  CHECK_EQ(pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK), 0);
  CHECK_EQ(pthread_mutex_init(&g_table_lock, &attr), 0);

  pthread_t storage, backend, clients[MAX_FILES], late;
  CHECK_EQ(pthread_create(&storage, NULL, storage_main, NULL), 0);
  while (!atomic_load(&g_storage_ready))
    sleep_ms(1);
  CHECK_EQ(pthread_create(&backend, NULL, backend_main, NULL), 0);
  while (!atomic_load(&g_backend_ready))
    sleep_ms(1);
  client cs[MAX_FILES];
  for (int i = 0; i < nclients; i++) {
    cs[i] = (client){.id = i, .calls = calls};
    CHECK_EQ(pthread_create(&clients[i], NULL, client_main, &cs[i]), 0);
  }
  for (int i = 0; i < nclients; i++)
    CHECK_EQ(pthread_join(clients[i], NULL), 0);
  CHECK_EQ(atomic_load(&g_requests_run), nclients * calls);

  atomic_store(&g_stop_backend, 1);
  while (!atomic_load(&g_backend_stopped)) /* it drains no more */
    sleep_ms(1);
  int late_rc = 1;
  CHECK_EQ(pthread_create(&late, NULL, late_client, &late_rc), 0);
  CHECK_EQ(pthread_join(backend, NULL), 0);
  CHECK_EQ(pthread_join(late, NULL), 0);
  CHECK_EQ(late_rc, MBX_ECANCELED);
  atomic_store(&g_stop_storage, 1);
  CHECK_EQ(pthread_join(storage, NULL), 0);
  printf("queue_backend: %ld requests run from the backend's own queue, "
         "none inside its %ld blocking storage calls (which ran %ld "
         "progress messages from its automatic mailbox); the late request "
         "canceled at its exit (MBX_ECANCELED)\n",
         (long)atomic_load(&g_requests_run), (long)atomic_load(&g_grows),
         (long)atomic_load(&g_progress));
  printf("PASS queue_backend\n");
  return 0;
}
