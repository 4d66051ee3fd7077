/*
 * Watches (Erlang-style monitors): when a watched mailbox closes, a message
 * goes to the watcher's own mailbox, exactly once, also if the mailbox had
 * already closed when it was watched.
 *
 * Exactly once under a race with the close: mbx_watch checks the target
 * (mbx_hold: refused once the close's gate RMW happened) and links the
 * watch under g_mu; the close path calls mbx__watch_closed after that RMW
 * and takes g_mu. So either the check saw it closed (fire at once) or the
 * watch is linked before the close path looks (it fires it), never both.
 */
#include "lifecycle.h"

#include "../core/layer.h" /* mbx__lock */

#include <mbx/lifecycle.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

enum { ARMED, FIRED, SUPPRESSED };

typedef struct watch {
  struct watch *next;
  struct watch *fire_next; /* only while being fired */
  mbx_watch_id id;
  mbx_handle target, watcher;
  mbx_watch_fn fn;
  void *arg;
  int state;  /* under g_mu */
  int reason; /* set when fired */
} watch;

/* All watches (armed, and fired but not yet delivered, so that unwatch can
 * find them), under g_mu. A list: watches are few; close scans it once. */
static mbx__lock g_mu = MBX__LOCK_INITIALIZER;
static watch *g_head;
static mbx_watch_id g_next_id;

static void unlink_locked(watch *w) {
  for (watch **p = &g_head; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      return;
    }
}

/* On the watcher, from its mailbox. */
static void deliver(void *p) {
  watch *w = p;
  mbx__lock_acquire(&g_mu);
  int state = w->state;
  unlink_locked(w);
  mbx__lock_release(&g_mu);
  if (state == FIRED)
    w->fn(w->target, w->reason, w->arg);
  free(w);
}

/* The watcher exits before delivery: the watch is dropped. */
static void drop(void *p, int reason) {
  (void)reason;
  mbx__lock_acquire(&g_mu);
  unlink_locked(p);
  mbx__lock_release(&g_mu);
  free(p);
}

/* w is FIRED and linked; nobody else frees it until this send succeeds. */
static void send_fired(watch *w) {
  if (mbx_send(w->watcher, deliver, drop, w) != MBX_OK)
    drop(w, 0); /* watcher gone (its own close dropped only ARMED ones) */
}

int mbx_watch(mbx_handle target, mbx_watch_fn on_closed, void *arg,
              mbx_watch_id *id) {
  mbx__lifecycle_link();
  mbx_handle self = mbx_self();
  if (mbx_handle_is_null(self))
    return MBX_EPERM;
  if (!on_closed || mbx_handle_is_null(target))
    return MBX_EINVAL;
  watch *w = malloc(sizeof *w);
  if (!w)
    return MBX_ENOMEM;
  *w = (watch){NULL, NULL, 0, target, self, on_closed, arg, ARMED, 0};
  mbx__lock_acquire(&g_mu);
  int rc;
  /* A hold is refused (MBX_ECLOSED) once the close's gate RMW happened; at
   * most MBX_MAX_HOLDS at once, so retry a crowd briefly. */
  while ((rc = mbx_hold(target)) == MBX_EAGAIN)
    sched_yield();
  if (rc == MBX_OK)
    mbx_release(target);
  else if (rc == MBX_ECLOSED || rc == MBX_ESTALE) {
    w->state = FIRED;
    w->reason = rc; /* MBX_WATCH_WAS_CLOSED / MBX_WATCH_WAS_STALE */
  } else {
    mbx__lock_release(&g_mu);
    free(w);
    return rc; /* MBX_EINVAL: forged handle */
  }
  w->id = ++g_next_id;
  w->next = g_head;
  g_head = w;
  if (id)
    *id = w->id;
  /* Read under the lock: once unlocked, an armed w may be fired by the
   * close path, and must then not be sent twice (found by TSan). */
  int fire_now = w->state == FIRED;
  mbx__lock_release(&g_mu);
  if (fire_now)
    send_fired(w);
  return MBX_OK;
}

int mbx_unwatch(mbx_watch_id id) {
  mbx_handle self = mbx_self();
  int rc = MBX_EINVAL;
  watch *to_free = NULL;
  mbx__lock_acquire(&g_mu);
  for (watch *w = g_head; w; w = w->next) {
    if (w->id != id)
      continue;
    if (!mbx_handle_equal(w->watcher, self)) {
      rc = MBX_EPERM;
    } else if (w->state == ARMED) {
      unlink_locked(w);
      to_free = w;
      rc = MBX_OK;
    } else if (w->state == FIRED) { /* queued to us: skip it when it runs */
      w->state = SUPPRESSED;
      rc = MBX_OK;
    }
    break;
  }
  mbx__lock_release(&g_mu);
  free(to_free);
  return rc;
}

void mbx__watch_closed(mbx_handle h, int reason) {
  watch *fired = NULL; /* chained through fire_next; they stay linked */
  watch *dead = NULL;  /* unlinked, chained through next */
  mbx__lock_acquire(&g_mu);
  for (watch **p = &g_head; *p;) {
    watch *w = *p;
    if (w->state == ARMED && mbx_handle_equal(w->watcher, h)) {
      *p = w->next; /* the watcher itself closed: drop its watches */
      w->next = dead;
      dead = w;
      continue;
    }
    if (w->state == ARMED && mbx_handle_equal(w->target, h)) {
      w->state = FIRED; /* stays linked, for unwatch, until delivered */
      w->reason = reason;
      w->fire_next = fired;
      fired = w;
    }
    p = &w->next;
  }
  mbx__lock_release(&g_mu);
  /* Outside the lock: each fired watch is ours until its send succeeds. */
  while (fired) {
    watch *next = fired->fire_next;
    send_fired(fired);
    fired = next;
  }
  while (dead) {
    watch *next = dead->next;
    free(dead);
    dead = next;
  }
}
