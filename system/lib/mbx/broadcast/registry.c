/*
 * Broadcast registry: the broadcasts in flight, from registration to
 * completion (sequence numbers, pending counts, references), each target's
 * answer (its message's run or cancel), and the catch-up a starting thread
 * runs (mbx__broadcast_catch_up).
 *
 * Exactly once per thread. A broadcast is registered (sequence number s,
 * under g_mu) before its snapshot, so a thread whose mailbox is open at
 * the snapshot is a target, and a thread that starts while s is registered
 * runs s in its catch-up. A thread can be both (its mailbox opens in
 * pthread_create, before it starts). Its catch-up takes, under g_mu, every
 * registered broadcast and the highest sequence number given out so far
 * (tls_caught_up_to); a message for s <= tls_caught_up_to then runs fn only
 * if the catch-up has not (yet) run it, and marks it run. A message for
 * s > tls_caught_up_to cannot be in the catch-up, so it runs. A broadcast
 * not registered at catch-up but with s <= tls_caught_up_to was complete,
 * so every target had answered: this thread was not one.
 */
#include "../lifecycle/lifecycle.h"
#include "broadcast_internal.h"

#include <mbx/broadcast.h>
#include <pthread.h>
#include <stdlib.h>

static mbx__lock g_mu = MBX__LOCK_INITIALIZER;
static mbx__bc *g_head, *g_tail;
static uint64_t g_last_seq;

/* The calling thread's catch-up (see the top comment). */
typedef struct catchup_item {
  mbx__bc *b;
  int counted; /* took a pending count */
  int ran;
} catchup_item;
static _Thread_local uint64_t tls_caught_up_to;
static _Thread_local catchup_item *tls_items;
static _Thread_local uint32_t tls_nitems;

void mbx__broadcast_register(mbx__bc *b) {
  mbx__lock_acquire(&g_mu);
  b->seq = ++g_last_seq;
  b->registered = 1;
  if (g_tail)
    g_tail->next = b;
  else
    g_head = b;
  g_tail = b;
  mbx__lock_release(&g_mu);
}

void mbx__broadcast_unref(mbx__bc *b) {
  // Acq_rel: the last owner sees every other owner's writes before freeing.
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  /* Every target answered, every catch-up returned, and a persistent one
   * was retired: fn can no longer run anywhere. */
  if (b->release)
    b->release(b->arg);
  mbx__lock_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b->slots);
  free(b);
}

void mbx__broadcast_fill_report(mbx__bc *b, mbx_broadcast_report *r) {
  r->seq = b->seq;
  r->targets = b->targets;
  // Relaxed: counters; the caller read pending with acquire when it matters.
  r->done = atomic_load_explicit(&b->done, memory_order_relaxed);
  r->exited = atomic_load_explicit(&b->exited, memory_order_relaxed);
  r->failed = atomic_load_explicit(&b->failed, memory_order_relaxed);
  r->caught_up = atomic_load_explicit(&b->caught_up, memory_order_relaxed);
  uint32_t answered = r->done + r->exited + r->failed;
  r->late = r->targets > answered ? r->targets - answered : 0;
}

static void noop(void *arg) { (void)arg; }

/* On the caller, from its mailbox (callback form). */
static void done_run(void *p) {
  mbx__bc *b = p;
  mbx_broadcast_report r;
  mbx__broadcast_fill_report(b, &r);
  b->done_fn(&r, b->done_arg);
  mbx__broadcast_unref(b);
}
static void done_cancel(void *p, int reason) {
  (void)reason;
  mbx__broadcast_unref(p);
}

static void complete(mbx__bc *b) {
  if (!(b->flags & MBX_BROADCAST_PERSIST)) {
    mbx__lock_acquire(&g_mu);
    if (b->registered) {
      b->registered = 0;
      mbx__bc **p = &g_head;
      mbx__bc *prev = NULL;
      while (*p != b) {
        prev = *p;
        p = &(*p)->next;
      }
      *p = b->next;
      if (g_tail == b)
        g_tail = prev;
    }
    mbx__lock_release(&g_mu);
  }
  if (b->done_fn) {
    /* The pending group's reference goes with the message. */
    if (mbx_send(b->caller, done_run, done_cancel, b) != MBX_OK)
      mbx__broadcast_unref(b);
    return;
  }
  // Seq_cst: with the caller's store of waiting before it reads pending
  // (Dekker, mbx_broadcast): it sees pending 0, or we see it waiting and
  // wake it.
  if (atomic_load_explicit(&b->waiting, memory_order_seq_cst)) {
    if (!mbx_handle_is_null(b->caller) &&
        !mbx_handle_equal(b->caller, mbx_self()))
      mbx_send(b->caller, noop, NULL, NULL); /* a wakeup; refusal is fine */
    mbx__lock_acquire(&b->mu);
    pthread_cond_broadcast(&b->cv);
    mbx__lock_release(&b->mu);
  }
  mbx__broadcast_unref(b);
}

void mbx__broadcast_unpend(mbx__bc *b) {
  // Acq_rel: the completer sees every answer's counters; seq_cst for the
  // Dekker pair with the waiting caller (see complete).
  if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_seq_cst) == 1)
    complete(b);
}

void mbx__broadcast_resolve(mbx__bc_slot *s, int status) {
  mbx__bc *b = s->owner;
  _Atomic uint32_t *counter = status == MBX__SLOT_DONE     ? &b->done
                              : status == MBX__SLOT_EXITED ? &b->exited
                                                           : &b->failed;
  // Relaxed: read after pending's acquire, or as an approximate report.
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
  // Release: a timed-out caller listing the late targets reads it.
  atomic_store_explicit(&s->status, status, memory_order_release);
  mbx__broadcast_unpend(b);
}

/* Whether the calling thread must run b now (and records that it did). */
static int claim_run(mbx__bc *b) {
  if (b->seq > tls_caught_up_to)
    return 1;
  for (uint32_t i = 0; i < tls_nitems; i++)
    if (tls_items[i].b == b) {
      if (tls_items[i].ran)
        return 0;
      tls_items[i].ran = 1; /* ahead of the catch-up loop, which skips it */
      return 1;
    }
  return 0; /* ran by a catch-up that has finished */
}

/* On a target, from its mailbox. */
void mbx__broadcast_slot_run(void *p) {
  mbx__bc_slot *s = p;
  mbx__bc *b = s->owner;
  if (claim_run(b))
    b->fn(b->arg);
  mbx__broadcast_resolve(s, MBX__SLOT_DONE);
}

/* On a dying target, or the thread closing it: done by exit. */
void mbx__broadcast_slot_cancel(void *p, int reason) {
  (void)reason;
  mbx__broadcast_resolve(p, MBX__SLOT_EXITED);
}

/* The end of a catch-up: its counts and references go. Also its cleanup
 * handler: a catch-up's fn may end the new thread (pthread_exit, or a
 * cancellation point reached with a cancel pending, as one sent right
 * after pthread_create is). The broadcasts then still complete, and those
 * it had not run count it as no target; before, their callers waited for
 * good (test/thread/broadcast_caller_ends.c). */
static void catch_up_finish(void *stack_items) {
  catchup_item *items = tls_items;
  uint32_t n = tls_nitems;
  tls_items = NULL;
  tls_nitems = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (items[i].counted)
      mbx__broadcast_unpend(items[i].b);
    mbx__broadcast_unref(items[i].b);
  }
  if (items != stack_items)
    free(items);
}

/* Runs the catch-up in tls_items, then finishes it (also if an fn ends
 * the thread). A function of its own: the cleanup handler's setjmp must
 * not see the caller's locals change. */
static void catch_up_run(catchup_item *stack_items) {
  pthread_cleanup_push(catch_up_finish, stack_items);
  for (uint32_t i = 0; i < tls_nitems; i++) {
    catchup_item *item = &tls_items[i];
    if (!item->ran) {
      item->ran = 1;
      item->b->fn(item->b->arg);
      // Relaxed: a count for the report.
      atomic_fetch_add_explicit(&item->b->caught_up, 1, memory_order_relaxed);
    }
  }
  pthread_cleanup_pop(1);
}

void mbx__broadcast_catch_up(void) {
  catchup_item stack_items[16];
  catchup_item *items = stack_items;
  uint32_t n = 0;
  mbx__lock_acquire(&g_mu);
  uint32_t count = 0;
  int degraded = 0;
  for (mbx__bc *b = g_head; b; b = b->next)
    count++;
  if (count > 16) {
    items = malloc(sizeof *items * count);
    if (!items) { /* degraded: the first 16 (see the header) */
      items = stack_items;
      count = 16;
      degraded = 1;
    }
  }
  for (mbx__bc *b = g_head; b && n < count; b = b->next) {
    /* Count ourselves in, unless it is complete: a complete transient one
     * is being unregistered (its arg may be gone), a complete persistent
     * one stays registered with nobody waiting. */
    // Relaxed: once 0, pending never changes; the CAS must not revive it.
    uint32_t pend = atomic_load_explicit(&b->pending, memory_order_relaxed);
    int counted = 0;
    while (pend != 0 && !counted)
      counted = atomic_compare_exchange_weak_explicit(
          &b->pending, &pend, pend + 1, memory_order_relaxed,
          memory_order_relaxed);
    if (!counted && !(b->flags & MBX_BROADCAST_PERSIST))
      continue;
    // Relaxed: we hold g_mu and a registered b is alive; refs only count.
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    items[n++] = (catchup_item){b, counted, 0};
  }
  /* Degraded: later ones come by message only if this thread is a target
   * (a lower bound is safe: such messages then run). */
  tls_caught_up_to = degraded && n == count ? items[n - 1].b->seq : g_last_seq;
  mbx__lock_release(&g_mu);
  if (n == 0) { /* nothing to run (most thread starts): no cleanup handler */
    if (items != stack_items)
      free(items);
    return;
  }
  tls_items = items;
  tls_nitems = n;
  catch_up_run(stack_items);
}

int mbx_broadcast_retire(uint64_t seq) {
  mbx__bc *found = NULL;
  mbx__lock_acquire(&g_mu);
  mbx__bc *prev = NULL;
  for (mbx__bc *b = g_head; b; prev = b, b = b->next)
    if (b->seq == seq && (b->flags & MBX_BROADCAST_PERSIST)) {
      found = b;
      if (prev)
        prev->next = b->next;
      else
        g_head = b->next;
      if (g_tail == b)
        g_tail = prev;
      b->registered = 0;
      break;
    }
  mbx__lock_release(&g_mu);
  if (!found)
    return MBX_EINVAL;
  mbx__broadcast_unref(found);
  return MBX_OK;
}
