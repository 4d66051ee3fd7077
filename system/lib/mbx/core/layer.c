/*
 * Upper layers' hooks and per-life slots: how the core calls a layer above
 * it (proxy/, ...) without knowing it. A layer registers its hooks on first
 * use, so a program that never links it never calls it (musl's weak no-op
 * defaults and Emscripten's proxying.c exit hook are the models).
 */
#include "record.h"

static const mbx__layer_hooks *_Atomic g_layers[MBX__LAYER_SLOTS];
static _Atomic int g_layer_count;

int mbx__layer_register(const mbx__layer_hooks *hooks) {
  // Relaxed: only hands out distinct ids.
  int id = atomic_fetch_add_explicit(&g_layer_count, 1, memory_order_relaxed);
  if (id >= MBX__LAYER_SLOTS)
    return MBX_ENOMEM;
  // Release: a thread that loads the pointer sees the hooks.
  atomic_store_explicit(&g_layers[id], hooks, memory_order_release);
  return id;
}

static const mbx__layer_hooks *layer_at(int id) {
  // Acquire: pairs with mbx__layer_register.
  return atomic_load_explicit(&g_layers[id], memory_order_acquire);
}

void mbx__self_layer_set(int layer, void *state) {
  MBX_ASSERT(layer >= 0 && layer < MBX__LAYER_SLOTS);
  if (mbx__self.record)
    // Release: an orphan closer that takes it sees it initialised.
    atomic_store_explicit(&mbx__self.record->layer_slot[layer], state,
                          memory_order_release);
}

void mbx__layers_close(mbx__record *r) {
  (void)r;
  for (int i = 0; i < MBX__LAYER_SLOTS; i++) {
    const mbx__layer_hooks *hooks = layer_at(i);
    if (hooks && hooks->on_close)
      hooks->on_close();
  }
}

void mbx__layers_exit(mbx__record *r) {
  for (int i = 0; i < MBX__LAYER_SLOTS; i++) {
    const mbx__layer_hooks *hooks = layer_at(i);
    // Acq_rel: an exchange, so that the slot goes to exactly one of us and
    // an orphan closer called on this live owner (misuse); acquire/release
    // as in mbx__layers_orphan, with which it races. No record: an orphan
    // closer took the life over.
    void *slot = r ? atomic_exchange_explicit(&r->layer_slot[i], NULL,
                                              memory_order_acq_rel)
                   : NULL;
    if (hooks && hooks->on_exit)
      hooks->on_exit(slot);
  }
}

void mbx__layers_orphan(mbx__record *r, mbx__node *popped) {
  mbx_run_fn run = popped ? popped->run : NULL;
  void *arg = popped ? popped->arg : NULL;
  for (int i = 0; i < MBX__LAYER_SLOTS; i++) {
    // Acquire: see the state the owner published (and, the owner being
    // dead, everything it wrote to it before).
    void *slot =
        atomic_exchange_explicit(&r->layer_slot[i], NULL, memory_order_acquire);
    const mbx__layer_hooks *hooks = layer_at(i);
    if ((slot || run) && hooks && hooks->on_orphan)
      hooks->on_orphan(slot, run, arg);
  }
}

void mbx__layers_allocator_change(void) {
  for (int i = 0; i < MBX__LAYER_SLOTS; i++) {
    const mbx__layer_hooks *hooks = layer_at(i);
    if (hooks && hooks->on_allocator_change)
      hooks->on_allocator_change();
  }
}

#define MBX__CLOSE_HOOKS 4
static _Atomic(mbx__close_hook_fn) g_close_hooks[MBX__CLOSE_HOOKS];
static _Atomic int g_close_hook_count;

int mbx__close_hook_register(mbx__close_hook_fn fn) {
  // Relaxed: only hands out distinct slots.
  int i =
      atomic_fetch_add_explicit(&g_close_hook_count, 1, memory_order_relaxed);
  if (i >= MBX__CLOSE_HOOKS)
    return MBX_ENOMEM;
  // Release: a closer that loads it may call it at once.
  atomic_store_explicit(&g_close_hooks[i], fn, memory_order_release);
  return MBX_OK;
}

void mbx__layers_closed(mbx_handle h, int reason) {
  for (int i = 0; i < MBX__CLOSE_HOOKS; i++) {
    // Acquire: pairs with mbx__close_hook_register.
    mbx__close_hook_fn fn =
        atomic_load_explicit(&g_close_hooks[i], memory_order_acquire);
    if (fn)
      fn(h, reason);
  }
}
