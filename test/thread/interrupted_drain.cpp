// mbx-test-cxxflags: -fexceptions
// mbx-test-timeout: 60
/*
 * A drain cut short, by an exception, by pthread_exit in a handler or by the
 * owner's death, leaves no message lost, run twice or out of order: what was
 * queued behind the interrupted message runs first in the thread's next
 * drain, nested or not, or is canceled exactly once, in order, by its exit or
 * by the closer of its dead owner. A receive path that pops ahead of the
 * handlers (issue 17 tried a batch of pops per consumer claim) must keep all
 * of this. Twelve messages are queued before the owner's first mbx_wait:
 * (a) message 3 throws; the owner catches and waits again: 4..12 run, in
 *     order, and nothing is canceled;
 * (b) message 2 calls mbx_proxy_sync, whose wait serves the owner's mailbox
 *     (a nested drain): 3..12 run inside it, in order;
 * (c) message 3 calls pthread_exit: 4..12 are canceled on the dying thread,
 *     in order, with MBX_CANCEL_THREAD_EXIT;
 * (d) message 3 throws; the owner catches and returns: the same at its exit;
 * (e) natively, an owner parked after popping message 1 (test hook) stands
 *     for a dead one: mbx_mailbox_close_orphan cancels 2..12 with
 *     MBX_CANCEL_ABNORMAL_EXIT, in order, and returns 11.
 * Each case checks the mailbox's counters: every message counted once, as
 * run or as canceled.
 */
#include "check.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mbx/mailbox.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>

extern "C" void mbx__test_park_after_pop(std::atomic<int> *parked);

enum { N = 12 };
enum action { PLAIN, THROW, EXIT, NESTED };
enum ending { WAIT_AGAIN, RETURN, PARK };
struct boom {};

static action g_action[N + 1];
static int g_reason;              /* the cancel reason expected */
static pthread_t g_canceler;      /* the thread cancels are expected on */
static std::atomic<int> g_log[N]; /* +i: message i ran; -i: canceled */
static std::atomic<int> g_log_len, g_nested_logged, g_in_nested;
static std::atomic<int> g_bad_thread, g_bad_reason, g_ready, g_go, g_parked;
static mbx_handle g_owner, g_helper;
static pthread_t g_owner_thread;

static void log_event(int v) {
  int at = g_log_len++;
  CHECK(at < N);
  g_log[at] = v;
}

static void slow(void *) { sleep_ms(100); }

static void on_run(void *arg) {
  int i = (int)(intptr_t)arg;
  if (!pthread_equal(pthread_self(), g_owner_thread))
    g_bad_thread++;
  log_event(i);
  if (g_in_nested)
    g_nested_logged++;
  switch (g_action[i]) {
  case THROW:
    throw boom();
  case EXIT:
    pthread_exit(nullptr);
  case NESTED:
    g_in_nested = 1;
    CHECK(mbx_proxy_sync(g_helper, slow, nullptr) == MBX_OK);
    g_in_nested = 0;
    break;
  case PLAIN:
    break;
  }
}

static void on_cancel(void *arg, int reason) {
  if (!pthread_equal(pthread_self(), g_canceler))
    g_bad_thread++;
  if (reason != g_reason)
    g_bad_reason++;
  log_event(-(int)(intptr_t)arg);
}

static void *owner_main(void *arg) {
  ending how = (ending)(intptr_t)arg;
  g_owner = mbx_self();
  if (how == PARK)
    mbx__test_park_after_pop(&g_parked);
  g_ready = 1;
  while (!g_go)
    sched_yield();
  try {
    mbx_wait(-1);
  } catch (const boom &) {
    if (how == RETURN)
      return nullptr;
  }
  while (g_log_len < N)
    CHECK(mbx_wait(1000) >= 0);
  return nullptr;
}

static std::atomic<int> g_helper_stop;
static void stop_helper(void *) { g_helper_stop = 1; }
static void *helper_main(void *) {
  g_helper = mbx_self();
  g_ready = 1;
  while (!g_helper_stop)
    mbx_wait(-1);
  return nullptr;
}

/* Runs one case; expect[k] is the k-th logged event. replies: how many
 * messages of its own the owner may get besides ours (a blocked proxy
 * caller's reply). */
static void run_case(const char *name, ending how, const int *expect,
                     int replies = 0) {
  for (auto &e : g_log)
    e = 0;
  g_log_len = 0;
  g_nested_logged = g_in_nested = 0;
  g_bad_thread = g_bad_reason = 0;
  g_ready = g_go = g_parked = 0;
  CHECK(pthread_create(&g_owner_thread, nullptr, owner_main,
                       (void *)(intptr_t)how) == 0);
  while (!g_ready)
    sched_yield();
  mbx_handle h = g_owner;
  CHECK(mbx_hold(h) == MBX_OK); /* its counters outlive it */
  for (int i = 1; i <= N; i++)
    CHECK(mbx_send(h, on_run, on_cancel, (void *)(intptr_t)i) == MBX_OK);
  g_canceler = how == PARK ? pthread_self() : g_owner_thread;
  g_go = 1;
  if (how == PARK) {
    while (!g_parked)
      sched_yield();
    CHECK(mbx_mailbox_close_orphan(h) == N - 1);
  } else {
    CHECK(pthread_join(g_owner_thread, nullptr) == 0);
  }
  int canceled = 0;
  for (int k = 0; k < N; k++) {
    if (expect[k] == 0) {
      CHECK(g_log_len == k);
      break;
    }
    if (g_log[k] != expect[k])
      std::fprintf(stderr, "%s: event %d is %d, expected %d\n", name, k,
                   g_log[k].load(), expect[k]);
    CHECK(g_log[k] == expect[k]);
    canceled += expect[k] < 0;
  }
  CHECK(g_bad_thread == 0);
  CHECK(g_bad_reason == 0);
  mbx_stats s;
  CHECK(mbx_stats_get(h, &s) == MBX_OK);
  CHECK(s.canceled == (uint64_t)canceled);
  CHECK(s.pending == 0 && s.abandoned == 0 && s.dropped == 0);
  /* Ours, counted by us, and at most the owner's own replies. */
  CHECK(s.sent >= (uint64_t)N && s.sent <= (uint64_t)(N + replies));
  CHECK(mbx_release(h) == MBX_OK);
  std::printf("%s: ok (run %llu, canceled %llu)\n", name,
              (unsigned long long)s.run, (unsigned long long)s.canceled);
}

int main() {
  pthread_t helper;
  g_ready = 0;
  CHECK(pthread_create(&helper, nullptr, helper_main, nullptr) == 0);
  while (!g_ready)
    sched_yield();

  static const int all_run[N + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0};
  static const int exit_at_3[N + 1] = {1,  2,  3,   -4,  -5,  -6, -7,
                                       -8, -9, -10, -11, -12, 0};
  g_reason = MBX_CANCEL_THREAD_EXIT;

  g_action[3] = THROW;
  run_case("(a) throw, wait again", WAIT_AGAIN, all_run);
  g_action[3] = PLAIN;

  g_action[2] = NESTED;
  run_case("(b) nested drain", WAIT_AGAIN, all_run, 1);
  CHECK(g_nested_logged == N - 2);
  g_action[2] = PLAIN;

  g_action[3] = EXIT;
  run_case("(c) pthread_exit", WAIT_AGAIN, exit_at_3);
  g_action[3] = THROW;
  run_case("(d) throw, return", RETURN, exit_at_3);
  g_action[3] = PLAIN;

#ifndef __EMSCRIPTEN__
  static const int orphan[N + 1] = {-2, -3,  -4,  -5,  -6, -7, -8,
                                    -9, -10, -11, -12, 0,  0};
  g_reason = MBX_CANCEL_ABNORMAL_EXIT;
  run_case("(e) orphan", PARK, orphan);
#endif

  CHECK(mbx_send(g_helper, stop_helper, nullptr, nullptr) == MBX_OK);
  CHECK(pthread_join(helper, nullptr) == 0);
  std::puts("PASS");
  return 0;
}
