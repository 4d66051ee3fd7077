// mbx-test-args: --iterations 1000
// mbx-test-args-native-tsan: --iterations 500
// mbx-test-args-wasm: --iterations 300
// mbx-test-args-wasm-asan: --iterations 60
/*
 * Closing a mailbox from outside its owner (what runtime exit does, white
 * box: mbx__close_from_outside is internal). Each iteration: an owner polls
 * in a loop (or sleeps in mbx_wait), two senders hammer it, and after a
 * random delay another thread closes it from outside. The closer takes the
 * queue over between the owner's pops; afterwards the owner's drains report
 * MBX_ECLOSED (an owner asleep in mbx_wait(-1) is woken for it), its own
 * exit cancels nothing, and the record is retired.
 * Per message: accepted ones run or canceled exactly once, refused ones
 * never; cancels come from the closer with the reason it gave.
 */
/* First: its feature macros must come before any system header, and
 * layer.h includes <pthread.h>. */
#include "check.h"

#include "../../system/lib/mbx/core/layer.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

enum { SENDERS = 2, PER_SENDER = 400 };
enum { IDS = SENDERS * PER_SENDER };

static mbx_handle g_box;
static _Atomic unsigned char g_accepted[IDS], g_handled[IDS];
static _Atomic int g_duplicates, g_bad_cancels, g_owner_stop, g_bound;
static _Atomic int g_senders_started;
static _Atomic long g_runs, g_cancels, g_owner_ecl;
static pthread_t g_closer;
static int g_owner_waits;

static void mark(uintptr_t id) {
  if (atomic_exchange(&g_handled[id], 1))
    atomic_fetch_add(&g_duplicates, 1);
}
static void on_run(void *arg) {
  mark((uintptr_t)arg);
  atomic_fetch_add(&g_runs, 1);
}
static void on_cancel(void *arg, int reason) {
  if (reason != MBX_CANCEL_RUNTIME_EXIT ||
      !pthread_equal(pthread_self(), g_closer))
    atomic_fetch_add(&g_bad_cancels, 1);
  mark((uintptr_t)arg);
  atomic_fetch_add(&g_cancels, 1);
}

static void *owner(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_thread_bind(g_box), MBX_OK);
  atomic_store(&g_bound, 1);
  while (!atomic_load(&g_owner_stop)) {
    /* Waiting forever: the closer must wake it (it sees the close). */
    int rc = g_owner_waits ? mbx_wait(-1) : mbx_poll();
    if (rc == MBX_ECLOSED)
      atomic_fetch_add(&g_owner_ecl, 1);
    else
      CHECK(rc >= 0 || rc == MBX_ETIMEDOUT);
  }
  /* Already closed from outside: nothing left for the owner to cancel. */
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  return NULL;
}

static void *sender(void *arg) {
  uintptr_t first = (uintptr_t)arg * PER_SENDER;
  atomic_fetch_add(&g_senders_started, 1);
  for (uintptr_t id = first; id < first + PER_SENDER; id++) {
    int rc = mbx_send(g_box, on_run, on_cancel, (void *)id);
    if (rc == MBX_OK)
      atomic_store(&g_accepted[id], 1);
    else
      CHECK_EQ(rc, MBX_ECLOSED);
  }
  return NULL;
}

int main(int argc, char **argv) {
  long iterations = arg_long(argc, argv, "--iterations", 2000);
  uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 7);
  rng r;
  rng_seed(&r, seed);
  g_closer = pthread_self();
  long total_accepted = 0, total_canceled = 0, mid_stream = 0;
  for (long it = 0; it < iterations; it++) {
    for (int i = 0; i < IDS; i++) {
      atomic_store(&g_accepted[i], 0);
      atomic_store(&g_handled[i], 0);
    }
    atomic_store(&g_runs, 0);
    atomic_store(&g_cancels, 0);
    atomic_store(&g_owner_stop, 0);
    atomic_store(&g_bound, 0);
    atomic_store(&g_senders_started, 0);
    g_owner_waits = (int)rng_below(&r, 2);
    CHECK_EQ(mbx_mailbox_create(&g_box), MBX_OK);
    pthread_t o, s[SENDERS];
    CHECK_EQ(pthread_create(&o, NULL, owner, NULL), 0);
    while (!atomic_load(&g_bound))
      sched_yield();
    for (uintptr_t i = 0; i < SENDERS; i++)
      CHECK_EQ(pthread_create(&s[i], NULL, sender, (void *)i), 0);
    /* Close at a random point of the senders' streams. */
    while (atomic_load(&g_senders_started) < SENDERS)
      sched_yield();
    for (uint32_t spin = rng_below(&r, 20000); spin; spin--)
      atomic_signal_fence(memory_order_seq_cst);
    int canceled = mbx__close_from_outside(g_box, MBX_CANCEL_RUNTIME_EXIT);
    CHECK(canceled >= 0);
    CHECK_EQ(mbx__close_from_outside(g_box, MBX_CANCEL_RUNTIME_EXIT),
             MBX_ECLOSED);
    for (int i = 0; i < SENDERS; i++)
      CHECK_EQ(pthread_join(s[i], NULL), 0);
    atomic_store(&g_owner_stop, 1);
    CHECK_EQ(pthread_join(o, NULL), 0);
    long accepted = 0;
    for (int i = 0; i < IDS; i++) {
      int a = atomic_load(&g_accepted[i]), h = atomic_load(&g_handled[i]);
      CHECK_EQ(a, h); /* accepted: handled once; refused: never */
      accepted += a;
    }
    CHECK_EQ(atomic_load(&g_duplicates), 0);
    CHECK_EQ(atomic_load(&g_bad_cancels), 0);
    CHECK_EQ(atomic_load(&g_cancels), canceled);
    CHECK_EQ(atomic_load(&g_runs) + atomic_load(&g_cancels), accepted);
    CHECK_EQ(mbx_send(g_box, on_run, on_cancel, NULL), MBX_ECLOSED);
    total_accepted += accepted;
    total_canceled += canceled;
    mid_stream += canceled > 0 && accepted < IDS;
  }
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  CHECK_EQ(m.nodes_live, 0);
  CHECK(m.records_total <= 70); /* records retired and reused */
  printf("iterations=%ld accepted=%ld canceled-by-closer=%ld closes that "
         "cut a live stream=%ld owner drains refused=%ld records=%llu\n",
         iterations, total_accepted, total_canceled, mid_stream,
         atomic_load(&g_owner_ecl), (unsigned long long)m.records_total);
  printf("PASS close_from_outside\n");
  return 0;
}
