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
 * First, the window made deterministic with the test-only core hook
 * mbx__test_link_delay_ms (core/test_hooks.c): a sender stalls 2 s between
 * its exchange on the tail and its link, the owner sends itself a message
 * behind it (counted: pending 1, nothing poppable), then mbx_wait(5) must
 * time out while the stalled sender is still stalled. Before the fix it
 * yielded without looking at the clock until the link, and returned 2.
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

enum { SENDERS = 6 };
static _Atomic int g_stop;
static mbx_handle g_owner;

static void nothing(void *arg) { (void)arg; }

void mbx__test_link_delay_ms(double ms, _Atomic int *exchanged)
    __attribute__((weak));
static _Atomic int g_stalled_started, g_stalled_exchanged, g_stalled_sent;

static void *stalled_sender(void *arg) {
  (void)arg;
  mbx__test_link_delay_ms(2000, &g_stalled_exchanged);
  atomic_store(&g_stalled_started, 1);
  CHECK_EQ(mbx_send(g_owner, nothing, NULL, NULL), MBX_OK);
  atomic_store(&g_stalled_sent, 1);
  return NULL;
}

static void sender_between_exchange_and_link(void) {
  if (!mbx__test_link_delay_ms) {
    fprintf(stderr, "FAIL hook missing: mbx__test_link_delay_ms\n");
    exit(1);
  }
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, stalled_sender, NULL), 0);
  while (!atomic_load(&g_stalled_started))
    sched_yield();
  /* inside its exchange-to-link stall */
  CHECK(wait_flag_ms(&g_stalled_exchanged, 10000));
  CHECK_EQ(mbx_send(g_owner, nothing, NULL, NULL), MBX_OK);
  int rc = mbx_wait(5);
  int still_stalled = !atomic_load(&g_stalled_sent);
  printf("mid-send: mbx_wait(5) = %d, sender still stalled = %d\n", rc,
         still_stalled);
  CHECK_EQ(rc, MBX_ETIMEDOUT);
  CHECK(still_stalled);
  pthread_join(t, NULL);
  CHECK_EQ(mbx_wait(1000), 2); /* both, once linked */
}

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
  sender_between_exchange_and_link();
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
