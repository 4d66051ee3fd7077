/*
 * Lifecycle hooks: the registries of start hooks and close hooks, and the
 * two entry points the lower layers call: mailbox close, through the close
 * hook this layer registers with the core on first use, and thread start,
 * through the pthread layer's weak no-op default (so neither depends on
 * this layer).
 */
#include "lifecycle.h"

#include "../core/layer.h"

#include <mbx/lifecycle.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct hook {
  uint32_t id; /* 0: free slot */
  void (*fn)(void);
  void *arg;
} hook;

/* Registration is rare, calls are per thread start/exit: a mutex around
 * small arrays, copied out before calling so hooks may (un)register. */
static mbx__lock g_mu = MBX__LOCK_INITIALIZER;
static hook g_start[MBX_LIFECYCLE_MAX_HOOKS];
static hook g_close[MBX_LIFECYCLE_MAX_HOOKS];
static uint32_t g_next_id;
/* Whether any hook is registered: skips the mutex on every start/exit.
 * A hook registered concurrently may be missed, which the header allows. */
static _Atomic int g_start_count, g_close_count;

static pthread_once_t g_registered = PTHREAD_ONCE_INIT;
static void register_close_hook(void) {
  /* Fails only if every core slot is taken: a build-time limit. */
  int rc = mbx__close_hook_register(mbx__lifecycle_mailbox_closed);
  MBX_ASSERT(rc == MBX_OK);
  (void)rc;
}

void mbx__lifecycle_link(void) {
  pthread_once(&g_registered, register_close_hook);
}

static int add(hook *table, _Atomic int *count, void (*fn)(void), void *arg,
               uint32_t *id) {
  if (!fn)
    return MBX_EINVAL;
  mbx__lifecycle_link();
  int rc = MBX_EFULL;
  mbx__lock_acquire(&g_mu);
  for (int i = 0; i < MBX_LIFECYCLE_MAX_HOOKS; i++) {
    if (table[i].id == 0) {
      table[i] = (hook){++g_next_id, fn, arg};
      if (id)
        *id = table[i].id;
      // Relaxed: a hint; the mutex publishes the slot itself.
      atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
      rc = MBX_OK;
      break;
    }
  }
  mbx__lock_release(&g_mu);
  return rc;
}

int mbx_on_thread_start(mbx_run_fn fn, void *arg, uint32_t *id) {
  return add(g_start, &g_start_count, (void (*)(void))fn, arg, id);
}

int mbx_on_mailbox_close(mbx_close_hook_fn fn, void *arg, uint32_t *id) {
  return add(g_close, &g_close_count, (void (*)(void))fn, arg, id);
}

int mbx_lifecycle_remove(uint32_t id) {
  int rc = MBX_EINVAL;
  if (id == 0)
    return rc;
  mbx__lock_acquire(&g_mu);
  for (int i = 0; i < MBX_LIFECYCLE_MAX_HOOKS; i++) {
    _Atomic int *count = NULL;
    if (g_start[i].id == id) {
      g_start[i].id = 0;
      count = &g_start_count;
    } else if (g_close[i].id == id) {
      g_close[i].id = 0;
      count = &g_close_count;
    }
    if (count) {
      // Relaxed: a hint, as in add.
      atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
      rc = MBX_OK;
      break;
    }
  }
  mbx__lock_release(&g_mu);
  return rc;
}

/* Copies the registered hooks of table into out (registration order is
 * slot order: ids grow, and freed slots are reused, so order by id). */
static int snapshot(const hook *table, _Atomic int *count, hook *out) {
  // Relaxed: see g_start_count.
  if (atomic_load_explicit(count, memory_order_relaxed) == 0)
    return 0;
  int n = 0;
  mbx__lock_acquire(&g_mu);
  for (int i = 0; i < MBX_LIFECYCLE_MAX_HOOKS; i++)
    if (table[i].id)
      out[n++] = table[i];
  mbx__lock_release(&g_mu);
  for (int i = 1; i < n; i++) /* insertion sort by id: n <= 16 */
    for (int j = i; j > 0 && out[j - 1].id > out[j].id; j--) {
      hook t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return n;
}

void mbx__lifecycle_thread_start(void) {
  mbx__broadcast_catch_up();
  hook h[MBX_LIFECYCLE_MAX_HOOKS];
  int n = snapshot(g_start, &g_start_count, h);
  for (int i = 0; i < n; i++)
    ((mbx_run_fn)h[i].fn)(h[i].arg);
}

void mbx__lifecycle_mailbox_closed(mbx_handle closed, int reason) {
  hook h[MBX_LIFECYCLE_MAX_HOOKS];
  int n = snapshot(g_close, &g_close_count, h);
  for (int i = 0; i < n; i++)
    ((mbx_close_hook_fn)h[i].fn)(closed, reason, h[i].arg);
  mbx__watch_closed(closed, reason);
}
