// mbx-test-flavors: native native-tsan native-asan
// mbx-test-timeout: 60
/*
 * Issue 18 item 16: the closer of an orphan whose owner died inside a pop
 * (holding the consumer claim) must not block its thread for long (on
 * Emscripten it runs on the main thread's event loop; it used to busy-wait
 * 1 s and then abandon the queue with MBX_EBUSY), must take the queue over
 * and cancel everything queued, and the counters must account for every
 * accepted message. A thread parked forever inside the claim (test hook
 * mbx__test_pop_delay_ms) stands for the dead owner; it never runs again.
 */
#include "proxy_util.h"
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>

void mbx__test_pop_delay_ms(double ms, _Atomic int *in_claim);

enum { QUEUED = 5 };
static _Atomic int g_run, g_canceled, g_sent, g_parked, g_in_claim;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_run, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  CHECK_EQ(reason, MBX_CANCEL_ABNORMAL_EXIT);
  atomic_fetch_add(&g_canceled, 1);
}

static void *owner(void *arg) {
  (void)arg;
  wait_for_count(&g_sent, 1);
  mbx__test_pop_delay_ms(1e9, &g_in_claim); /* "dies" inside its next pop */
  atomic_store(&g_parked, 1);
  mbx_poll();
  return NULL;
}

int main(void) {
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, owner, NULL), 0);
  mbx_handle h = mbx_thread_handle(t);
  CHECK(!mbx_handle_is_null(h));
  CHECK_EQ(mbx_hold(h), MBX_OK); /* keep the stats readable */
  for (int i = 0; i < QUEUED; i++)
    CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_OK);
  atomic_store(&g_sent, 1);
  wait_for_count(&g_parked, 1);
  CHECK(wait_flag_ms(&g_in_claim, 10000)); /* inside the claim */
  double t0 = now_ms();
  int rc = mbx_mailbox_close_orphan(h);
  double took = now_ms() - t0;
  mbx_stats s;
  CHECK_EQ(mbx_stats_get(h, &s), MBX_OK);
  printf("close_orphan=%d in %.1f ms: run=%d canceled=%d sent=%llu "
         "pending=%llu abandoned=%llu\n",
         rc, took, atomic_load(&g_run), atomic_load(&g_canceled),
         (unsigned long long)s.sent, (unsigned long long)s.pending,
         (unsigned long long)s.abandoned);
  CHECK_EQ(rc, QUEUED);
  CHECK(took < 500);
  CHECK_EQ(atomic_load(&g_canceled), QUEUED);
  CHECK_EQ(atomic_load(&g_run), 0);
  CHECK_EQ(s.sent, QUEUED);
  CHECK_EQ(s.pending, 0);
  CHECK_EQ(mbx_send(h, on_run, on_cancel, NULL), MBX_ECLOSED);
  mbx_release(h);
  printf("PASS orphan_in_pop\n");
  fflush(stdout);
  _exit(0); /* the parked thread never returns */
}
