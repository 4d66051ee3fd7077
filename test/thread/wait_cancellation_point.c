// mbx-test-timeout: 60
/*
 * Issue 18 item 5: the README's worker `for (;;) mbx_wait(-1);` must be
 * cancelable: mbx_wait is a cancellation point. Messages keep arriving
 * while the cancel is pending; the join must return within 3 s, and every
 * accepted message must be run or canceled (nothing left pending).
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

static _Atomic int g_started, g_run, g_canceled, g_joined;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_run, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_canceled, 1);
}

static void *worker(void *arg) {
  (void)arg;
  atomic_store(&g_started, 1);
  for (;;)
    mbx_wait(-1);
  return NULL;
}

static void *joiner(void *arg) {
  pthread_join(*(pthread_t *)arg, NULL);
  atomic_store(&g_joined, 1);
  return NULL;
}

int main(void) {
  watchdog_start(30000, "wait_cancellation_point");
  pthread_t t, j;
  CHECK_EQ(pthread_create(&t, NULL, worker, NULL), 0);
  mbx_handle h = mbx_thread_handle(t);
  CHECK_EQ(mbx_hold(h), MBX_OK);
  wait_for_count(&g_started, 1);
  int accepted = 0;
  for (int i = 0; i < 10; i++, sleep_ms(1))
    accepted += mbx_send(h, on_run, on_cancel, NULL) == MBX_OK;
  CHECK_EQ(pthread_cancel(t), 0);
  CHECK_EQ(pthread_create(&j, NULL, joiner, &t), 0);
  for (int i = 0; i < 300 && !atomic_load(&g_joined); i++) {
    accepted += mbx_send(h, on_run, on_cancel, NULL) == MBX_OK;
    sleep_ms(10);
  }
  if (!atomic_load(&g_joined)) {
    fprintf(stderr, "FAIL join still pending 3 s after pthread_cancel "
                    "(run=%d)\n", atomic_load(&g_run));
    fflush(stderr);
    _exit(1);
  }
  pthread_join(j, NULL);
  mbx_stats s;
  CHECK_EQ(mbx_stats_get(h, &s), MBX_OK);
  printf("accepted=%d run=%d canceled=%d pending=%llu\n", accepted,
         atomic_load(&g_run), atomic_load(&g_canceled),
         (unsigned long long)s.pending);
  CHECK_EQ(atomic_load(&g_run) + atomic_load(&g_canceled), accepted);
  CHECK_EQ(s.pending, 0);
  CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_ECLOSED);
  CHECK_EQ(mbx_release(h), MBX_OK);
  /* Part 2: canceled while asleep, with nothing arriving. */
  atomic_store(&g_started, 0);
  atomic_store(&g_joined, 0);
  CHECK_EQ(pthread_create(&t, NULL, worker, NULL), 0);
  wait_for_count(&g_started, 1);
  sleep_ms(50); /* asleep in mbx_wait(-1) */
  CHECK_EQ(pthread_cancel(t), 0);
  CHECK_EQ(pthread_create(&j, NULL, joiner, &t), 0);
  /* Acted on within a check interval (100 ms), not when a message comes. */
  CHECK(wait_flag_ms(&g_joined, 2000));
  pthread_join(j, NULL);
  printf("canceled while asleep: joined\n");
  printf("PASS wait_cancellation_point\n");
  return 0;
}
