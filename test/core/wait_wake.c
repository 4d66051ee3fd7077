// mbx-test-args: --rounds 2000
// mbx-test-args-wasm-asan: --rounds 300
/*
 * Blocking receivers: mbx_wait times out when idle, wakes on a send from
 * another thread, and notifications are coalesced: a burst sent while the
 * receiver is busy costs no wakeup, and each wakeup is matched by a return
 * from mbx_wait. Ping-pong rounds between two waiting threads check that no
 * wakeup is ever lost (a lost one hangs the test and the watchdog fails it),
 * with adaptive spinning before sleeping (the default) and without it. An
 * idle waiter does not burn a core while it spins (natively, where process
 * CPU time is measurable).
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

static _Atomic long g_runs;
static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_runs, 1);
}

static mbx_handle g_receiver;
static _Atomic int g_burst_go;
#define BURST 1000

static void *burst_sender(void *arg) {
  (void)arg;
  while (!atomic_load(&g_burst_go))
    sched_yield();
  sleep_ms(30); /* let the receiver fall asleep */
  for (int i = 0; i < BURST; i++)
    CHECK_EQ(mbx_send(g_receiver, on_run, NULL, NULL), MBX_OK);
  return NULL;
}

static void check_timeout_and_coalescing(void) {
  CHECK_EQ(mbx_thread_attach(&g_receiver), MBX_OK);
  double t0 = now_ms();
  CHECK_EQ(mbx_wait(50), MBX_ETIMEDOUT);
  double waited = now_ms() - t0;
  CHECK(waited >= 45);
  CHECK_EQ(mbx_wait(0), MBX_ETIMEDOUT);

  /* Nobody waiting: a burst makes no wakeup at all. */
  mbx_stats before, after;
  mbx_stats_global(&before);
  for (int i = 0; i < BURST; i++)
    CHECK_EQ(mbx_send(g_receiver, on_run, NULL, NULL), MBX_OK);
  mbx_stats_global(&after);
  CHECK_EQ(after.wakeups, before.wakeups);
  CHECK_EQ(mbx_wait(1000), BURST); /* one wait runs the whole burst */

  /* Receiver asleep: the burst wakes it, and every wakeup is matched by a
   * return from mbx_wait (no notification per message). The sender's 30 ms
   * for us to fall asleep may not be enough on a loaded machine (then no
   * send finds us asleep, and there is no wakeup): up to 5 rounds, until
   * one saw us asleep. */
  long wakeups = 0;
  for (int round = 0; round < 5 && wakeups == 0; round++) {
    atomic_store(&g_burst_go, 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, burst_sender, NULL), 0);
    mbx_stats_global(&before);
    atomic_store(&g_burst_go, 1);
    long ran = 0, returns = 0;
    while (ran < BURST) {
      int n = mbx_wait(10000);
      CHECK(n > 0);
      ran += n;
      returns++;
    }
    pthread_join(t, NULL);
    mbx_stats_global(&after);
    wakeups = (long)(after.wakeups - before.wakeups);
    printf("burst messages=%d wait_returns=%ld wakeups=%ld waited_ms=%.1f\n",
           BURST, returns, wakeups, waited);
    CHECK(wakeups <= returns);
  }
  CHECK(wakeups >= 1);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
}

/* Ping-pong between two blocking receivers. */
static mbx_handle g_ping, g_pong;
static _Atomic int g_pong_ready;
static _Atomic int g_pong_spins = 1;
static long g_rounds;
static void pong_reply(void *arg) {
  CHECK_EQ(mbx_send(g_ping, on_run, NULL, arg), MBX_OK);
}
static void *pong_main(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_set_spinning(atomic_load(&g_pong_spins)), 1);
  CHECK_EQ(mbx_thread_attach(&g_pong), MBX_OK);
  atomic_store(&g_pong_ready, 1);
  for (long i = 0; i < g_rounds;) {
    int n = mbx_wait(-1);
    CHECK(n > 0);
    i += n;
  }
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  return NULL;
}

static void check_ping_pong(int spinning) {
  atomic_store(&g_pong_spins, spinning);
  atomic_store(&g_pong_ready, 0);
  CHECK_EQ(mbx_set_spinning(spinning), 1);
  CHECK_EQ(mbx_thread_attach(&g_ping), MBX_OK);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, pong_main, NULL), 0);
  while (!atomic_load(&g_pong_ready))
    sched_yield();
  atomic_store(&g_runs, 0);
  double t0 = now_ms();
  for (long i = 0; i < g_rounds; i++) {
    CHECK_EQ(mbx_send(g_pong, pong_reply, NULL, NULL), MBX_OK);
    CHECK_EQ(mbx_wait(-1), 1);
  }
  double elapsed = now_ms() - t0;
  pthread_join(t, NULL);
  CHECK_EQ(atomic_load(&g_runs), g_rounds);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  printf("ping_pong spinning=%d rounds=%ld us_per_round=%.2f\n", spinning,
         g_rounds, elapsed * 1000 / (double)g_rounds);
  CHECK_EQ(mbx_set_spinning(1), spinning);
}

#ifndef __EMSCRIPTEN__
static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *idle_waiter(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_thread_attach(NULL), MBX_OK);
  /* 40 idle periods: each may spin once, for at most 50 microseconds. */
  for (int i = 0; i < 40; i++)
    CHECK_EQ(mbx_wait(5), MBX_ETIMEDOUT);
  CHECK_EQ(mbx_wait(150), MBX_ETIMEDOUT); /* one long idle period */
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  return NULL;
}

/* The whole process (main sleeps in join) while a waiter idles ~350 ms. A
 * waiter that kept spinning would use ~100% of a core. */
static void check_idle_cpu(void) {
  double cpu0 = cpu_ms(), t0 = now_ms();
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, idle_waiter, NULL), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
  double cpu = cpu_ms() - cpu0, wall = now_ms() - t0;
  printf("idle waiter: cpu_ms=%.2f wall_ms=%.1f (%.1f%% of a core)\n", cpu,
         wall, 100 * cpu / wall);
  CHECK(cpu < 0.1 * wall);
}
#endif

int main(int argc, char **argv) {
  g_rounds = arg_long(argc, argv, "--rounds", 2000);
  CHECK_EQ(mbx_set_spinning(1), 1); /* on by default */
  check_timeout_and_coalescing();
  check_ping_pong(1);
  check_ping_pong(0);
#ifndef __EMSCRIPTEN__
  /* --idle-cpu 0 under valgrind: it serialises and slows every thread, so
   * CPU shares measure valgrind, not the waiter. */
  if (arg_long(argc, argv, "--idle-cpu", 1))
    check_idle_cpu();
#endif
  printf("PASS wait_wake\n");
  return 0;
}
