// mbx-test-args: --waits 3000
// mbx-test-args-wasm: --waits 1000
// mbx-test-timeout: 300
/*
 * Issue 18 item 9: mbx_wait(timeout) must not overrun its deadline while
 * a sender is between linking its message and counting it (pending dips
 * to -1 and the waiter yields in a loop without looking at the clock).
 * Many senders (more than cores, so some get preempted mid-send) send in
 * bursts; the owner calls mbx_wait(2) over and over. Failure: one wait
 * that burns more than 20 ms of the waiter's own CPU (being descheduled
 * is not counted: only CPU spent inside mbx_wait).
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>

enum { SENDERS = 6 };
static _Atomic int g_stop;
static mbx_handle g_owner;

static void nothing(void *arg) { (void)arg; }

static void *sender(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop)) {
    for (int i = 0; i < 64; i++)
      mbx_send(g_owner, nothing, NULL, NULL);
    sched_yield();
  }
  return NULL;
}

int main(int argc, char **argv) {
  long waits = arg_long(argc, argv, "--waits", 3000);
  watchdog_start(240000, "wait_deadline");
  g_owner = mbx_self();
  CHECK(!mbx_handle_is_null(g_owner));
  CHECK_EQ(mbx_set_capacity(g_owner, 4096), MBX_OK);
  pthread_t t[SENDERS];
  for (int i = 0; i < SENDERS; i++)
    CHECK_EQ(pthread_create(&t[i], NULL, sender, NULL), 0);
  double worst = 0;
  long stalls = 0;
  for (long i = 0; i < waits; i++) {
    double cpu = thread_cpu_ms();
    int rc = mbx_wait(2);
    cpu = thread_cpu_ms() - cpu;
    CHECK(rc > 0 || rc == MBX_ETIMEDOUT);
    if (cpu > worst)
      worst = cpu;
    stalls += cpu > 20;
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < SENDERS; i++)
    pthread_join(t[i], NULL);
  while (mbx_poll() > 0) {
  }
  printf("waits=%ld worst_cpu=%.1f ms stalls_over_20ms=%ld\n", waits, worst,
         stalls);
  CHECK_EQ(stalls, 0);
  printf("PASS wait_deadline\n");
  return 0;
}
