// mbx-test-timeout: 120
/*
 * Issue 17: a send counts its message in pending, checks the gate, and only
 * then pushes it; a close that comes in between must wait for the push and
 * cancel the message, on the closing thread. Made deterministic with the
 * test-only core hook mbx__test_push_delay_ms (core/test_hooks.c): a sender
 * accepted by the gate stalls 500 ms before its push while the target
 * thread exits. The message must be canceled exactly once, on the target's
 * own thread (its exit cancels what is queued), and never run; the send
 * returns MBX_OK. A close that stopped at the first empty pop (the Spin
 * model's MUTANT_NO_INFLIGHT_WAIT) finished before the push: the message
 * was neither run nor canceled, and the record's next life started with a
 * count of 1 (seen with that mutant compiled in: cancels 0).
 * Twice: the owner's own exit, and a close from outside (the runtime
 * exit's, mbx__close_from_outside).
 */
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

void mbx__test_push_delay_ms(double ms, _Atomic int *stalling)
    __attribute__((weak));
/* Internal (core/layer.h): the runtime exit's close of another thread's
 * mailbox. */
int mbx__close_from_outside(mbx_handle h, int reason);

static _Atomic int g_stalling, g_runs, g_cancels, g_cancel_on_target;
static _Atomic int g_target_exit;
static pthread_t g_target;
static mbx_handle g_target_handle;

static void ran(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_runs, 1);
}
static void canceled(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_cancels, 1);
  if (pthread_equal(pthread_self(), g_target))
    atomic_fetch_add(&g_cancel_on_target, 1);
}

/* The target waits outside its mailbox until told to return (its exit
 * closes the mailbox): were the push to land before the close (a main
 * thread descheduled longer than the stall), the message would still be
 * canceled, never run, and the checks hold; only a close that does not
 * wait for the push fails them. (It used to wait in its mailbox and ran
 * such a message.) */
static void *target_main(void *arg) {
  (void)arg;
  while (!atomic_load(&g_target_exit))
    sleep_ms(1);
  return NULL;
}

static void *stalled_sender(void *arg) {
  (void)arg;
  mbx__test_push_delay_ms(500, &g_stalling);
  CHECK_EQ(mbx_send(g_target_handle, ran, canceled, NULL), MBX_OK);
  return NULL;
}

static void round_trip(int from_outside) {
  atomic_store(&g_stalling, 0);
  atomic_store(&g_runs, 0);
  atomic_store(&g_cancels, 0);
  atomic_store(&g_cancel_on_target, 0);
  atomic_store(&g_target_exit, 0);
  CHECK_EQ(pthread_create(&g_target, NULL, target_main, NULL), 0);
  g_target_handle = mbx_thread_handle(g_target);
  CHECK(!mbx_handle_is_null(g_target_handle));
  pthread_t s;
  CHECK_EQ(pthread_create(&s, NULL, stalled_sender, NULL), 0);
  while (!atomic_load(&g_stalling))
    sched_yield();
  /* The sender is counted and accepted, and stalls before its push. */
  double t0 = now_ms();
  if (from_outside)
    CHECK_EQ(mbx__close_from_outside(g_target_handle, MBX_CANCEL_RUNTIME_EXIT),
             1);
  atomic_store(&g_target_exit, 1);
  pthread_join(g_target, NULL);
  double waited = now_ms() - t0;
  pthread_join(s, NULL);
  printf("%s: close waited %.0f ms; runs=%d cancels=%d (on the %s)\n",
         from_outside ? "close from outside" : "owner's exit", waited,
         atomic_load(&g_runs), atomic_load(&g_cancels),
         atomic_load(&g_cancel_on_target) ? "target" : "closer");
  CHECK_EQ(atomic_load(&g_runs), 0);
  CHECK_EQ(atomic_load(&g_cancels), 1);
  /* The owner's exit cancels on the owner; a close from outside on the
   * closing thread (here main). */
  CHECK_EQ(atomic_load(&g_cancel_on_target), from_outside ? 0 : 1);
}

int main(void) {
  watchdog_start(60000, "close_waits_for_push");
  if (!mbx__test_push_delay_ms) {
    fprintf(stderr, "FAIL hook missing: mbx__test_push_delay_ms\n");
    return 1;
  }
  round_trip(0);
  round_trip(1);
  mbx_stats s;
  mbx_stats_global(&s);
  /* sent is derived (<mbx/mailbox.h>): a message still pending now, with
   * every thread done, went missing. */
  CHECK_EQ(s.pending, 0);
  CHECK_EQ(s.abandoned, 0);
  printf("PASS close_waits_for_push\n");
  return 0;
}
