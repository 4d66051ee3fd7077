/*
 * The broadcast layer's shared layout: a broadcast and its per-target slots,
 * and what broadcast/broadcast.c (starting one, waiting for it) and
 * broadcast/registry.c (the registry, the answers, the catch-up) share.
 * Not installed.
 */
#ifndef MBX__BROADCAST_INTERNAL_H
#define MBX__BROADCAST_INTERNAL_H

#include "../core/layer.h" /* mbx__lock */

#include <mbx/broadcast.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* A target's answer; PENDING until it ran fn, exited or failed. */
enum { MBX__SLOT_PENDING, MBX__SLOT_DONE, MBX__SLOT_EXITED, MBX__SLOT_FAILED };

typedef struct mbx__bc mbx__bc;
typedef struct mbx__bc_slot {
  mbx__bc *owner;
  mbx_handle target;
  _Atomic int status;
} mbx__bc_slot;

struct mbx__bc {
  mbx__bc *next; /* registry, ascending seq, under the registry's lock */
  uint64_t seq;
  mbx_run_fn fn;
  void *arg;
  int flags;
  int registered; /* under the registry's lock */
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
  mbx__lock mu;        /* for a waiting caller without a mailbox */
  pthread_cond_t cv;
  mbx_broadcast_done_fn done_fn;
  void *done_arg;
  mbx_broadcast_release_fn release; /* of arg, when b is freed; or NULL */
  uint32_t nslots;
  mbx__bc_slot *slots;
};

/* registry.c: gives b its sequence number and registers it (any thread). */
void mbx__broadcast_register(mbx__bc *b);
/* registry.c: drops a reference; the last one frees b. */
void mbx__broadcast_unref(mbx__bc *b);
/* registry.c: drops a pending count; the last one completes b (unregisters
 * a transient one, then the done message or the waiting caller's wakeup). */
void mbx__broadcast_unpend(mbx__bc *b);
/* registry.c: records a target's answer (MBX__SLOT_DONE, _EXITED or
 * _FAILED), then unpends. */
void mbx__broadcast_resolve(mbx__bc_slot *s, int status);
/* registry.c: the message a target gets (arg: its slot). */
void mbx__broadcast_slot_run(void *p);
void mbx__broadcast_slot_cancel(void *p, int reason);
/* registry.c: b's counters as a report. */
void mbx__broadcast_fill_report(mbx__bc *b, mbx_broadcast_report *r);

#endif
