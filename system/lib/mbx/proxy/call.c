/*
 * The caller side of proxying (<mbx/proxy.h>): sending a call to a target
 * thread and waiting for its outcome (serving the caller's own mailbox
 * meanwhile, or sleeping on the call's state), whether a thread may block,
 * and the layer's statistics. The target side is proxy/target.c.
 */
#include "proxy_internal.h"

#include <pthread.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/em_js.h>
#include <emscripten/threading.h>
#endif

static _Thread_local int tls_not_serving; /* 0 = default on */
static _Thread_local int tls_blocking = -1;

#ifdef __EMSCRIPTEN__
/* A web page's main thread cannot Atomics.wait; Node's main thread can. */
/* The body is JS: keep clang-format away from it. */
// clang-format off
EM_JS(int, mbx__js_on_web_page, (void), {
  return typeof window === 'object' ? 1 : 0;
});
// clang-format on
#endif

int mbx_proxy_may_block(void) {
  if (tls_blocking >= 0)
    return tls_blocking;
#ifdef __EMSCRIPTEN__
  if (emscripten_is_main_browser_thread() && mbx__js_on_web_page())
    return 0;
#endif
  return 1;
}

int mbx_proxy_set_blocking(int allowed) {
  int previous = tls_blocking;
  tls_blocking = allowed < 0 ? -1 : allowed != 0;
  return previous;
}

int mbx_proxy_set_serving(int on) {
  int previous = !tls_not_serving;
  tls_not_serving = !on;
  return previous;
}

/* Sleep on state (no serving) until it leaves `seen` or the deadline (or
 * a wake, or a spurious return: callers re-check). */
static void sleep_on_state(mbx_proxy_ctx *c, int32_t seen, double remaining) {
  if (mbx__spin_while_equal(&c->state, seen, remaining))
    return;
  // Seq_cst: see mbx__call_settle.
  atomic_store_explicit(&c->sleeper, 1, memory_order_seq_cst);
  mbx__platform_wait(&c->state, seen, remaining);
  mbx__spin_slept();
}

void mbx__call_wait_running(mbx_proxy_ctx *c) {
  int32_t s;
  // Acquire: pairs with mbx__call_settle; fn's effects are visible after.
  while ((s = atomic_load_explicit(&c->state, memory_order_acquire)) ==
         MBX__CALL_RUNNING)
    sleep_on_state(c, s, -1);
}

/* A serving caller saw the final state: no reply may outlive its return
 * (issue 18 item 8). No reply will be sent (WATCHING: our spin saw the
 * outcome; ARMED, which we move to SKIPPED; SKIPPED), or it was sent:
 * serve until it arrives. */
static void collect_reply(mbx_proxy_ctx *c) {
  if (mbx_handle_is_null(c->reply_to))
    return;
  /* A load first: mostly WATCHING, where a CAS would pull the line from a
   * reporter still in its unref. */
  // Acquire (load and CAS failure): pairs with the reporter's release of
  // SENT; the CAS's success needs none (the outcome was acquired through
  // state) but may not be weaker than failure.
  int32_t rs = atomic_load_explicit(&c->reply_state, memory_order_acquire);
  if (rs == MBX__REPLY_ARMED &&
      atomic_compare_exchange_strong_explicit(
          &c->reply_state, &rs, MBX__REPLY_SKIPPED, memory_order_acquire,
          memory_order_acquire)) {
    mbx__proxy_count(MBX__PROXY_REPLIES_SKIPPED);
    return;
  }
  int serving = 1;
  while (rs == MBX__REPLY_SENT) {
    /* The reply is in our mailbox or on its way: it runs (or a close of
     * our mailbox cancels it) within the wait. */
    if (serving) {
      int rc = mbx__wait(-1, MBX__WAIT_NESTED_OK);
      if (rc < 0 && rc != MBX_ETIMEDOUT)
        serving = 0; /* closed from outside: its closer cancels the reply */
    } else
      mbx__platform_yield();
    // Acquire: pairs with reply_arrived's release.
    rs = atomic_load_explicit(&c->reply_state, memory_order_acquire);
  }
}

/* Cleanup handler: the caller is canceled or exits while waiting. */
static void caller_unwinding(void *p) {
  mbx_proxy_ctx *c = p;
  /* If fn is running it may use the caller's stack: let it return first. */
  if (!mbx__call_settle(c, MBX__CALL_PENDING, MBX__CALL_ABANDONED)) {
    mbx__call_wait_running(c);
    /* Final: a reply still unsent need not be sent. One already sent holds
     * its own reference and is canceled with our mailbox. */
    int32_t rs = MBX__REPLY_ARMED;
    // Relaxed (both): only saves a message; no data is published.
    if (atomic_compare_exchange_strong_explicit(
            &c->reply_state, &rs, MBX__REPLY_SKIPPED, memory_order_relaxed,
            memory_order_relaxed) &&
        !mbx_handle_is_null(c->reply_to)) /* else no reply was due */
      mbx__proxy_count(MBX__PROXY_REPLIES_SKIPPED);
  }
  mbx__call_unref(c);
}

/* A sync call is counted live (mbx_proxy_stats calls_live) from the
 * moment it is not quick: *counted says whether it was. */
static void count_live(int *counted) {
  if (!*counted) {
    *counted = 1;
    mbx__proxy_count(MBX__PROXY_CALLS_NEW);
  }
}

/* The final state s seen while the record is still WATCHING: no reply
 * was or will be sent. A quick call (not counted) leaves the count of
 * that skipped reply to call_and_wait, which folds it into one counter. */
static int32_t outcome_watching(int32_t s, int counted) {
  if (counted)
    mbx__proxy_count(MBX__PROXY_REPLIES_SKIPPED);
  return s;
}

/* Returns the final state (DONE, CANCELED or ABANDONED). *counted is 0 if
 * the call was quick: a serving caller saw the final state while the
 * record was still WATCHING, before anything else. Only the caller then
 * ever knew of the call, so it was not counted live at all; counting it
 * cost two of a round trip's counter RMWs (issue 17). */
static int32_t wait_for_outcome(mbx_proxy_ctx *c, double timeout_ms,
                                int *counted) {
  double deadline = timeout_ms >= 0 ? mbx__platform_now_ms() + timeout_ms : 0;
  int serving = !mbx_handle_is_null(c->reply_to);
  int watched = 0;        /* spun on state once already */
  int just_spun = 0;      /* the next mbx__wait must not spin again */
  int watching = serving; /* reply_state is WATCHING (only we move that) */
  *counted = 0;
  if (!serving)
    count_live(counted);
  for (;;) {
    // Seq_cst: after a spin that handed the decision back (ARMED), our half
    // of the Dekker pair with the reporter (mbx__call_settle); it acquires
    // fn's effects on the target before our return.
    int32_t s = atomic_load_explicit(&c->state, memory_order_seq_cst);
    if (s == MBX__CALL_DONE || s == MBX__CALL_CANCELED) {
      if (watching)
        return outcome_watching(s, *counted);
      collect_reply(c);
      return s;
    }
    double remaining = -1; /* once fn started, only its end counts */
    if (timeout_ms >= 0 && s == MBX__CALL_PENDING) {
      remaining = deadline - mbx__platform_now_ms();
      if (remaining <= 0) {
        count_live(counted);
        if (mbx__call_settle(c, MBX__CALL_PENDING, MBX__CALL_ABANDONED))
          return MBX__CALL_ABANDONED;
        continue; /* just started: wait for it */
      }
    }
    if (serving && !watched) {
      /* First poll state itself for a spin budget: a quick answer then
       * costs neither a reply message nor a drain. Our mailbox waits
       * meanwhile (a spin is microseconds); the reply, if we hand the
       * decision back, wakes the mbx__wait below. The record started
       * WATCHING (mbx__call_new), and a spin that saw the outcome leaves it
       * so: the reporter sends nothing to WATCHING. */
      watched = just_spun = 1;
      int32_t hint = 0;
      if (mbx__spin_while_equal(&c->settled_hint, 0, remaining))
        // Acquire: pairs with the settler's release of the hint; fn's
        // effects are visible after.
        hint = atomic_load_explicit(&c->settled_hint, memory_order_acquire);
      int settled = hint == MBX__CALL_DONE || hint == MBX__CALL_CANCELED;
      if (!settled) {
        count_live(counted);
        /* Only we move WATCHING: a store. The loop then re-reads state.
         * Seq_cst: our half of the Dekker pair with the reporter (see the
         * load above). */
        atomic_store_explicit(&c->reply_state, MBX__REPLY_ARMED,
                              memory_order_seq_cst);
        watching = 0;
      }
      if (mbx__proxy_test_armed()) {
        mbx__proxy_test_spins_settled += settled;
        mbx__proxy_test_pause(&mbx__proxy_test_after_spin_ms);
      }
      /* Returning without another look at the record leaves its line to
       * the target, which is still writing it. */
      if (settled)
        return outcome_watching(hint, *counted);
      continue;
    }
    if (serving) {
      /* Runs our messages; the reply wakes it. A mailbox closed from
       * outside (runtime exit) cannot take the reply: sleep instead. */
      int rc = mbx__wait(remaining, MBX__WAIT_NESTED_OK | MBX__WAIT_CANCELABLE |
                                        (just_spun ? MBX__WAIT_NO_SPIN : 0));
      just_spun = 0;
      if (rc < 0 && rc != MBX_ETIMEDOUT)
        serving = 0;
    } else
      sleep_on_state(c, s, mbx__cancel_slice_ms(remaining));
    /* A blocking call is a cancellation point, also while asleep (the
     * sleeps above are cut into slices while cancellation is enabled). */
    pthread_testcancel();
  }
}

static int call_and_wait(mbx_handle target, int kind, mbx_run_fn fn,
                         mbx_proxy_ctx_fn ctx_fn, void *arg,
                         double timeout_ms) {
  if (!fn && !ctx_fn)
    return MBX_EINVAL;
  mbx_handle self = mbx_self();
  if ((!mbx_handle_is_null(self) && mbx_handle_equal(self, target)) ||
      mbx__queue_is_own(target)) /* drained only by us: <mbx/queue.h> */
    return MBX_EDEADLK;
  if (!mbx_proxy_may_block())
    return MBX_EWOULDBLOCK;
  /* Serve only an open mailbox: a closed one (a cancel function calling us
   * during exit) could not receive the reply. */
  int serve = !tls_not_serving && mbx__self_open();
  mbx_proxy_ctx *c = mbx__call_new(kind, serve ? self : MBX_NULL_HANDLE);
  if (!c)
    return MBX_ENOMEM;
  c->fn = fn;
  c->ctx_fn = ctx_fn;
  c->arg = arg;
  int rc = mbx_send(target, mbx__proxy_work_run, mbx__proxy_work_canceled, c);
  if (rc != MBX_OK) {
    mbx__proxy_count(MBX__PROXY_CALLS_NEW); /* the last unref counts it */
    mbx__call_unref(c);                     /* the work's reference */
    mbx__call_unref(c);                     /* ours */
    return rc;
  }
  mbx__proxy_unpark(); /* the call before ours, while the target works */
  int32_t outcome;
  int counted;
  pthread_cleanup_push(caller_unwinding, c);
  outcome = wait_for_outcome(c, timeout_ms, &counted);
  pthread_cleanup_pop(0);
  /* DONE was read with acquire: the finisher's status is visible. Only a
   * context's finisher sets one: a sync call leaves the line unread. */
  rc = outcome == MBX__CALL_DONE ? (kind == MBX__KIND_CTX ? c->status : MBX_OK)
       : outcome == MBX__CALL_CANCELED ? MBX_ECANCELED
                                       : MBX_ETIMEDOUT;
  if (!counted) { /* quick: no reply */
    mbx__proxy_park(c);
    if (rc == MBX_OK) {
      mbx__proxy_count(MBX__PROXY_SYNC_QUICK);
      return rc;
    }
    mbx__proxy_count(MBX__PROXY_REPLIES_SKIPPED);
  } else
    mbx__call_unref(c);
  if (rc == MBX_OK)
    mbx__proxy_count(MBX__PROXY_SYNC_DONE);
  else if (rc == MBX_ECANCELED)
    mbx__proxy_count(MBX__PROXY_SYNC_CANCELED);
  else if (rc == MBX_ETIMEDOUT && outcome != MBX__CALL_DONE)
    mbx__proxy_count(MBX__PROXY_SYNC_TIMED_OUT);
  return rc;
}

int mbx_proxy_sync(mbx_handle target, mbx_run_fn fn, void *arg) {
  return call_and_wait(target, MBX__KIND_SYNC, fn, NULL, arg, -1);
}

int mbx_proxy_sync_timed(mbx_handle target, mbx_run_fn fn, void *arg,
                         double timeout_ms) {
  return call_and_wait(target, MBX__KIND_SYNC, fn, NULL, arg, timeout_ms);
}

int mbx_proxy_sync_with_ctx(mbx_handle target, mbx_proxy_ctx_fn fn, void *arg) {
  return call_and_wait(target, MBX__KIND_CTX, NULL, fn, arg, -1);
}

int mbx_proxy_async(mbx_handle target, mbx_run_fn fn, mbx_cancel_fn cancel,
                    void *arg) {
  return mbx_send(target, fn, cancel, arg);
}

int mbx_proxy_callback(mbx_handle target, mbx_run_fn fn, mbx_run_fn on_done,
                       mbx_run_fn on_cancel, void *arg) {
  if (!fn)
    return MBX_EINVAL;
  mbx_handle self = mbx_self();
  if (mbx_handle_is_null(self))
    return MBX_EPERM;
  mbx_proxy_ctx *c = mbx__call_new(MBX__KIND_CALLBACK, self);
  if (!c)
    return MBX_ENOMEM;
  mbx__proxy_count(MBX__PROXY_CALLS_NEW);
  c->fn = fn;
  c->on_done = on_done;
  c->on_cancel = on_cancel;
  c->arg = arg;
  int rc = mbx_send(target, mbx__proxy_work_run, mbx__proxy_work_canceled, c);
  if (rc != MBX_OK) {
    mbx__call_unref(c); /* the work's */
    mbx__call_unref(c); /* ours */
    return rc;
  }
  /* Our reference stays on our list until our exit, which abandons the
   * work if it has not started (or it is pruned once settled). */
  mbx__proxy_callback_track(c);
  return MBX_OK;
}

void mbx_proxy_stats_get(mbx_proxy_stats *out) {
  /* Freed first, then new, and clamped: the shards are read one by one,
   * relaxed, while calls come and go. */
  uint64_t freed = mbx__proxy_counter_sum(MBX__PROXY_CALLS_FREED);
  uint64_t created = mbx__proxy_counter_sum(MBX__PROXY_CALLS_NEW);
  out->calls_live = created > freed ? created - freed : 0;
  uint64_t quick = mbx__proxy_counter_sum(MBX__PROXY_SYNC_QUICK);
  out->sync_done = mbx__proxy_counter_sum(MBX__PROXY_SYNC_DONE) + quick;
  out->sync_canceled = mbx__proxy_counter_sum(MBX__PROXY_SYNC_CANCELED);
  out->sync_timed_out = mbx__proxy_counter_sum(MBX__PROXY_SYNC_TIMED_OUT);
  out->abandoned = mbx__proxy_counter_sum(MBX__PROXY_ABANDONED);
  out->contexts_canceled = mbx__proxy_counter_sum(MBX__PROXY_CONTEXTS_CANCELED);
  out->callbacks_done = mbx__proxy_counter_sum(MBX__PROXY_CALLBACKS_DONE);
  out->callbacks_canceled =
      mbx__proxy_counter_sum(MBX__PROXY_CALLBACKS_CANCELED);
  out->callbacks_dropped = mbx__proxy_counter_sum(MBX__PROXY_CALLBACKS_DROPPED);
  out->replies_skipped =
      mbx__proxy_counter_sum(MBX__PROXY_REPLIES_SKIPPED) + quick;
  out->replies_canceled = mbx__proxy_counter_sum(MBX__PROXY_REPLIES_CANCELED);
}
