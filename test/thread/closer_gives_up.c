// mbx-test-flavors: native native-asan
// mbx-test-timeout: 60
/*
 * Issue 18 item 22 (a): at runtime exit, an owner descheduled inside a pop
 * for longer than the closer's 1 s claim timeout makes the closer give up
 * (MBX_EBUSY) after clearing OPEN; the owner's own exit must then still
 * cancel what is queued (before the fix it got MBX_ECLOSED and canceled
 * nothing). The owner's poll runs only the one message pending when it
 * began (its budget); the other QUEUED arrive while it stalls in that pop,
 * and only the exit's drain can handle them. The delay inside the pop is
 * the test-only core hook mbx__test_pop_delay_ms (core/test_hooks.c).
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_pop_delay_ms(double ms, _Atomic int *in_claim)
    __attribute__((weak));

enum { QUEUED = 5 };
static _Atomic int g_handled, g_sent, g_in_poll, g_exited, g_in_claim;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_handled, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_handled, 1);
}

static void *owner(void *arg) {
  (void)arg;
  wait_for_count(&g_sent, 1); /* else the poll finds nothing to pop */
  mbx__test_pop_delay_ms(1500, &g_in_claim);
  atomic_store(&g_in_poll, 1);
  mbx_poll(); /* the first pop stalls 1.5 s inside the claim */
  atomic_store(&g_exited, 1);
  return NULL; /* the exit drain cancels what the closer left */
}

static void check_after_library(void) {
  wait_flag_ms(&g_exited, 5000);
  /* The owner's exit drain cancels the rest after g_exited: wait for it
   * (a fixed 100 ms was too short under load). */
  for (int i = 0; i < 10000 && atomic_load(&g_handled) != QUEUED + 1; i++)
    sleep_ms(1);
  printf("queued=%d handled=%d\n", QUEUED + 1, atomic_load(&g_handled));
  fflush(stdout);
  if (atomic_load(&g_handled) != QUEUED + 1) {
    fprintf(stderr, "FAIL messages neither run nor canceled\n");
    fflush(stderr);
    _exit(1);
  }
  printf("PASS closer_gives_up\n");
  fflush(stdout);
}
__attribute__((constructor(101))) static void register_check(void) {
  atexit(check_after_library); /* runs after the library's handler */
}

int main(void) {
  if (!mbx__test_pop_delay_ms) {
    fprintf(stderr, "FAIL hook missing: mbx__test_pop_delay_ms\n");
    _exit(1);
  }
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, owner, NULL), 0);
  mbx_handle h = mbx_thread_handle(t);
  CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
  atomic_store(&g_sent, 1);
  wait_for_count(&g_in_poll, 1);
  /* its poll's budget is the one message: stalled in its pop */
  CHECK(wait_flag_ms(&g_in_claim, 10000));
  for (int i = 0; i < QUEUED; i++) /* left for the exit drain */
    CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
  sleep_ms(50);
  exit(0); /* the runtime-exit close meets the stalled pop */
}
