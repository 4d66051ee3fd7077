// mbx-test-args: --run-ms 50
// mbx-test-timeout: 120
/*
 * Runtime exit: main calls exit() while other threads still run. Every
 * mailbox is then closed and what is queued is canceled on main with
 * MBX_CANCEL_RUNTIME_EXIT, after the program's own atexit handlers:
 * - blocked targets (never poll, messages queued),
 * - a target stuck inside a long handler (the rest of its queue is taken
 *   over between pops and canceled; the one it runs counts as run): its
 *   messages are all queued before it drains, so that it pops many of them
 *   together with the one it gets stuck in (core/drain.c, mbx__batch), and
 *   those are canceled too,
 * - busy targets polling in a loop while two senders hammer them (the close
 *   races live pops and live sends),
 * - the main thread's own mailbox.
 * A check registered before the library's handler runs after it: it stops
 * the senders and busy targets, then verifies per message that each
 * accepted one was run or canceled exactly once and each refused one never,
 * and that every mailbox now refuses sends with MBX_ECLOSED.
 */
#include "check.h"
#include "test_threads.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

enum { BLOCKED = 4, BUSY = 2, SENDERS = 2, QUEUED = 50, MAX_IDS = 1 << 21 };
enum { TARGETS = BLOCKED + 1 + BUSY + 1 }; /* + stuck + main */
#define STUCK BLOCKED
#define MAIN (TARGETS - 1)

static mbx_handle g_targets[TARGETS];
static pthread_t g_main;
static _Atomic unsigned char g_accepted[MAX_IDS], g_handled[MAX_IDS];
static unsigned char g_target_of[MAX_IDS];
static _Atomic int g_next_id, g_duplicates, g_bad_cancels, g_stop;
static _Atomic int g_acks, g_ready, g_in_stuck_handler, g_stuck_go;
static _Atomic long g_run[TARGETS], g_canceled[TARGETS];

static void mark(uintptr_t id) {
  if (atomic_exchange(&g_handled[id], 1))
    atomic_fetch_add(&g_duplicates, 1);
}
static void on_run(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  mark(id);
  atomic_fetch_add(&g_run[g_target_of[id]], 1);
}
static void on_cancel(void *arg, int reason) {
  uintptr_t id = (uintptr_t)arg;
  if (reason != MBX_CANCEL_RUNTIME_EXIT ||
      !pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_bad_cancels, 1);
  mark(id);
  atomic_fetch_add(&g_canceled[g_target_of[id]], 1);
}

/* Send one numbered message to target; returns the send's code. */
static int send_numbered(int target, mbx_run_fn run) {
  int id = atomic_fetch_add(&g_next_id, 1);
  if (id >= MAX_IDS)
    return MBX_ENOMEM; /* out of ids: the caller stops */
  g_target_of[id] = (unsigned char)target;
  int rc = mbx_send(g_targets[target], run, on_cancel, (void *)(uintptr_t)id);
  if (rc == MBX_OK)
    atomic_store(&g_accepted[id], 1);
  return rc;
}

static void stuck_handler(void *arg) {
  on_run(arg);
  atomic_store(&g_in_stuck_handler, 1);
  for (;;)
    sleep_ms(10); /* never returns: ended by the runtime exit */
}
static void *stuck_target(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ready, 1);
  while (!atomic_load(&g_stuck_go))
    sched_yield();
  for (;;)
    mbx_wait(-1);
  return NULL;
}

static void *busy_target(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ready, 1);
  while (!atomic_load(&g_stop))
    mbx_poll();
  atomic_fetch_add(&g_acks, 1);
  return NULL;
}

static void *sender(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  int out_of_ids = 0;
  while (!atomic_load(&g_stop)) {
    if (out_of_ids) {
      sched_yield();
      continue;
    }
    seed = seed * 1103515245u + 12345u;
    int target = BLOCKED + 1 + (int)((seed >> 16) % BUSY);
    out_of_ids = send_numbered(target, on_run) == MBX_ENOMEM;
  }
  atomic_fetch_add(&g_acks, 1);
  return NULL;
}

/* Registered before the library's own handler (constructor priority), so
 * it runs after it. */
static void verify_at_exit(void) {
  atomic_store(&g_stop, 1);
  while (atomic_load(&g_acks) < BUSY + SENDERS)
    sched_yield();
  int ids = atomic_load(&g_next_id);
  if (ids > MAX_IDS)
    ids = MAX_IDS;
  long accepted = 0, lost = 0, phantom = 0;
  for (int id = 0; id < ids; id++) {
    int a = atomic_load(&g_accepted[id]), h = atomic_load(&g_handled[id]);
    accepted += a;
    lost += a && !h;
    phantom += !a && h;
  }
  for (int t = 0; t < TARGETS; t++)
    CHECK_EQ(mbx_send(g_targets[t], on_run, on_cancel, NULL), MBX_ECLOSED);
  long canceled = 0, run = 0;
  for (int t = 0; t < TARGETS; t++) {
    canceled += atomic_load(&g_canceled[t]);
    run += atomic_load(&g_run[t]);
  }
  CHECK_EQ(lost, 0);
  CHECK_EQ(phantom, 0);
  CHECK_EQ(atomic_load(&g_duplicates), 0);
  CHECK_EQ(atomic_load(&g_bad_cancels), 0);
  CHECK_EQ(run + canceled, accepted);
  for (int t = 0; t < BLOCKED; t++)
    CHECK_EQ(atomic_load(&g_canceled[t]), QUEUED);
  CHECK_EQ(atomic_load(&g_run[STUCK]), 1);
  CHECK_EQ(atomic_load(&g_canceled[STUCK]), QUEUED);
  CHECK_EQ(atomic_load(&g_canceled[MAIN]), QUEUED);
  printf("accepted=%ld run=%ld canceled-at-exit=%ld (busy targets: %ld) "
         "lost=0\n",
         accepted, run, canceled,
         atomic_load(&g_canceled[BLOCKED + 1]) +
             atomic_load(&g_canceled[BLOCKED + 2]));
  printf("PASS runtime_exit\n");
  fflush(stdout);
}

__attribute__((constructor(101))) static void register_verify(void) {
  atexit(verify_at_exit);
}

int main(int argc, char **argv) {
  long run_ms = arg_long(argc, argv, "--run-ms", 100);
  g_main = pthread_self();
  g_targets[MAIN] = mbx_main_thread();
  pthread_t t;
  for (int i = 0; i < TARGETS - 1; i++) {
    void *(*start)(void *) = i < BLOCKED  ? block_forever
                             : i == STUCK ? stuck_target
                                          : busy_target;
    CHECK_EQ(pthread_create(&t, NULL, start, (void *)&g_ready), 0);
    CHECK_EQ(pthread_detach(t), 0); /* never joined: exit() ends them */
    g_targets[i] = mbx_thread_handle(t);
    CHECK(!mbx_handle_is_null(g_targets[i]));
  }
  while (atomic_load(&g_ready) < TARGETS - 1)
    sched_yield();
  CHECK_EQ(send_numbered(STUCK, stuck_handler), MBX_OK);
  for (int t = 0; t < TARGETS; t++)
    if (t < BLOCKED || t == STUCK || t == MAIN)
      for (int i = 0; i < QUEUED; i++)
        CHECK_EQ(send_numbered(t, on_run), MBX_OK);
  atomic_store(&g_stuck_go, 1);
  while (!atomic_load(&g_in_stuck_handler))
    sched_yield();
  for (int i = 0; i < SENDERS; i++) {
    CHECK_EQ(pthread_create(&t, NULL, sender, (void *)(uintptr_t)(i + 1)), 0);
    CHECK_EQ(pthread_detach(t), 0);
  }
  sleep_ms((int)run_ms);
  exit(0); /* with threads blocked, stuck, polling and sending */
}
