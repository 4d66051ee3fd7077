// mbx-test-timeout: 120
/*
 * The main thread has a mailbox before main() runs, and other threads find
 * it through mbx_main_thread() and mbx_thread_handle(). Natively main
 * receives with mbx_wait. On Emscripten main also receives from its JS event
 * loop, with no polling, first through Atomics.waitAsync and then, after a
 * handler switches it over, through posted wakeups (waitAsync hidden); a
 * last message ends the program with emscripten_force_exit, which closes
 * the main mailbox and cancels what is still queued there.
 */
#include "check.h"
#include "test_support.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

static pthread_t g_main;
static mbx_handle g_main_handle;
static _Atomic int g_runs, g_runs_off_main, g_peer_ok;

static void on_run(void *arg) {
  (void)arg;
  if (!pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_runs_off_main, 1);
  atomic_fetch_add(&g_runs, 1);
}

/* The handles another thread sees for main. */
static void check_main_handles_from_peer(void) {
  CHECK(mbx_handle_equal(mbx_main_thread(), g_main_handle));
  CHECK(mbx_handle_equal(mbx_thread_handle(g_main), g_main_handle));
  CHECK(!mbx_handle_equal(mbx_self(), g_main_handle));
  atomic_store(&g_peer_ok, 1);
}

#ifndef __EMSCRIPTEN__
static void *native_sender(void *arg) {
  (void)arg;
  check_main_handles_from_peer();
  for (int i = 0; i < 1000; i++)
    CHECK_EQ(mbx_send(g_main_handle, on_run, NULL, NULL), MBX_OK);
  return NULL;
}
#else

static _Atomic int g_phase_b_ready, g_cancels_at_exit;
static long g_wakeups_a, g_wakeups_b;

static long wakeups(void) {
  mbx_stats s;
  mbx_stats_global(&s);
  return (long)s.wakeups;
}

/* Runs on main, from its event loop: switch to posted wakeups. */
static void switch_to_posted_wakeups(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_event_loop_detach(), MBX_OK);
  CHECK_EQ(mbx_test_hide_wait_async(), 1);
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store(&g_phase_b_ready, 1);
}

static void count_cancel(void *arg, int reason) {
  (void)arg;
  CHECK_EQ(reason, MBX_CANCEL_RUNTIME_EXIT);
  CHECK(pthread_equal(pthread_self(), g_main));
  atomic_fetch_add(&g_cancels_at_exit, 1);
}

static void finish(void *arg) {
  (void)arg;
  CHECK_EQ(atomic_load(&g_runs_off_main), 0);
  CHECK_EQ(atomic_load(&g_peer_ok), 1);
  printf("main event loop: 1000-message burst + 20 singles, %ld wakeups with "
         "waitAsync, %ld with posted wakeups\n",
         g_wakeups_a, g_wakeups_b);
  printf("PASS main_thread\n");
  fflush(stdout);
  /* Queued behind us: canceled by the runtime exit, on this thread. */
  emscripten_force_exit(0);
}

/* Burst and singles to main; returns the wakeups they cost. */
static long burst_and_singles(int *expected) {
  long before = wakeups();
  for (int i = 0; i < 1000; i++)
    CHECK_EQ(mbx_send(g_main_handle, on_run, NULL, NULL), MBX_OK);
  *expected += 1000;
  wait_for_count(&g_runs, *expected);
  for (int i = 0; i < 20; i++) {
    CHECK_EQ(mbx_send(g_main_handle, on_run, NULL, NULL), MBX_OK);
    wait_for_count(&g_runs, ++*expected);
  }
  long cost = wakeups() - before;
  /* Main never polls, so every delivery above proves a notification
   * reached it. A single usually costs one wakeup, but it may also be
   * picked up by the drain that ran its predecessor (the count is taken
   * before main's drain ends): so at least one, and far below one per
   * message for the burst. */
  CHECK(cost >= 1 && cost < 1020);
  return cost;
}

static void *coordinator(void *arg) {
  (void)arg;
  check_main_handles_from_peer();
  int expected = 0;
  g_wakeups_a = burst_and_singles(&expected);
  CHECK_EQ(mbx_send(g_main_handle, switch_to_posted_wakeups, NULL, NULL),
           MBX_OK);
  while (!atomic_load(&g_phase_b_ready))
    sleep_ms(1);
  g_wakeups_b = burst_and_singles(&expected);
  /* finish ends the program; the three behind it are canceled at exit.
   * Queue them while main is busy so that they are still there. */
  CHECK_EQ(mbx_send(g_main_handle, finish, NULL, NULL), MBX_OK);
  for (int i = 0; i < 3; i++)
    mbx_send(g_main_handle, on_run, count_cancel, NULL);
  return NULL;
}
#endif

int main(void) {
  g_main = pthread_self();
  g_main_handle = mbx_main_thread();
  CHECK(!mbx_handle_is_null(g_main_handle));
  CHECK(mbx_handle_equal(mbx_self(), g_main_handle));
  CHECK(mbx_handle_equal(mbx_thread_handle(g_main), g_main_handle));
  CHECK_EQ(mbx_thread_attach(NULL), MBX_EINVAL); /* already has one */
#ifndef __EMSCRIPTEN__
  pthread_t sender;
  CHECK_EQ(pthread_create(&sender, NULL, native_sender, NULL), 0);
  while (atomic_load(&g_runs) < 1000)
    CHECK(mbx_wait(5000) > 0);
  CHECK_EQ(pthread_join(sender, NULL), 0);
  CHECK_EQ(atomic_load(&g_runs), 1000);
  CHECK_EQ(atomic_load(&g_runs_off_main), 0);
  CHECK_EQ(atomic_load(&g_peer_ok), 1);
  printf("PASS main_thread (native: 1000 messages received with mbx_wait)\n");
  return 0;
#else
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, coordinator, NULL), 0);
  CHECK_EQ(pthread_detach(t), 0);
  emscripten_exit_with_live_runtime();
  return 99; /* not reached */
#endif
}
