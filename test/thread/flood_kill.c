// mbx-test-flavors: wasm wasm-asan
// mbx-test-broken-before: wasm-asan 3.1.14 the ASan build of 3.1.6 traps in
// dlfree from _emscripten_thread_exit after a worker was terminated (likely
// thread data freed past ASan, fixed upstream in emscripten PR 17090; see
// docs/emscripten-platform-notes.md) mbx-test-args: --rounds 25
// mbx-test-timeout: 300
/*
 * Issue 18 item 16: a worker killed while it drains a flood. Two senders
 * flood an event-loop thread; main terminates its worker mid-drain. Then:
 * - within 3 s every accepted message is run or canceled but for the one
 *   the worker had popped or was running when it died (at most one: the
 *   documented limit, <mbx/thread.h>), and the mailbox's counters account
 *   for every accepted one exactly (sent = run + canceled + dropped +
 *   pending + abandoned, pending 0). Before the fix 5-8% of rounds left
 *   thousands neither run nor canceled: the worker died inside a pop and
 *   the closer abandoned the queue;
 * - main's event loop is never blocked for long (today the orphan closer
 *   busy-waits up to 1 s for the dead owner's claim): the longest gap of a
 *   5 ms interval on main stays under 250 ms.
 * Main kills only while no thread is inside the library's allocator
 * (support/kill_guard.h): a worker killed holding dlmalloc's lock hung the
 * whole test once in CI (3.1.6); the count of kills that had to wait shows
 * how often a kill would have landed there.
 * Each killed worker leaks its thread's memory (3.1.6), so the rounds are
 * few (~25 fit in the default 128 MB); the run stops at the first
 * abandoned round. Seen before the fix: rounds 9 and 29 of 60 abandoned
 * ~1,700-3,800 messages (pending=4096).
 */
#include "kill_guard.h"
#include "watchdog.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <mbx/thread.h>
#include <pthread.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
/* A killed worker may leave a node block or two allocated for good (the
 * documented limit, <mbx/thread.h>): LeakSanitizer would report them at
 * exit (2 blocks of 648 bytes in one wasm-asan 5.0.7 run). The counters
 * above check what this test is about. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif
#endif

void mbx_test_stall_start(void);
double mbx_test_stall_max(void);

enum { SENDERS = 2 };
static _Atomic int g_ready, g_flooding, g_terminated;
static _Atomic long g_accepted, g_handled;
static mbx_handle g_victim;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_handled, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_fetch_add(&g_handled, 1);
}

static void *sender(void *arg) {
  (void)arg;
  while (atomic_load(&g_flooding)) {
    int rc = mbx_send(g_victim, on_run, on_cancel, NULL);
    if (rc == MBX_OK)
      atomic_fetch_add(&g_accepted, 1);
    else if (rc == MBX_ECLOSED)
      break;
  }
  return NULL;
}

static void terminate_on_main(void *victim_thread) {
  CHECK_EQ(kill_guard_terminate(*(pthread_t *)victim_thread), 1);
  atomic_store(&g_terminated, 1);
}

static long g_rounds, g_abandoned_rounds;
static void finish(void *arg) {
  (void)arg;
  double stall = mbx_test_stall_max();
  mbx_stats g;
  mbx_stats_global(&g);
  printf("rounds=%ld abandoned_rounds=%ld longest_main_loop_stall=%.0f ms "
         "messages abandoned by the dead=%llu kills that waited for the "
         "allocator=%ld\n",
         g_rounds, g_abandoned_rounds, stall, (unsigned long long)g.abandoned,
         atomic_load(&kill_guard_waits));
  fflush(stdout);
  if (g_abandoned_rounds || stall > 250) {
    fprintf(stderr, "FAIL flood_kill\n");
    fflush(stderr);
    emscripten_force_exit(1);
  }
  printf("PASS flood_kill\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
static void start_stall_meter(void *arg) {
  (void)arg;
  mbx_test_stall_start();
}

static void *coordinator(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_send(mbx_main_thread(), start_stall_meter, NULL, NULL), MBX_OK);
  for (long round = 0; round < g_rounds; round++) {
    atomic_store(&g_ready, 0);
    atomic_store(&g_terminated, 0);
    atomic_store(&g_accepted, 0);
    atomic_store(&g_handled, 0);
    pthread_t v, s[SENDERS];
    CHECK_EQ(pthread_create(&v, NULL, test_event_loop_thread, &g_ready), 0);
    g_victim = mbx_thread_handle(v);
    CHECK_EQ(mbx_hold(g_victim), MBX_OK);
    CHECK_EQ(mbx_set_capacity(g_victim, 4096), MBX_OK);
    while (!atomic_load(&g_ready))
      sleep_ms(1);
    atomic_store(&g_flooding, 1);
    for (int i = 0; i < SENDERS; i++)
      CHECK_EQ(pthread_create(&s[i], NULL, sender, NULL), 0);
    sleep_ms(20);
    CHECK_EQ(mbx_send(mbx_main_thread(), terminate_on_main, NULL, &v), MBX_OK);
    while (!atomic_load(&g_terminated))
      sleep_ms(1);
    sleep_ms(5);
    atomic_store(&g_flooding, 0);
    for (int i = 0; i < SENDERS; i++)
      pthread_join(s[i], NULL);
    int settled = 0;
    mbx_stats st;
    for (int ms = 0; ms < 3000 && !settled; ms += 5, sleep_ms(5)) {
      CHECK_EQ(mbx_stats_get(g_victim, &st), MBX_OK);
      long missing = atomic_load(&g_accepted) - atomic_load(&g_handled);
      settled = st.pending == 0 && missing >= 0 && missing <= 1 &&
                st.sent == (uint64_t)atomic_load(&g_accepted);
    }
    if (!settled) {
      printf("round %ld: accepted=%ld handled=%ld sent=%llu pending=%llu "
             "abandoned=%llu\n",
             round, atomic_load(&g_accepted), atomic_load(&g_handled),
             (unsigned long long)st.sent, (unsigned long long)st.pending,
             (unsigned long long)st.abandoned);
      g_abandoned_rounds++;
    }
    mbx_release(g_victim);
    if (g_abandoned_rounds) /* abandoned nodes leak: stop while memory lasts */
      break;
  }
  CHECK_EQ(mbx_send(mbx_main_thread(), finish, NULL, NULL), MBX_OK);
  return NULL;
}

int main(int argc, char **argv) {
  g_rounds = arg_long(argc, argv, "--rounds", 20);
  watchdog_start(240000, "flood_kill");
  kill_guard_install();
  test_main_serves_loop(coordinator, NULL);
  return 99; /* not reached */
}
#else
int main(void) {
  printf("PASS flood_kill (Emscripten only)\n");
  return 0;
}
#endif
