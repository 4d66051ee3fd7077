/*
 * Broadcast: run a function once on every live thread with a mailbox, plus
 * catch-up on threads that start while it is registered (<mbx/broadcast.h>).
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
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include "../core/layer.h"      /* mbx__wait: serving while blocked */
#include "../lifecycle/lifecycle.h"

#include <mbx/broadcast.h>
#include <mbx/proxy.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#ifdef __EMSCRIPTEN__
#include <emscripten/threading.h>
#endif

enum { SLOT_PENDING, SLOT_DONE, SLOT_EXITED, SLOT_FAILED };

typedef struct bc bc;
typedef struct bc_slot {
  bc *owner;
  mbx_handle target;
  _Atomic int status;
} bc_slot;

struct bc {
  bc *next; /* registry, ascending seq, under g_mu */
  uint64_t seq;
  mbx_run_fn fn;
  void *arg;
  int flags;
  int registered; /* under g_mu */
  /* Unanswered targets + catch-ups running + 1 while the caller sends;
   * whoever brings it to 0 completes the broadcast. */
  _Atomic uint32_t pending;
  /* Memory: 1 for the pending group (passed to the done message in the
   * callback form), 1 for a blocking caller, 1 while registered
   * persistently, 1 per catch-up running it. */
  _Atomic uint32_t refs;
  _Atomic uint32_t done, exited, failed, caught_up;
  uint32_t targets;
  mbx_handle caller;
  _Atomic int waiting; /* a blocking caller is in its wait loop */
  pthread_mutex_t mu;  /* for a waiting caller without a mailbox */
  pthread_cond_t cv;
  mbx_broadcast_done_fn done_fn;
  void *done_arg;
  uint32_t nslots;
  bc_slot *slots;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bc *g_head, *g_tail;
static uint64_t g_last_seq;

/* The calling thread's catch-up (see the top comment). */
typedef struct catchup_item {
  bc *b;
  int counted; /* took a pending count */
  int ran;
} catchup_item;
static _Thread_local uint64_t tls_caught_up_to;
static _Thread_local catchup_item *tls_items;
static _Thread_local uint32_t tls_nitems;

static void unref(bc *b) {
  // Acq_rel: the last owner sees every other owner's writes before freeing.
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b->slots);
  free(b);
}

static void fill_report(bc *b, mbx_broadcast_report *r) {
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
  bc *b = p;
  mbx_broadcast_report r;
  fill_report(b, &r);
  b->done_fn(&r, b->done_arg);
  unref(b);
}
static void done_cancel(void *p, int reason) {
  (void)reason;
  unref(p);
}

static void complete(bc *b) {
  if (!(b->flags & MBX_BROADCAST_PERSIST)) {
    pthread_mutex_lock(&g_mu);
    if (b->registered) {
      b->registered = 0;
      bc **p = &g_head;
      bc *prev = NULL;
      while (*p != b) {
        prev = *p;
        p = &(*p)->next;
      }
      *p = b->next;
      if (g_tail == b)
        g_tail = prev;
    }
    pthread_mutex_unlock(&g_mu);
  }
  if (b->done_fn) {
    /* The pending group's reference goes with the message. */
    if (mbx_send(b->caller, done_run, done_cancel, b) != MBX_OK)
      unref(b);
    return;
  }
  // Seq_cst: with the caller's store of waiting before it reads pending
  // (Dekker): it sees pending 0, or we see it waiting and wake it.
  if (atomic_load_explicit(&b->waiting, memory_order_seq_cst)) {
    if (!mbx_handle_is_null(b->caller) &&
        !mbx_handle_equal(b->caller, mbx_self()))
      mbx_send(b->caller, noop, NULL, NULL); /* a wakeup; refusal is fine */
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
  }
  unref(b);
}

static void unpend(bc *b) {
  // Acq_rel: the completer sees every answer's counters; seq_cst for the
  // Dekker pair with the waiting caller (see complete).
  if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_seq_cst) == 1)
    complete(b);
}

static void resolve(bc_slot *s, int status) {
  bc *b = s->owner;
  _Atomic uint32_t *counter = status == SLOT_DONE     ? &b->done
                              : status == SLOT_EXITED ? &b->exited
                                                      : &b->failed;
  // Relaxed: read after pending's acquire, or as an approximate report.
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
  // Release: a timed-out caller listing the late targets reads it.
  atomic_store_explicit(&s->status, status, memory_order_release);
  unpend(b);
}

/* Whether the calling thread must run b now (and records that it did). */
static int claim_run(bc *b) {
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
static void slot_run(void *p) {
  bc_slot *s = p;
  bc *b = s->owner;
  if (claim_run(b))
    b->fn(b->arg);
  resolve(s, SLOT_DONE);
}

/* On a dying target, or the thread closing it: done by exit. */
static void slot_cancel(void *p, int reason) {
  (void)reason;
  resolve(p, SLOT_EXITED);
}

void mbx__broadcast_catch_up(void) {
  catchup_item stack_items[16];
  catchup_item *items = stack_items;
  uint32_t n = 0;
  pthread_mutex_lock(&g_mu);
  uint32_t count = 0;
  int degraded = 0;
  for (bc *b = g_head; b; b = b->next)
    count++;
  if (count > 16) {
    items = malloc(sizeof *items * count);
    if (!items) { /* degraded: the first 16 (see the header) */
      items = stack_items;
      count = 16;
      degraded = 1;
    }
  }
  for (bc *b = g_head; b && n < count; b = b->next) {
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
  pthread_mutex_unlock(&g_mu);
  tls_items = items;
  tls_nitems = n;
  for (uint32_t i = 0; i < n; i++) {
    if (!items[i].ran) {
      items[i].ran = 1;
      items[i].b->fn(items[i].b->arg);
      // Relaxed: a count for the report.
      atomic_fetch_add_explicit(&items[i].b->caught_up, 1,
                                memory_order_relaxed);
    }
  }
  tls_items = NULL;
  tls_nitems = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (items[i].counted)
      unpend(items[i].b);
    unref(items[i].b);
  }
  if (items != stack_items)
    free(items);
}

/* Registers, snapshots, sends and runs inline. Returns the broadcast with
 * its pending group still counting the caller (the caller unpends), or
 * NULL with *rc. */
static bc *start(mbx_run_fn fn, void *arg, int flags,
                 mbx_broadcast_done_fn done_fn, void *done_arg, int *rc) {
  mbx__lifecycle_link();
  bc *b = calloc(1, sizeof *b);
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
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  /* A first guess of the slots, outside the lock. */
  uint32_t open = 0;
  mbx_mailboxes_list(NULL, 0, &open);
  b->nslots = open + 8;
  b->slots = malloc(sizeof *b->slots * b->nslots);
  mbx_handle *list = malloc(sizeof *list * b->nslots);
  if (!b->slots || !list) {
    free(list);
    pthread_mutex_destroy(&b->mu);
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
  pthread_mutex_lock(&g_mu);
  b->seq = ++g_last_seq;
  b->registered = 1;
  if (g_tail)
    g_tail->next = b;
  else
    g_head = b;
  g_tail = b;
  pthread_mutex_unlock(&g_mu);
  uint32_t n = 0;
  for (;;) {
    mbx_mailboxes_list(list, b->nslots, &n);
    if (n <= b->nslots)
      break;
    uint32_t want = n + 8;
    mbx_handle *l2 = realloc(list, sizeof *list * want);
    if (l2)
      list = l2;
    bc_slot *s2 = l2 ? realloc(b->slots, sizeof *b->slots * want) : NULL;
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
  for (uint32_t i = 0; i < n; i++)
    if (!mbx_handle_equal(list[i], b->caller))
      b->slots[k++] = (bc_slot){b, list[i], SLOT_PENDING};
  free(list);
  b->nslots = k;
  b->targets += k;
  // Relaxed: the sends below publish (release in mbx_send).
  atomic_fetch_add_explicit(&b->pending, k, memory_order_relaxed);
  for (uint32_t i = 0; i < k; i++) {
    int s = mbx_send(b->slots[i].target, slot_run, slot_cancel, &b->slots[i]);
    if (s == MBX_ECLOSED || s == MBX_ESTALE)
      resolve(&b->slots[i], SLOT_EXITED);
    else if (s != MBX_OK)
      resolve(&b->slots[i], SLOT_FAILED);
  }
  if (!(flags & MBX_BROADCAST_SKIP_SELF)) {
    b->targets++;
    fn(arg);
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

int mbx_broadcast(mbx_run_fn fn, void *arg, int flags, double timeout_ms,
                  mbx_broadcast_report *report, mbx_handle *late_out,
                  uint32_t late_capacity) {
  if (!fn || (flags & ~(MBX_BROADCAST_SKIP_SELF | MBX_BROADCAST_PERSIST)))
    return MBX_EINVAL;
  if (timeout_ms != 0 && !mbx_proxy_may_block())
    return MBX_EWOULDBLOCK;
  int rc;
  bc *b = start(fn, arg, flags, NULL, NULL, &rc);
  if (!b)
    return rc;
  double deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
  // Seq_cst: Dekker pair with complete() (store waiting, load pending).
  atomic_store_explicit(&b->waiting, 1, memory_order_seq_cst);
  unpend(b); /* the caller's own count: may complete it right here */
  int serving = !mbx_handle_is_null(b->caller);
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
    pthread_mutex_lock(&b->mu);
    // Seq_cst: as above.
    if (atomic_load_explicit(&b->pending, memory_order_seq_cst) != 0) {
      if (remaining < 0) {
        pthread_cond_wait(&b->cv, &b->mu);
      } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double add = remaining > 10 ? 10 : remaining; /* re-check */
        long ns = ts.tv_nsec + (long)(add * 1e6);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
      }
    }
    pthread_mutex_unlock(&b->mu);
  }
  // Relaxed: only complete() reads it, seq_cst there pairs with the loads.
  atomic_store_explicit(&b->waiting, 0, memory_order_relaxed);
  mbx_broadcast_report r;
  fill_report(b, &r);
  if (late_out && r.late) {
    uint32_t j = 0;
    for (uint32_t i = 0; i < b->nslots && j < late_capacity; i++)
      // Acquire: pairs with resolve's release.
      if (atomic_load_explicit(&b->slots[i].status, memory_order_acquire) ==
          SLOT_PENDING)
        late_out[j++] = b->slots[i].target;
  }
  if (report)
    *report = r;
  unref(b);
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
  bc *b = start(fn, arg, flags, done, done_arg, &rc);
  if (!b)
    return rc;
  if (seq_out)
    *seq_out = b->seq;
  unpend(b);
  return MBX_OK;
}

int mbx_broadcast_retire(uint64_t seq) {
  bc *found = NULL;
  pthread_mutex_lock(&g_mu);
  bc *prev = NULL;
  for (bc *b = g_head; b; prev = b, b = b->next)
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
  pthread_mutex_unlock(&g_mu);
  if (!found)
    return MBX_EINVAL;
  unref(found);
  return MBX_OK;
}
