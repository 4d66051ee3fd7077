// mbx-test-args: --messages 100000 --seed 8
// mbx-test-args-native-tsan: --messages 50000 --seed 9
// mbx-test-args-wasm: --messages 50000 --seed 12
// mbx-test-args-wasm-asan: --messages 10000 --seed 10 --lifetimes 300
// (TSan and ASan runs are ~20x slower; 3.1.6 wasm-asan leaks each exited
//  thread's stack, see churn.c, hence the lifetime cap.)
// mbx-test-timeout: 300
/*
 * Seeded torture run: senders send to a pool of handles (live targets,
 * targets that exited long ago, and the senders themselves) while the main
 * thread keeps creating targets that serve a random number of receive calls
 * and end at a random point: return, pthread_exit, pthread_cancel, or
 * pthread_exit from inside a message handler. Message kinds: async with a
 * cancel function, async without one (dropped at close), and sends the
 * sender then waits for (untimed or timed, serving its own mailbox while it
 * waits). Some sends are made under mbx_hold.
 *
 * Every message has an id and a state byte: the sender records its send's
 * result, the run or cancel function records its call, and a second call
 * or a call for a refused send fails at once. At the end, per message:
 * accepted and run, accepted and canceled, accepted and dropped (no cancel
 * function), or refused; and the library's counters agree.
 *   --messages N --seed S [--lifetimes L] (failure output names the seed)
 */
#include "../core/check.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define SENDERS 3
#define DIRECTORS 3 /* targets alive at a time */
#define POOL 24 /* archive slots: handles kept long after their thread died */

enum { F_OK = 1, F_REFUSED = 2, F_RUN = 4, F_CANCEL = 8 };
enum { K_ASYNC, K_NOCANCEL, K_WAIT, K_TIMED_WAIT, K_EXIT, K_COUNT };

static long g_messages, g_max_lifetimes;
static uint64_t g_seed;
static _Atomic unsigned char *g_flags;
static _Atomic uint64_t g_pool[POOL];
static _Atomic uint64_t g_current[DIRECTORS]; /* each director's live target */
static _Atomic uint64_t g_sender_handles[SENDERS];
static _Atomic long g_next_id, g_lifetimes, g_timed_out, g_held_sends;
static _Atomic int g_senders_done;
static _Thread_local int tls_is_target;

static void fail_seed(void) {
  fprintf(stderr, "torture failed: reproduce with --messages %ld --seed %llu\n",
          g_messages, (unsigned long long)g_seed);
}
#define TCHECK(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fail_seed();                                                             \
      CHECK(!#cond);                                                           \
    }                                                                          \
  } while (0)

static void mark(uintptr_t arg, unsigned char flag) {
  long id = (long)(arg >> 3);
  unsigned char prev = atomic_fetch_or(&g_flags[id], flag);
  /* one call per message, and never for a refused send */
  TCHECK(!(prev & (F_RUN | F_CANCEL | F_REFUSED)));
}

static void on_run(void *arg) {
  mark((uintptr_t)arg, F_RUN);
  if (((uintptr_t)arg & 7) == K_EXIT && tls_is_target)
    pthread_exit(NULL); /* ends the thread from inside a handler */
}
static void on_cancel(void *arg, int reason) {
  TCHECK(reason == MBX_CANCEL_THREAD_EXIT);
  mark((uintptr_t)arg, F_CANCEL);
}

static void publish(rng *r, mbx_handle h) {
  atomic_store(&g_pool[rng_below(r, POOL)], h.bits);
}

/* Mostly a current target, sometimes a sender (maybe ourselves), sometimes
 * an archived handle whose thread is probably long gone. */
static mbx_handle pick(rng *r) {
  uint32_t x = rng_below(r, 100);
  if (x < 70)
    return (mbx_handle){atomic_load(&g_current[rng_below(r, DIRECTORS)])};
  if (x < 80)
    return (mbx_handle){atomic_load(&g_sender_handles[rng_below(r, SENDERS)])};
  return (mbx_handle){atomic_load(&g_pool[rng_below(r, POOL)])};
}

/* Wait for message id to be run or canceled, serving our own mailbox. */
static void wait_done(long id, int timed) {
  for (long spins = 0;; spins++) {
    if (atomic_load(&g_flags[id]) & (F_RUN | F_CANCEL))
      return;
    mbx_poll();
    if (timed && spins > 200) {
      atomic_fetch_add(&g_timed_out, 1);
      return; /* gave up; the message's state is global, not on our stack */
    }
    sched_yield();
  }
}

static void *sender_main(void *arg) {
  rng r;
  rng_seed(&r, g_seed * 131 + (uintptr_t)arg);
  atomic_store(&g_sender_handles[(uintptr_t)arg], mbx_self().bits);
  for (;;) {
    long id = atomic_fetch_add(&g_next_id, 1);
    if (id >= g_messages)
      break;
    mbx_handle to = pick(&r);
    unsigned kind = rng_below(&r, 100);
    kind = kind < 62   ? K_ASYNC
           : kind < 72 ? K_NOCANCEL
           : kind < 84 ? K_WAIT
           : kind < 99 ? K_TIMED_WAIT
                       : K_EXIT;
    void *msg = (void *)(((uintptr_t)id << 3) | kind);
    int held = rng_below(&r, 16) == 0 && mbx_hold(to) == MBX_OK;
    int rc = mbx_send(to, on_run, kind == K_NOCANCEL ? NULL : on_cancel, msg);
    if (held) {
      /* a held record is never reused: a refusal can only be "closed" */
      TCHECK(rc == MBX_OK || rc == MBX_ECLOSED);
      TCHECK(mbx_release(to) == MBX_OK);
      atomic_fetch_add(&g_held_sends, 1);
    }
    TCHECK(rc == MBX_OK || rc == MBX_ECLOSED || rc == MBX_ESTALE ||
           rc == MBX_EINVAL /* an empty pool slot */);
    unsigned char prev =
        atomic_fetch_or(&g_flags[id], rc == MBX_OK ? F_OK : F_REFUSED);
    TCHECK(rc == MBX_OK || prev == 0);
    if (rc == MBX_OK && (kind == K_WAIT || kind == K_TIMED_WAIT))
      wait_done(id, kind == K_TIMED_WAIT);
    if ((id & 15) == 0)
      mbx_poll();
  }
  atomic_fetch_add(&g_senders_done, 1);
  return NULL; /* our mailbox closes: what is queued is canceled here */
}

typedef struct plan {
  int receives, how; /* how: 0 return, 1 pthread_exit, 2 canceled */
} plan;

static void *target_main(void *arg) {
  plan p = *(plan *)arg;
  tls_is_target = 1;
  /* receives < 0: the last lifetime allowed serves until senders are done */
  for (int i = 0; i < p.receives ||
                  (p.receives < 0 && atomic_load(&g_senders_done) < SENDERS);
       i++)
    if (mbx_wait(1) < 0)
      sched_yield();
  if (p.how == 1)
    pthread_exit(NULL);
  if (p.how == 2)
    for (;;)
      pthread_testcancel();
  return NULL;
}

/* The main thread creates and joins every target: on Emscripten 3.1.6 a
 * pthread_create from a worker is proxied to the main thread, which must
 * not be blocked in a join meanwhile. DIRECTORS targets live at a time. */
static void direct_targets(void) {
  rng r;
  rng_seed(&r, g_seed * 977);
  pthread_attr_t small_stack;
  pthread_attr_init(&small_stack);
  pthread_attr_setstacksize(&small_stack, 128 * 1024);
  while (atomic_load(&g_senders_done) < SENDERS) {
    pthread_t t[DIRECTORS];
    plan p[DIRECTORS];
    for (int i = 0; i < DIRECTORS; i++) {
      int last = atomic_fetch_add(&g_lifetimes, 1) >= g_max_lifetimes;
      p[i] = (plan){last ? -1 : (int)rng_below(&r, 200), (int)rng_below(&r, 3)};
      TCHECK(pthread_create(&t[i], &small_stack, target_main, &p[i]) == 0);
      mbx_handle h = mbx_thread_handle(t[i]);
      atomic_store(&g_current[i], h.bits);
      publish(&r, h);
      if (p[i].how == 2)
        TCHECK(pthread_cancel(t[i]) == 0);
    }
    for (int i = 0; i < DIRECTORS; i++)
      TCHECK(pthread_join(t[i], NULL) == 0);
  }
  pthread_attr_destroy(&small_stack);
}

int main(int argc, char **argv) {
  g_messages = arg_long(argc, argv, "--messages", 100000);
  g_seed = (uint64_t)arg_long(argc, argv, "--seed", 1);
  g_max_lifetimes = arg_long(argc, argv, "--lifetimes", 1000000);
  printf("torture seed=%llu messages=%ld\n", (unsigned long long)g_seed,
         g_messages);
  g_flags = calloc((size_t)g_messages, 1);
  CHECK(g_flags);
  mbx_stats before;
  mbx_stats_global(&before);
  pthread_t senders[SENDERS];
  for (uintptr_t i = 0; i < SENDERS; i++)
    CHECK_EQ(pthread_create(&senders[i], NULL, sender_main, (void *)i), 0);
  direct_targets();
  for (int i = 0; i < SENDERS; i++)
    CHECK_EQ(pthread_join(senders[i], NULL), 0);

  /* Handles kept long after their threads died: all refused, nothing runs. */
  for (int i = 0; i < POOL; i++) {
    mbx_handle h = {atomic_load(&g_pool[i])};
    int rc = mbx_send(h, on_run, on_cancel, (void *)0);
    TCHECK(rc == MBX_ECLOSED || rc == MBX_ESTALE || rc == MBX_EINVAL);
  }

  long ok = 0, refused = 0, run = 0, canceled = 0, dropped = 0;
  for (long id = 0; id < g_messages; id++) {
    unsigned char f = atomic_load(&g_flags[id]);
    if (f == F_REFUSED) {
      refused++;
    } else {
      TCHECK(f & F_OK);
      ok++;
      if (f == (F_OK | F_RUN))
        run++;
      else if (f == (F_OK | F_CANCEL))
        canceled++;
      else {
        TCHECK(f == F_OK); /* accepted, no cancel function, dropped */
        dropped++;
      }
    }
  }
  mbx_stats after;
  mbx_stats_global(&after);
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  long lib_refused = (long)((after.rejected_closed - before.rejected_closed) +
                            (after.rejected_stale - before.rejected_stale) +
                            (after.rejected_invalid - before.rejected_invalid));
  printf("sent=%ld run=%ld canceled=%ld dropped=%ld refused=%ld lifetimes=%ld "
         "timed_out_waits=%ld held_sends=%ld records_total=%llu\n",
         ok, run, canceled, dropped, refused, atomic_load(&g_lifetimes),
         atomic_load(&g_timed_out), atomic_load(&g_held_sends),
         (unsigned long long)m.records_total);
  TCHECK(ok + refused == g_messages);
  TCHECK(ok == run + canceled + dropped);
  TCHECK((long)(after.sent - before.sent) == ok);
  TCHECK((long)(after.run - before.run) == run);
  TCHECK((long)(after.canceled - before.canceled) == canceled);
  TCHECK((long)(after.dropped - before.dropped) == dropped);
  TCHECK(lib_refused == refused + POOL);
  TCHECK(after.pending == 0);
  TCHECK(m.nodes_live == 0);
  if (g_messages >= 10000)
    TCHECK(run > 0 && canceled > 0 && refused > 0);
  free((void *)g_flags);
  printf("PASS torture lost=%ld\n", ok - run - canceled - dropped);
  return 0;
}
