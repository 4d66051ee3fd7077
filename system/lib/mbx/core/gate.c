/*
 * The gate word: every read-modify-write on it, which is where the send/close
 * race, holds and retirement are decided, and the consumer token.
 *
 * Each record has one 64-bit gate word:
 *
 *    63            32 31   30    29         16 15            0
 *   +----------------+----+-----+-------------+---------------+
 *   |   generation   |OPEN|OWNER| mbx_hold()s |  inside (cap)  |
 *   +----------------+----+-----+-------------+---------------+
 *
 * OPEN: the mailbox accepts messages. OWNER: the hold of the thread (or
 * creator) that will close the mailbox, apart from the counted holds so a
 * stray mbx_release cannot drop it. Inside: callers of mbx_set_capacity
 * between their enter and leave RMWs (at most 65535 at once). A send does
 * not write this word at all (issue 17: its two RMWs here were half of a
 * send's cost); it reads it.
 *
 * The send/close race (docs/design.md, "Mailbox state machine"):
 *
 *   mbx_send (core/send.c)                  close (core/closing.c)
 *   1 gate snapshot, refuse early           A mbx__gate_close: CAS clears
 *   2 allocate the node                       OPEN [seq_cst]
 *   3 fetch_add pending [seq_cst]           B wait for capacity setters
 *   4 load the gate [seq_cst]; refused        inside [acquire]
 *     (other generation, OPEN clear,        C take the consumer token, pop
 *     full): fetch_sub pending, return        and cancel until pending
 *   5 push the node (core/queue.h)            counts no more than was
 *   6 wake the owner if pending was 0         consumed [seq_cst loads]
 *                                           D pending += CLOSED - consumed
 *                                           E mbx__gate_release_owner:
 *                                             clear OWNER; maybe retire
 *
 * Steps 3-4 and A-C are a Dekker pair, every access seq_cst: either C's
 * load of pending sees the sender's count, and C waits until its message
 * is pushed (a few instructions) and cancels it, or the count comes after
 * that load in the single total order, so 4 comes after A and sees OPEN
 * clear: the send fails having called nothing, and takes its count back.
 * A stale handle cannot deliver into a later life: 4 reads the generation
 * after the count, and reuse needs the old life closed, which C orders
 * after every sender counted in it. Counts of refused senders come and go
 * on whatever life the record serves: C waits for them, D and reuse
 * (core/table.c) add and subtract instead of storing, so they cancel out.
 *
 * A life ends in exactly one retirement: when OPEN, OWNER and the hold count
 * are all clear. Holds are taken only while OPEN, so once the word reaches
 * "closed, unowned, unheld" nothing raises it again, and the one RMW that
 * made it so (a hold release or the owner's release) retires the record into
 * the quarantine (core/table.c), from which mbx__gate_open reuses it.
 *
 * The consumer token (r->consumer) names who may pop the queue: FREE, OWNER
 * (the owner is inside one pop) or CLOSER (final for the life). The owner
 * claims it around each pop only, never while a handler runs, so a closer
 * from outside takes the queue over between two messages.
 */
#include "record.h"

int mbx__gate_enter(mbx__record *r, uint32_t gen) {
  // Acquire: if we see gen's life open, we see the record that
  // mbx__gate_open's release published.
  uint64_t gate = atomic_fetch_add_explicit(&r->gate, MBX__GATE_INFLIGHT_ONE,
                                            memory_order_acquire);
  MBX_ASSERT((gate & MBX__GATE_INFLIGHT_MASK) != MBX__GATE_INFLIGHT_MASK);
  int rc = mbx__gate_refusal(gate, gen);
  if (rc != MBX_OK)
    mbx__gate_leave(r); /* refused: nothing published */
  return rc;
}

void mbx__gate_leave(mbx__record *r) {
  // Release: the closer's acquire load of a zero count (step B) sees
  // everything we did inside (the capacity).
  uint64_t old = atomic_fetch_sub_explicit(&r->gate, MBX__GATE_INFLIGHT_ONE,
                                           memory_order_release);
  MBX_ASSERT((old & MBX__GATE_INFLIGHT_MASK) != 0); /* never below 0 */
  (void)old;
}

uint32_t mbx__gate_open(mbx__record *r) {
  // Relaxed load: the CAS below re-validates (only the senders-inside count
  // can change under us: generations change only here, under the registry
  // lock).
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  MBX_ASSERT(!(old & (MBX__GATE_OPEN | MBX__GATE_OWNER | MBX__GATE_HOLD_MASK)));
  /* Never wraps: a record that lived MBX__GEN_LAST is never reused. */
  MBX_ASSERT(mbx__gate_gen(old) != MBX__GEN_LAST);
  uint32_t gen = mbx__gate_gen(old) + 1;
  /* Refusals count for the new life only (see mbx__record). */
  // Relaxed: published to senders by the release CAS below.
  atomic_store_explicit(&r->rejected_closed, (uint64_t)gen << 32,
                        memory_order_relaxed);
  uint64_t next;
  do {
    /* New generation, OPEN, OWNER, no holds; keep the count of stale
     * senders that are inside only to back out. */
    next = ((uint64_t)gen << MBX__GATE_GEN_SHIFT) | MBX__GATE_OPEN |
           MBX__GATE_OWNER | (old & MBX__GATE_INFLIGHT_MASK);
    // Release: a sender whose step 3 sees the new generation sees the reset
    // queue. Relaxed on failure: we retry with the fresh value.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, next, memory_order_release, memory_order_relaxed));
  return gen;
}

int mbx__gate_close(mbx__record *r, uint32_t gen) {
  // Relaxed load: the CAS re-validates.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_relaxed);
  do {
    int refusal = mbx__gate_refusal(gate, gen);
    if (refusal != MBX_OK)
      return refusal;
    // Step A, the linearisation point of close: clear OPEN. Seq_cst: the
    // Dekker pair with a sender's steps 3 and 4 (see above); it also
    // releases our earlier consumption. Relaxed on failure: we re-check
    // and retry.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &gate, gate & ~MBX__GATE_OPEN, memory_order_seq_cst,
      memory_order_relaxed));
  mbx__gate_wait_senders(r);
  return MBX_OK;
}

void mbx__gate_wait_senders(mbx__record *r) {
  // Step B: wait for capacity setters that entered before A; each is a few
  // instructions from its leave. Acquire: pairs with their release.
  while (atomic_load_explicit(&r->gate, memory_order_acquire) &
         MBX__GATE_INFLIGHT_MASK)
    mbx__platform_yield();
}

static int retirable(uint64_t gate) {
  return !(gate & (MBX__GATE_OPEN | MBX__GATE_OWNER | MBX__GATE_HOLD_MASK));
}

/* Drop one counted hold (what = MBX__GATE_HOLD_ONE) or the OWNER of a closed
 * life whose thread never bound it (what = MBX__GATE_OWNER), from gen's
 * life; retire the record if nothing else keeps it. A drop of something
 * not there (a double release) is refused, never an underflow. */
static int gate_drop(mbx__record *r, uint32_t gen, uint64_t what) {
  // Relaxed load: the CAS below re-validates.
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  uint64_t next;
  do {
    if (mbx__gate_gen(old) != gen)
      return what == MBX__GATE_OWNER
                 ? mbx__gen_mismatch_code(gen, mbx__gate_gen(old))
                 : MBX_EINVAL;
    int present = what == MBX__GATE_OWNER
                      ? (old & MBX__GATE_OWNER) && !(old & MBX__GATE_OPEN)
                      : mbx__gate_holds(old) != 0;
    if (!present)
      return MBX_EINVAL;
    next = old - what;
    // Acq_rel: release orders this holder's uses before a reuse; acquire
    // lets the last releaser see the closer's drain before retiring.
    // Relaxed on failure: we re-check and retry.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, next, memory_order_acq_rel, memory_order_relaxed));
  if (retirable(next))
    mbx__table_retire(r); /* closed and unheld: exactly one RMW gets here */
  return MBX_OK;
}

/* Step E. A CAS, not a fetch_and: the owner's exit and an orphan closer
 * may both try (close_orphan on a live owner, or a browser's death hook
 * racing a terminated worker's own exit path); only the first drops it, so
 * the life is retired once (issue 18 item 6). */
int mbx__gate_release_owner(mbx__record *r, uint32_t gen) {
  return gate_drop(r, gen, MBX__GATE_OWNER);
}

int mbx__release_unbound_owner(mbx_handle h) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  return gate_drop(r, mbx__handle_gen(h), MBX__GATE_OWNER); /* step E */
}

int mbx__gate_pin_owned(mbx__record *r, uint32_t gen) {
  // Relaxed load: the CAS below re-validates.
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  do {
    if (mbx__gate_gen(old) != gen || !(old & MBX__GATE_OWNER))
      return MBX_ECLOSED; /* released: the life may be retired already */
    if (mbx__gate_holds(old) >= MBX_MAX_HOLDS)
      return MBX_EAGAIN;
    // One more hold while OWNER keeps the life from retiring, so it can
    // never raise a retired life. Acquire: as mbx_hold. Relaxed on
    // failure: we re-check and retry.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, old + MBX__GATE_HOLD_ONE, memory_order_acquire,
      memory_order_relaxed));
  return MBX_OK;
}

int mbx_hold(mbx_handle h) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Relaxed load: the CAS below re-validates.
  uint64_t old = atomic_load_explicit(&r->gate, memory_order_relaxed);
  do {
    rc = mbx__gate_refusal(old, mbx__handle_gen(h));
    if (rc != MBX_OK)
      return rc; /* holds are taken only while OPEN: retirement is final */
    if (mbx__gate_holds(old) >= MBX_MAX_HOLDS)
      return MBX_EAGAIN;
    // One more hold. Acquire: the holder's later reads of the record see
    // its current life. Relaxed on failure: we re-check and retry.
  } while (!atomic_compare_exchange_weak_explicit(
      &r->gate, &old, old + MBX__GATE_HOLD_ONE, memory_order_acquire,
      memory_order_relaxed));
  return MBX_OK;
}

int mbx_release(mbx_handle h) {
  mbx__record *r;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  return gate_drop(r, mbx__handle_gen(h), MBX__GATE_HOLD_ONE);
}

/* ---- the consumer token */

int mbx__token_owner_claim(mbx__record *r) {
  int16_t expected = MBX__CONSUMER_FREE;
  // FREE -> OWNER. Relaxed: a closer never hands the queue back, so success
  // only follows our own release below; the closer's acquire CAS orders it
  // after us.
  return atomic_compare_exchange_strong_explicit(
      &r->consumer, &expected, MBX__CONSUMER_OWNER, memory_order_relaxed,
      memory_order_relaxed);
}

void mbx__token_owner_unclaim(mbx__record *r) {
  /* Nobody moves the token away from OWNER but an orphan's closer, which
   * runs only once we are dead. */
  // Relaxed: an assertion-only look at our own claim.
  MBX_ASSERT(atomic_load_explicit(&r->consumer, memory_order_relaxed) ==
             MBX__CONSUMER_OWNER);
  // OWNER -> FREE. Release: a closer that claims next sees our pops and
  // counters.
  atomic_store_explicit(&r->consumer, MBX__CONSUMER_FREE, memory_order_release);
}

int mbx__token_closer_claim(mbx__record *r, double timeout_ms, int force) {
  double deadline = 0;
  for (;;) {
    int16_t expected = MBX__CONSUMER_FREE;
    // Step C: FREE -> CLOSER, final for this life. Acquire: pairs with
    // mbx__token_owner_unclaim, so the owner's pops and consumed count are
    // visible. Relaxed on failure: we retry.
    if (atomic_compare_exchange_weak_explicit(
            &r->consumer, &expected, MBX__CONSUMER_CLOSER, memory_order_acquire,
            memory_order_relaxed))
      return MBX_OK;
    /* Two closers of one life (the owner's exit taking over from a closer
     * from outside that gave up, or an orphan's closer): one drains. */
    if (expected == MBX__CONSUMER_CLOSER)
      return MBX_ECLOSED;
    if (expected != MBX__CONSUMER_FREE) {
      /* The owner is inside a pop; if it stays there, it died in it. */
      double now = mbx__platform_now_ms();
      if (!deadline)
        deadline = now + timeout_ms;
      else if (now > deadline) {
        if (!force)
          return MBX_EBUSY;
        expected = MBX__CONSUMER_OWNER;
        // OWNER -> CLOSER from the dead owner. Acquire: whatever of its
        // pop reached memory is what we drain on from (a killed thread
        // publishes nothing; its plain writes are all there is, and a pop
        // is a single head store). Relaxed on failure: another closer won;
        // the loop sees CLOSER.
        if (atomic_compare_exchange_strong_explicit(
                &r->consumer, &expected, MBX__CONSUMER_CLOSER,
                memory_order_acquire, memory_order_relaxed))
          return MBX__TOKEN_FROM_DEAD;
        continue;
      }
      mbx__platform_yield();
    }
  }
}

int mbx__token_closed(mbx__record *r) {
  // Relaxed: a closer owns the queue for good once set; callers see it at
  // the latest through MBX__PENDING_CLOSED (seq_cst).
  return atomic_load_explicit(&r->consumer, memory_order_relaxed) ==
         MBX__CONSUMER_CLOSER;
}
