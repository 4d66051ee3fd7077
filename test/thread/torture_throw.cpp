// mbx-test-cxxflags: -fexceptions
// mbx-test-args: --messages 10000 --seed 5
// mbx-test-args-native-tsan: --messages 4000 --seed 6
// mbx-test-args-native-asan: --messages 4000 --seed 7
// mbx-test-args-wasm: --messages 5000 --seed 8
// mbx-test-args-wasm-asan: --messages 1500 --seed 9
// mbx-test-timeout: 300
/*
 * Seeded torture run for handlers that throw (issue 18 item 3, the C++
 * companion of torture.c). Two senders send to the targets alive now: by
 * mbx_send (with a cancel function), mbx_proxy_sync and mbx_proxy_callback,
 * and a random tenth of the run functions and proxied fns throw. Each
 * target lives for a random number of drains, then returns: it serves its
 * mailbox with mbx_wait or mbx_poll, or a queue of its own (<mbx/queue.h>)
 * with mbx_queue_wait and mbx_queue_poll by turns (and its mailbox with
 * mbx_poll), every drain inside try/catch. The rule of <mbx/mailbox.h>:
 * the exception leaves the drain, the message counts as run, the next
 * drain goes on; a sync fn that threw gives its caller MBX_ECANCELED when
 * the target exits at the latest (a callback: on_cancel). Checks: every
 * accepted message is run or canceled exactly once, every sync caller
 * returns (MBX_OK only if fn ran and returned), every throw is caught once,
 * no drain returns MBX_EBUSY, and the library's counters balance.
 *   --messages N --seed S   (failure output names the seed)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_tryjoin_np */
#endif
#include "check.h"
#include "watchdog.h"

#include <atomic>
#include <mbx/proxy.h>
#include <mbx/queue.h>
#include <mbx/thread.h>
#include <sched.h>

#define SENDERS 2
#define SLOTS 3 /* targets alive at a time */

namespace {

struct boom {};

enum : unsigned {
  F_ACCEPTED = 1,
  F_REFUSED = 2,
  F_RUN = 4,
  F_THREW = 8,
  F_CANCEL = 16,
  F_CB_DONE = 32,
  F_CB_CANCEL = 64,
  F_SYNC_OK = 128,
  F_SYNC_CANCELED = 256,
};
enum : unsigned char { K_SEND, K_SYNC, K_CALLBACK, K_THROWS = 4 };

long g_messages;
unsigned long long g_seed;
std::atomic<unsigned> *g_flags;
unsigned char *g_meta; /* id -> kind | K_THROWS */
std::atomic<long> g_next_id{0}, g_caught{0}, g_busy{0};
std::atomic<int> g_senders_done{0};
std::atomic<uint64_t> g_thread[SLOTS], g_queue[SLOTS]; /* handles now */
thread_local long tls_callbacks_outstanding;

void fail_seed() {
  fprintf(stderr,
          "torture_throw failed: reproduce with --messages %ld "
          "--seed %llu\n",
          g_messages, g_seed);
}
#define TCHECK(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fail_seed();                                                             \
      CHECK(!#cond);                                                           \
    }                                                                          \
  } while (0)

void *arg_of(long id) { return reinterpret_cast<void *>(id); }
long id_of(void *arg) { return reinterpret_cast<long>(arg); }

/* run, or a proxied fn: on a target, inside one of its drains */
void on_run(void *arg) {
  long id = id_of(arg);
  unsigned prev = g_flags[id].fetch_or(F_RUN);
  TCHECK(!(prev & (F_RUN | F_CANCEL | F_REFUSED | F_SYNC_CANCELED)));
  if (g_meta[id] & K_THROWS) {
    g_flags[id].fetch_or(F_THREW);
    throw boom();
  }
}
void on_cancel(void *arg, int reason) {
  TCHECK(reason == MBX_CANCEL_THREAD_EXIT);
  unsigned prev = g_flags[id_of(arg)].fetch_or(F_CANCEL);
  TCHECK(!(prev & (F_RUN | F_CANCEL | F_REFUSED)));
}
/* A callback's outcome, on its caller: on_done only if fn returned. */
void outcome(void *arg, unsigned flag) {
  TCHECK(tls_callbacks_outstanding-- > 0);
  unsigned prev = g_flags[id_of(arg)].fetch_or(flag);
  TCHECK(!(prev & (F_CB_DONE | F_CB_CANCEL)));
  if (flag == F_CB_DONE)
    TCHECK((prev & F_RUN) && !(prev & F_THREW));
  else
    TCHECK(!(prev & F_RUN) || (prev & F_THREW));
}
void on_done(void *arg) { outcome(arg, F_CB_DONE); }
void on_cb_cancel(void *arg) { outcome(arg, F_CB_CANCEL); }

void *sender_main(void *arg) {
  rng r;
  rng_seed(&r, g_seed * 131 + reinterpret_cast<uintptr_t>(arg));
  for (;;) {
    long id = g_next_id.fetch_add(1);
    if (id >= g_messages)
      break;
    int slot = (int)rng_below(&r, SLOTS);
    mbx_handle to = {rng_below(&r, 2) ? g_queue[slot].load() : 0};
    if (mbx_handle_is_null(to))
      to.bits = g_thread[slot].load();
    unsigned x = rng_below(&r, 4);
    unsigned kind = x < 2 ? K_SEND : x == 2 ? K_SYNC : K_CALLBACK;
    g_meta[id] = (unsigned char)(kind | (rng_below(&r, 10) ? 0 : K_THROWS));
    int rc;
    if (kind == K_SEND) {
      rc = mbx_send(to, on_run, on_cancel, arg_of(id));
    } else if (kind == K_SYNC) {
      rc = mbx_proxy_sync(to, on_run, arg_of(id));
      if (rc == MBX_OK || rc == MBX_ECANCELED) {
        unsigned prev = g_flags[id].fetch_or(
            F_ACCEPTED | (rc == MBX_OK ? F_SYNC_OK : F_SYNC_CANCELED));
        if (rc == MBX_OK) /* fn ran and returned */
          TCHECK(prev == F_RUN);
        else /* fn never ran and never will, or it threw */
          TCHECK(prev == 0 || prev == (F_RUN | F_THREW));
        continue;
      }
    } else {
      tls_callbacks_outstanding++; /* on_done may run inside the call */
      rc = mbx_proxy_callback(to, on_run, on_done, on_cb_cancel, arg_of(id));
      if (rc != MBX_OK)
        tls_callbacks_outstanding--;
    }
    TCHECK(rc == MBX_OK || rc == MBX_ECLOSED || rc == MBX_ESTALE ||
           rc == MBX_EINVAL /* no target in the slot yet */);
    unsigned prev = g_flags[id].fetch_or(rc == MBX_OK ? F_ACCEPTED : F_REFUSED);
    TCHECK(rc == MBX_OK || prev == 0);
    if (rc != MBX_OK) /* the slot's target is gone: wait for the next */
      sleep_ms(0.1);
    if ((id & 15) == 0)
      mbx_poll();
  }
  while (tls_callbacks_outstanding > 0) /* the targets all end */
    mbx_wait(1);
  g_senders_done.fetch_add(1);
  return nullptr;
}

/* A drain inside try/catch: a throw is caught here, once; MBX_EBUSY never. */
template <class F> void drain(F f) {
  try {
    if (f() == MBX_EBUSY)
      g_busy.fetch_add(1);
  } catch (const boom &) {
    g_caught.fetch_add(1);
  }
}

enum { S_WAIT, S_POLL, S_QUEUE };
struct plan {
  int slot, how, drains;
};

void *target_main(void *arg) {
  plan p = *static_cast<plan *>(arg);
  mbx_handle q = MBX_NULL_HANDLE;
  if (p.how == S_QUEUE) {
    TCHECK(mbx_queue_create(&q) == MBX_OK);
    g_queue[p.slot].store(q.bits);
  }
  for (int i = 0; i < p.drains; i++) {
    if (p.how == S_WAIT) {
      drain([] { return mbx_wait(1); });
    } else if (p.how == S_POLL) {
      drain([] { return mbx_poll(); });
      sleep_ms(0.5); /* lives about as long as a waiting target */
    } else {
      drain([&] { return i % 2 ? mbx_queue_poll(q) : mbx_queue_wait(q, 1); });
      drain([] { return mbx_poll(); });
    }
  }
  /* sync calls whose fn threw get MBX_ECANCELED now, at the latest */
  return nullptr;
}

struct slot_state {
  pthread_t thread;
  plan p;
  bool live;
};

} // namespace

int main(int argc, char **argv) {
  g_messages = arg_long(argc, argv, "--messages", 10000);
  g_seed = (unsigned long long)arg_long(argc, argv, "--seed", 1);
  printf("torture_throw seed=%llu messages=%ld\n", g_seed, g_messages);
  watchdog_start(240000, "torture_throw");
  g_flags = new std::atomic<unsigned>[g_messages]();
  g_meta = new unsigned char[g_messages]();
  mbx_stats before;
  mbx_stats_global(&before);
  mbx_proxy_stats pbefore;
  mbx_proxy_stats_get(&pbefore);
  rng r;
  rng_seed(&r, g_seed * 977);
  pthread_t senders[SENDERS];
  slot_state slots[SLOTS] = {};
  long lifetimes = 0;
  for (int live = 1, i = 0; live || i == 0; i++) {
    bool senders_done = g_senders_done.load() == SENDERS;
    live = 0;
    for (int s = 0; s < SLOTS; s++) {
      slot_state &t = slots[s];
      if (t.live && pthread_tryjoin_np(t.thread, nullptr) == 0)
        t.live = false;
      if (!t.live && !senders_done) {
        t.p = plan{s, (int)rng_below(&r, 3), 1 + (int)rng_below(&r, 60)};
        g_queue[s].store(0);
        TCHECK(pthread_create(&t.thread, nullptr, target_main, &t.p) == 0);
        g_thread[s].store(mbx_thread_handle(t.thread).bits);
        t.live = true;
        lifetimes++;
      }
      live += t.live;
    }
    if (i == 0) /* the first targets exist */
      for (uintptr_t k = 0; k < SENDERS; k++)
        CHECK_EQ(pthread_create(&senders[k], nullptr, sender_main,
                                reinterpret_cast<void *>(k)),
                 0);
    live += !senders_done;
    sleep_ms(0.2);
  }
  for (int k = 0; k < SENDERS; k++)
    CHECK_EQ(pthread_join(senders[k], nullptr), 0);

  long accepted = 0, refused = 0, runs = 0, threw = 0, canceled = 0;
  long sync_ok = 0, sync_canceled = 0, cb_done = 0, cb_canceled = 0;
  for (long id = 0; id < g_messages; id++) {
    unsigned f = g_flags[id].load(), kind = g_meta[id] & 3;
    if (f == F_REFUSED) {
      refused++;
      continue;
    }
    TCHECK(f & F_ACCEPTED);
    accepted++;
    runs += (f & F_RUN) != 0;
    threw += (f & F_THREW) != 0;
    TCHECK(!(f & F_THREW) || (g_meta[id] & K_THROWS));
    if (kind == K_SEND) { /* exactly one of run and cancel */
      TCHECK(f == (F_ACCEPTED | F_CANCEL) ||
             (f & ~F_THREW) == (F_ACCEPTED | F_RUN));
      canceled += (f & F_CANCEL) != 0;
    } else if (kind == K_SYNC) {
      sync_ok += (f & F_SYNC_OK) != 0;
      sync_canceled += (f & F_SYNC_CANCELED) != 0;
    } else {
      TCHECK(f & (F_CB_DONE | F_CB_CANCEL));
      cb_done += (f & F_CB_DONE) != 0;
      cb_canceled += (f & F_CB_CANCEL) != 0;
    }
  }
  mbx_stats after;
  mbx_stats_global(&after);
  mbx_proxy_stats pafter;
  mbx_proxy_stats_get(&pafter);
  printf("accepted=%ld refused=%ld run=%ld (threw %ld, caught %ld) "
         "canceled=%ld sync: ok=%ld canceled=%ld callbacks: done=%ld "
         "canceled=%ld lifetimes=%ld ebusy=%ld\n",
         accepted, refused, runs, threw, g_caught.load(), canceled, sync_ok,
         sync_canceled, cb_done, cb_canceled, lifetimes, g_busy.load());
  TCHECK(accepted + refused == g_messages);
  TCHECK(threw == g_caught.load()); /* every throw left its drain, once */
  TCHECK(g_busy.load() == 0);
  TCHECK(pafter.calls_live == 0);
  TCHECK((long)(pafter.sync_done - pbefore.sync_done) == sync_ok);
  TCHECK((long)(pafter.sync_canceled - pbefore.sync_canceled) == sync_canceled);
  TCHECK((long)(pafter.callbacks_done - pbefore.callbacks_done) == cb_done);
  TCHECK((long)(pafter.callbacks_canceled - pbefore.callbacks_canceled) ==
         cb_canceled);
  TCHECK(after.pending == 0);
  TCHECK(after.sent - before.sent ==
         (after.run - before.run) + (after.canceled - before.canceled) +
             (after.dropped - before.dropped) + after.pending - before.pending +
             (after.abandoned - before.abandoned));
  if (g_messages >= 2000)
    TCHECK(threw > 0 && canceled > 0 && sync_ok > 0 && sync_canceled > 0 &&
           cb_done > 0 && cb_canceled > 0);
  delete[] g_flags;
  delete[] g_meta;
  printf("PASS torture_throw\n");
  return 0;
}
