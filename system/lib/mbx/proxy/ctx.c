/*
 * Call records (mbx_proxy_ctx) of the proxy layer: their lifetime (reference
 * counts, a per-thread spare and a parked one), reporting an outcome
 * exactly once (settle), and the layer's registration with the core.
 *
 * Every call is a heap record, reference counted: the caller holds one
 * reference while it waits (a sync caller until its next call: see
 * tls_parked), the work message one (handed to the finisher
 * once a context function starts), the target's outstanding-context list
 * one, and a callback's outcome message one. Nothing is ever written to the
 * caller's stack, so callers that time out, are canceled or exit cannot be
 * hurt by a late completion.
 *
 * A blocked caller that serves its mailbox is woken by a reply message sent
 * to that mailbox (preallocated with the record, so the reply cannot fail
 * for lack of memory); one that does not (no mailbox, serving off, or
 * unwinding) sleeps on `state` itself.
 */
#include "proxy_internal.h"

#include <pthread.h>

/* ---- registration: only a program that uses the proxy layer links this
 * file, and it registers on its first call. */

/* One freed call record kept per thread that owns a mailbox (a sync caller
 * usually drops the last reference itself), so that a round trip does not
 * malloc and free: both take the allocator's lock, which the target's own
 * allocations contend for. Records dropped last elsewhere (by a target
 * that finished after its caller returned, or a thread that already has a
 * spare or no mailbox) go to a stash for the next caller: freed there, the
 * target's free and the caller's malloc met on that lock in about one
 * round trip in ten (profile of a serving caller, wasm). The spare keeps
 * its reply node if it was not sent, so that a serving caller's next call
 * needs none: it holds that node's block (one per thread) meanwhile. */
static _Thread_local mbx_proxy_ctx *tls_spare;
static mbx__stash g_spares;
/* tls_spare's words already hold a new call's values (record_reset). */
static _Thread_local int tls_spare_ready;

/* A quick sync call that returned (its caller's spin saw the outcome),
 * with the caller's reference still held: the thread drops it during its
 * next call, once that call's work is sent, while the target works on it,
 * or at its exit (issue 17). A caller that dropped it at once, and reused
 * the record for its next call, wrote the record's line while the target
 * was still in its settle, unref and bookkeeping, which come after the
 * hint that ends the caller's wait: each side then took the line from the
 * other on its own path. So a thread alternates between two records, and
 * touches the one its target just finished only while its target is busy
 * with the next. */
static _Thread_local mbx_proxy_ctx *tls_parked;

/* ---- test-only pauses (tests declare the setters; see core/test_hooks.c) */

_Atomic int mbx__proxy_test_hooks;
_Thread_local double mbx__proxy_test_after_spin_ms;
_Thread_local double mbx__proxy_test_before_reply_ms;
_Thread_local long mbx__proxy_test_spins_settled;

/* How many of the calling thread's spins on a call's state ended on the
 * outcome, counted once a test armed a pause. */
long mbx__test_proxy_spins_settled(void) {
  return mbx__proxy_test_spins_settled;
}

/* The calling thread's next serving sync call pauses ms milliseconds right
 * after its spin on the call's state, as a caller descheduled there would. */
void mbx__test_proxy_pause_after_spin_ms(double ms) {
  mbx__proxy_test_after_spin_ms = ms;
  // Relaxed: the calling thread arms its own next call.
  atomic_store_explicit(&mbx__proxy_test_hooks, 1, memory_order_relaxed);
}

/* The calling thread's next report of a final state pauses ms milliseconds
 * between writing the state and deciding on the reply message. */
void mbx__test_proxy_pause_before_reply_ms(double ms) {
  mbx__proxy_test_before_reply_ms = ms;
  // Relaxed: as above.
  atomic_store_explicit(&mbx__proxy_test_hooks, 1, memory_order_relaxed);
}

void mbx__proxy_test_pause(double *ms) {
  double left = *ms;
  *ms = 0;
  mbx__test_sleep_ms(left);
}

/* A record nobody references any more. Only the thread's spare keeps its
 * reply node (its block is this thread's): a stashed record may be taken
 * by a thread that does not serve. */
static void record_drop(mbx_proxy_ctx *c) {
  if (c->reply)
    mbx__node_free(c->reply);
  if (!mbx__stash_put(&g_spares, c))
    mbx__free_kept(c);
}

void mbx__proxy_cache_flush(void) {
  mbx__proxy_unpark();
  if (tls_spare)
    record_drop(tls_spare);
  tls_spare = NULL;
  tls_spare_ready = 0;
}

/* Made by the allocator being replaced: give all of it back. */
static void spares_free(void) {
  mbx__proxy_cache_flush();
  for (void *c; (c = mbx__stash_take(&g_spares)) != NULL;)
    mbx__free_kept(c);
}

static const mbx__layer_hooks g_hooks = {
    .on_close = mbx__proxy_on_close,
    .on_exit = mbx__proxy_on_exit,
    .on_orphan = mbx__proxy_on_orphan,
    .on_allocator_change = spares_free,
};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Set once registration is done: pthread_once's fast path is a CAS in
 * Emscripten's musl (its barrier), and a round trip took it five times. */
static _Atomic int g_registered;
static int g_layer = -1;    /* written once, read after g_registered */
static int g_counters = -1; /* first of our counters, or < 0: none */

static void layer_register(void) {
  g_layer = mbx__layer_register(&g_hooks);
  g_counters = mbx__counters_claim(MBX__PROXY_COUNTER_COUNT);
  // Release: a thread that sees the flag sees g_layer and g_counters.
  atomic_store_explicit(&g_registered, 1, memory_order_release);
}

static inline void ensure_registered(void) {
  // Acquire: pairs with layer_register's release.
  if (!atomic_load_explicit(&g_registered, memory_order_acquire))
    pthread_once(&g_once, layer_register);
}

int mbx__proxy_layer(void) {
  ensure_registered();
  return g_layer;
}

/* Counters: sharded by the core, so that a caller and its target do not
 * bounce one cache line per call. */
void mbx__proxy_count(int which) {
  ensure_registered();
  if (g_counters >= 0)
    mbx__counter_add(g_counters + which, 1);
}

uint64_t mbx__proxy_counter_sum(int which) {
  ensure_registered();
  return g_counters >= 0 ? mbx__counter_sum(g_counters + which) : 0;
}

/* ---- lifetime */

/* Set the words a call starts from. Plain stores (atomic_init): nobody
 * else references c, and the send's release publishes them; in wasm every
 * atomic store is a full barrier. */
static void record_reset(mbx_proxy_ctx *c) {
  atomic_init(&c->state, MBX__CALL_PENDING);
  atomic_init(&c->refs, 2); /* caller, work */
  atomic_init(&c->sleeper, 0);
  atomic_init(&c->settled_hint, 0);
  atomic_init(&c->reply_state,
              c->reply ? MBX__REPLY_WATCHING : MBX__REPLY_ARMED);
}

mbx_proxy_ctx *mbx__call_new(int kind, mbx_handle reply_to) {
  mbx__proxy_layer();
  mbx_proxy_ctx *c = tls_spare;
  mbx__node *reply = NULL;
  int ready = 0;
  if (c) {
    tls_spare = NULL;
    ready = tls_spare_ready;
    tls_spare_ready = 0;
    reply = c->reply; /* the spare kept its unsent reply node */
  } else if (!(c = mbx__stash_take(&g_spares)) &&
             !(c = mbx__alloc_kept(sizeof *c)))
    return NULL;
  if (mbx_handle_is_null(reply_to)) {
    if (reply)
      mbx__node_free(reply);
    reply = NULL;
  } else if (!reply && !(reply = mbx__node_alloc())) {
    mbx__free_kept(c);
    return NULL;
  }
  if (!ready || reply != c->reply) {
    c->reply = reply;
    record_reset(c);
  }
  c->kind = kind;
  c->status = MBX_OK;
  c->fn = NULL;
  c->ctx_fn = NULL;
  c->on_done = c->on_cancel = NULL;
  c->arg = NULL;
  c->reply_to = reply_to;
  c->next = NULL;
  c->caller_next = NULL;
  return c;
}

void mbx__call_ref(mbx_proxy_ctx *c) {
  // Relaxed: the caller already holds a reference.
  int32_t before = atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  MBX_ASSERT(before >= 1);
  (void)before;
}

/* Drop a reference; returns 1 if it was the last (c is gone then). */
static int call_release(mbx_proxy_ctx *c) {
  // Acq_rel: release our uses; the last one acquires everyone's.
  int32_t before = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
  MBX_ASSERT(before >= 1); /* refs never negative */
  if (before != 1)
    return 0;
  /* An unsent reply node stays with our spare: a serving caller's next call
   * needs one, and its free and alloc were each an RMW on its block's
   * count, which the target's release of the work's node also RMWs (issue
   * 17: a round trip moved that line twice). */
  if (!tls_spare && mbx__self_pending_word()) {
    tls_spare = c;
    tls_spare_ready = 0;
  } else
    record_drop(c);
  return 1;
}

void mbx__call_unref(mbx_proxy_ctx *c) {
  if (call_release(c))
    mbx__proxy_count(MBX__PROXY_CALLS_FREED);
}

/* Drop the caller's reference to a parked record, which was never counted
 * live: if ours is not the last, the last will count it freed, so count it
 * live now. Returns 1 if ours was the last. */
static int release_parked(mbx_proxy_ctx *c) {
  int last = call_release(c);
  if (!last)
    mbx__proxy_count(MBX__PROXY_CALLS_NEW);
  return last;
}

void mbx__proxy_park(mbx_proxy_ctx *c) {
  mbx_proxy_ctx *older = tls_parked; /* a call nested in ours parked it */
  tls_parked = c;
  if (older)
    release_parked(older);
}

void mbx__proxy_unpark(void) {
  mbx_proxy_ctx *c = tls_parked;
  if (!c)
    return;
  tls_parked = NULL;
  /* If ours was the last, it may be our spare now: set it up for the next
   * call here, while the target works, not on the round trip's path. */
  if (release_parked(c) && tls_spare == c && c->reply) {
    record_reset(c);
    tls_spare_ready = 1;
  }
}

/* ---- reporting an outcome */

/* The reply message, on the serving caller: it arrived (ran, or was
 * canceled by a close of the caller's mailbox). */
static void reply_arrived(void *p) {
  mbx_proxy_ctx *c = p;
  // Release: pairs with the caller's acquire load; it may return (and drop
  // its reference) once it sees ARRIVED, so we touch c only through our
  // own reference below.
  atomic_store_explicit(&c->reply_state, MBX__REPLY_ARRIVED,
                        memory_order_release);
  mbx__call_unref(c); /* the reply's */
}
static void reply_canceled(void *p, int reason) {
  (void)reason;
  mbx__proxy_count(MBX__PROXY_REPLIES_CANCELED);
  reply_arrived(p);
}

static void outcome_run(void *p) { /* on the callback's caller */
  mbx_proxy_ctx *c = p;
  // Acquire: fn's effects on the target happen before on_done.
  if (atomic_load_explicit(&c->state, memory_order_acquire) == MBX__CALL_DONE) {
    mbx__proxy_count(MBX__PROXY_CALLBACKS_DONE);
    if (c->on_done)
      c->on_done(c->arg);
  } else {
    mbx__proxy_count(MBX__PROXY_CALLBACKS_CANCELED);
    if (c->on_cancel)
      c->on_cancel(c->arg);
  }
  mbx__call_unref(c);
  mbx__proxy_callback_settled(); /* the caller's list may drop it now */
}

static void outcome_dropped(void *p, int reason) { /* the caller is exiting */
  (void)reason;
  mbx__proxy_count(MBX__PROXY_CALLBACKS_DROPPED);
  mbx__call_unref(p);
}

int mbx__call_settle(mbx_proxy_ctx *c, int32_t from, int32_t to) {
  // Seq_cst: the Dekker pair with a sleeping waiter (it sets `sleeper`,
  // then re-reads state in the futex wait; we write state, then read
  // `sleeper`). Also releases fn's effects to the waiter. Relaxed on
  // failure: the loser does nothing.
  if (!atomic_compare_exchange_strong_explicit(
          &c->state, &from, to, memory_order_seq_cst, memory_order_relaxed))
    return 0;
  if (to != MBX__CALL_DONE && to != MBX__CALL_CANCELED)
    return 1;
  // Release: the final state, after the CAS that made it final (and after
  // fn's effects): a caller that reads it with acquire need not read state.
  atomic_store_explicit(&c->settled_hint, to, memory_order_release);
  /* Every kind: a callback's caller sleeps here too, when its exit waits
   * for a running fn (callbacks_abandon); waking only sync waiters left
   * that exit asleep for good (test/thread/callback_caller_exit.c). */
  // Seq_cst: see above.
  if (atomic_load_explicit(&c->sleeper, memory_order_seq_cst))
    mbx__platform_wake_all(&c->state);
  mbx__node *reply = c->reply;
  c->reply = NULL; /* only the winner gets here */
  if (c->kind == MBX__KIND_CALLBACK) {
    reply->run = outcome_run;
    reply->cancel = outcome_dropped;
    reply->arg = c;
    mbx__call_ref(c); /* the outcome message's */
    if (mbx__send_node(c->reply_to, reply, 0) != MBX_OK) {
      mbx__node_free(reply);
      mbx__proxy_count(MBX__PROXY_CALLBACKS_DROPPED);
      mbx__call_unref(c);
    }
    return 1;
  }
  if (!reply)
    return 1;
  if (mbx__proxy_test_armed())
    mbx__proxy_test_pause(&mbx__proxy_test_before_reply_ms);
  /* A serving caller: send the reply only if it handed the decision to us
   * (ARMED). WATCHING: its spin sees the outcome, or ran out, and then the
   * caller moves to ARMED and re-reads state, which it finds final (the
   * Dekker pair: we write state, then load reply_state; it stores ARMED,
   * then loads state). SKIPPED: it saw the outcome first. */
  // Seq_cst: our half of that pair, after the seq_cst CAS on state.
  int32_t rs = atomic_load_explicit(&c->reply_state, memory_order_seq_cst);
  // Release: a caller that reads SENT then reads state, and must see the
  // final state we wrote above. Relaxed on failure: the caller moved
  // ARMED -> SKIPPED (it saw the outcome, or is unwinding).
  if (rs != MBX__REPLY_ARMED ||
      !atomic_compare_exchange_strong_explicit(
          &c->reply_state, &rs, MBX__REPLY_SENT, memory_order_release,
          memory_order_relaxed)) {
    c->reply = reply; /* unsent: freed with the record */
    return 1;         /* the caller counts it skipped (call.c) */
  }
  reply->run = reply_arrived;
  reply->cancel = reply_canceled;
  reply->arg = c;
  mbx__call_ref(c); /* the reply's: the caller waits for it to arrive */
  if (mbx__send_node(c->reply_to, reply, 0) != MBX_OK) {
    mbx__node_free(reply);
    /* Closed: the caller is unwinding, or its mailbox was closed from
     * outside while it waited in mbx__wait: mark the reply arrived and
     * wake that wait, which then sees it. */
    reply_arrived(c);
    mbx__mailbox_wake(c->reply_to);
  }
  return 1;
}
