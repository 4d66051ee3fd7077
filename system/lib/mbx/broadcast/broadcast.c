/*
 * Starting a broadcast (<mbx/broadcast.h>): register it, snapshot the open
 * mailboxes and send each one a message, run fn inline; then, in the
 * blocking form, wait for the answers until a deadline and list the late
 * targets, or, in the callback form, return and let the last answer send
 * the report. Why each thread runs fn exactly once: broadcast/registry.c.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include "../core/layer.h"      /* mbx__wait: serving while blocked */
#include "../lifecycle/lifecycle.h"
#include "broadcast_internal.h"

#include <mbx/broadcast.h>
#include <mbx/proxy.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

/* Cleanup handler: the caller's thread ended inside its own run of fn
 * (pthread_exit, or canceled at a cancellation point in fn). That run
 * counts as done, as a target's does; the caller's count and, for a
 * blocking broadcast, its reference go, so that the broadcast completes
 * and is freed (and releases arg) when the targets have answered. Before,
 * it stayed registered for good, and every new thread ran fn as a
 * catch-up (test/thread/broadcast_caller_ends.c). */
static void caller_ended_in_fn(void *p) {
  mbx__bc *b = p;
  // Relaxed: a count, published by the unpend below.
  atomic_fetch_add_explicit(&b->done, 1, memory_order_relaxed);
  mbx__broadcast_unpend(b);
  if (!b->done_fn)
    mbx__broadcast_unref(b);
}

/* Registers, snapshots, sends and runs inline. Returns the broadcast with
 * its pending group still counting the caller (the caller unpends), or
 * NULL with *rc. release: see mbx_broadcast_with_release. */
static mbx__bc *start(mbx_run_fn fn, void *arg,
                      mbx_broadcast_release_fn release, int flags,
                      mbx_broadcast_done_fn done_fn, void *done_arg, int *rc) {
  mbx__lifecycle_link();
  mbx__bc *b = calloc(1, sizeof *b);
  if (!b) {
    *rc = MBX_ENOMEM;
    return NULL;
  }
  b->fn = fn;
  b->arg = arg;
  b->flags = flags;
  b->caller = mbx_self();
  b->done_fn = done_fn;
  b->done_arg = done_arg;
  /* Written before b is shared (registered, sent); read by the last
   * unref only. */
  b->release = release;
  mbx__lock_init(&b->mu);
  pthread_cond_init(&b->cv, NULL);
  /* A first guess of the slots, outside the lock. */
  uint32_t open = 0;
  mbx_mailboxes_list(NULL, 0, &open);
  b->nslots = open + 8;
  b->slots = malloc(sizeof *b->slots * b->nslots);
  mbx_handle *list = malloc(sizeof *list * b->nslots);
  if (!b->slots || !list) {
    free(list);
    mbx__lock_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->slots);
    free(b);
    *rc = MBX_ENOMEM;
    return NULL;
  }
  // Relaxed: not yet shared.
  atomic_init(&b->pending, 1);
  atomic_init(&b->refs,
              1 + (done_fn ? 0 : 1) + (flags & MBX_BROADCAST_PERSIST ? 1 : 0));
  /* Register before the snapshot: a thread whose mailbox opens after the
   * snapshot starts after this point and catches up. */
  mbx__broadcast_register(b);
  uint32_t n = 0;
  for (;;) {
    mbx_mailboxes_list(list, b->nslots, &n);
    if (n <= b->nslots)
      break;
    uint32_t want = n + 8;
    mbx_handle *l2 = realloc(list, sizeof *list * want);
    if (l2)
      list = l2;
    mbx__bc_slot *s2 = l2 ? realloc(b->slots, sizeof *b->slots * want) : NULL;
    if (!s2) { /* keep what fits; the rest count as failed */
      atomic_fetch_add_explicit(&b->failed, n - b->nslots,
                                memory_order_relaxed); // Relaxed: a count
      b->targets += n - b->nslots;
      n = b->nslots;
      break;
    }
    b->slots = s2;
    b->nslots = want;
  }
  uint32_t k = 0;
  /* Threads, not their queues (<mbx/queue.h>); a queue created while we
   * list may slip in, and then runs or cancels its copy like a thread. */
  for (uint32_t i = 0; i < n; i++)
    if (!mbx_handle_equal(list[i], b->caller) && !mbx__is_queue(list[i]))
      b->slots[k++] = (mbx__bc_slot){b, list[i], MBX__SLOT_PENDING};
  free(list);
  b->nslots = k;
  b->targets += k;
  // Relaxed: the sends below publish (release in mbx_send).
  atomic_fetch_add_explicit(&b->pending, k, memory_order_relaxed);
  for (uint32_t i = 0; i < k; i++) {
    int s = mbx_send(b->slots[i].target, mbx__broadcast_slot_run,
                     mbx__broadcast_slot_cancel, &b->slots[i]);
    if (s == MBX_ECLOSED || s == MBX_ESTALE)
      mbx__broadcast_resolve(&b->slots[i], MBX__SLOT_EXITED);
    else if (s != MBX_OK)
      mbx__broadcast_resolve(&b->slots[i], MBX__SLOT_FAILED);
  }
  if (!(flags & MBX_BROADCAST_SKIP_SELF)) {
    b->targets++;
    pthread_cleanup_push(caller_ended_in_fn, b);
    fn(arg);
    pthread_cleanup_pop(0);
    // Relaxed: a count, published by the unpend below.
    atomic_fetch_add_explicit(&b->done, 1, memory_order_relaxed);
  }
  *rc = MBX_OK;
  return b;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Cleanup handler: the caller's thread ended while it waited (a message it
 * ran while serving called pthread_exit, or reached a cancellation point
 * and the thread was canceled). Its reference goes, so the last answer
 * still frees the broadcast and runs its release; before, neither ever
 * happened (test/thread/broadcast_caller_ends.c). */
static void caller_ended(void *p) {
  mbx__bc *b = p;
  // Relaxed: as at the end of a wait; complete() copes with either value.
  atomic_store_explicit(&b->waiting, 0, memory_order_relaxed);
  mbx__broadcast_unref(b);
}

int mbx_broadcast(mbx_run_fn fn, void *arg, int flags, double timeout_ms,
                  mbx_broadcast_report *report, mbx_handle *late_out,
                  uint32_t late_capacity) {
  return mbx_broadcast_with_release(fn, arg, NULL, flags, timeout_ms, report,
                                    late_out, late_capacity);
}

int mbx_broadcast_with_release(mbx_run_fn fn, void *arg,
                               mbx_broadcast_release_fn release, int flags,
                               double timeout_ms, mbx_broadcast_report *report,
                               mbx_handle *late_out, uint32_t late_capacity) {
  if (!fn || (flags & ~(MBX_BROADCAST_SKIP_SELF | MBX_BROADCAST_PERSIST)))
    return MBX_EINVAL;
  if (timeout_ms != 0 && !mbx_proxy_may_block())
    return MBX_EWOULDBLOCK;
  int rc;
  mbx__bc *b = start(fn, arg, release, flags, NULL, NULL, &rc);
  if (!b)
    return rc;
  double deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
  // Seq_cst: Dekker pair with complete() in registry.c (store waiting, load
  // pending).
  atomic_store_explicit(&b->waiting, 1, memory_order_seq_cst);
  /* The caller's own count: may complete it right here. */
  mbx__broadcast_unpend(b);
  int serving = !mbx_handle_is_null(b->caller);
  pthread_cleanup_push(caller_ended, b);
  for (;;) {
    // Seq_cst: see above; acquire for the answers' counters.
    if (atomic_load_explicit(&b->pending, memory_order_seq_cst) == 0)
      break;
    double remaining = -1;
    if (timeout_ms == 0)
      break;
    if (timeout_ms > 0) {
      remaining = deadline - now_ms();
      if (remaining <= 0)
        break;
    }
    if (serving) {
      int w = mbx__wait(remaining, MBX__WAIT_NESTED_OK);
      if (w == MBX_ECLOSED || w == MBX_EPERM)
        serving = 0; /* our mailbox closed (runtime exit): just sleep */
      continue;
    }
    mbx__lock_acquire(&b->mu);
    // Seq_cst: as above.
    if (atomic_load_explicit(&b->pending, memory_order_seq_cst) != 0) {
      if (remaining < 0) {
        mbx__lock_wait(&b->mu, &b->cv, NULL);
      } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double add = remaining > 10 ? 10 : remaining; /* re-check */
        long ns = ts.tv_nsec + (long)(add * 1e6);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        mbx__lock_wait(&b->mu, &b->cv, &ts);
      }
    }
    mbx__lock_release(&b->mu);
  }
  pthread_cleanup_pop(0);
  // Relaxed: only complete() reads it, seq_cst there pairs with the loads.
  atomic_store_explicit(&b->waiting, 0, memory_order_relaxed);
  /* Every target answered (pending 0): whoever completed b, or a catch-up
   * that just unpended, may still be on its way out with its reference.
   * With a release to run, wait for them (a lock and a send at most), so
   * that arg is released before we return. */
  // Acquire (both loads): pairs with the unpends' and unrefs' RMWs.
  if (release && !(flags & MBX_BROADCAST_PERSIST) &&
      atomic_load_explicit(&b->pending, memory_order_acquire) == 0)
    while (atomic_load_explicit(&b->refs, memory_order_acquire) > 1)
      sched_yield();
  mbx_broadcast_report r;
  mbx__broadcast_fill_report(b, &r);
  if (late_out && r.late) {
    uint32_t j = 0;
    for (uint32_t i = 0; i < b->nslots && j < late_capacity; i++)
      // Acquire: pairs with resolve's release.
      if (atomic_load_explicit(&b->slots[i].status, memory_order_acquire) ==
          MBX__SLOT_PENDING)
        late_out[j++] = b->slots[i].target;
  }
  if (report)
    *report = r;
  mbx__broadcast_unref(b);
  if (r.late)
    return MBX_ETIMEDOUT;
  return r.failed ? MBX_EAGAIN : MBX_OK;
}

int mbx_broadcast_async(mbx_run_fn fn, void *arg, int flags,
                        mbx_broadcast_done_fn done, void *done_arg,
                        uint64_t *seq_out) {
  if (!fn || !done ||
      (flags & ~(MBX_BROADCAST_SKIP_SELF | MBX_BROADCAST_PERSIST)))
    return MBX_EINVAL;
  if (mbx_handle_is_null(mbx_self()))
    return MBX_EPERM;
  int rc;
  mbx__bc *b = start(fn, arg, NULL, flags, done, done_arg, &rc);
  if (!b)
    return rc;
  if (seq_out)
    *seq_out = b->seq;
  mbx__broadcast_unpend(b);
  return MBX_OK;
}
