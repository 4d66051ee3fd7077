/*
 * Promela model of the mbx protocol (system/lib/mbx/core/: gate.c, send.c,
 * drain.c, wait.c, lifecycle.c, closing.c, table.c, queue.h, record.h; and the sync call of
 * proxy/), checked by test/model.test.mjs. Comments cite C function names. See docs/model.md for the properties, bounds, state
 * counts and what each mutant shows.
 *
 * One model step per atomic operation of the C code. A C compare-and-swap
 * retry loop whose body only re-validates (load relaxed, check, CAS) is one
 * step: a failed CAS changes nothing and retries with the fresh value, so the
 * loop is equivalent to a single read-check-modify. Owner-private work
 * (head, consumed_unflushed, locals) is folded into the neighbouring shared
 * access. Statistics that nothing decides on (high water, shard counters)
 * are left out unless a FINDING_ switch asks for them.
 *
 * The gate word (core/gate.c) is kept as separate fields, updated together
 * inside one atomic step wherever the C code does one RMW on the word.
 *
 * Records are never freed in C; "freed" here is a record whose life ended
 * (retired to quarantine, or being reset for reuse), and a step that touches
 * life-specific state (queue, pending, waiting, counters) of such a record,
 * or of a later life, fails an assertion.
 *
 * The sync caller mirrors mbx_proxy_sync / mbx_proxy_sync_timed
 * (system/lib/mbx/proxy/call.c, target.c, ctx.c) on its non-serving path (a
 * caller without a mailbox, or with serving off): a heap call record with
 * two references (caller, work message) whose `state` decides every race in
 * one CAS (settle); the winner of DONE/CANCELED wakes the caller if its
 * `sleeper` flag is set (seq_cst Dekker pair with sleep_on_state). A timed
 * caller gives up only while the work is PENDING. The serving path (reply
 * message to the caller's own mailbox) is not modelled.
 *
 * Mutants (spin -DMUTANT_x): see the #ifdef blocks and docs/model.md.
 */

/* ---------------------------------------------------------------- bounds */
#ifndef NASYNC
#define NASYNC 1                 /* async senders, one message each */
#endif
#ifndef NSYNC
#define NSYNC 1                  /* sync callers (0 or 1) */
#endif
#ifndef OUTSIDE
#define OUTSIDE 0                /* a closer from outside (runtime exit) */
#endif
#ifndef HOLDER
#define HOLDER 1                 /* an mbx_hold/mbx_release user (0 or 1) */
#endif
#ifndef CAPSET
#define CAPSET 0                 /* an mbx_set_capacity caller, old handle */
#endif
#ifndef ORPHAN
#define ORPHAN 0                 /* an orphan closer racing the owner's exit */
#endif
#define NMSG (NASYNC + NSYNC)
#define SYNC_MSG NASYNC          /* message id of the sync call */
#define NIL 0                    /* node 0: NULL; node m+1: message m */
#define STUB (NMSG + 1)          /* the record's queue sentinel */
#define NNODES (NMSG + 2)
#define CAPACITY 1               /* mbx_set_capacity(h, 1): small enough to fill */
#ifndef ROUNDS
#define ROUNDS 1                 /* receive calls before the target exits */
#endif

/* ---------------------------------------------------------------- codes */
#define OK 0
#define ECLOSED 1
#define ESTALE 2
#define EFULL 5

/* message states (ghost): each message id is sent once */
#define M_NEW 0
#define M_GATE 1      /* node allocated, sender entering the gate */
#define M_QUEUED 2    /* exchanged into the tail */
#define M_RUN 3
#define M_CANCELED 4
#define M_REJECTED 5  /* send returned an error: nothing called */

/* record states (ghost) */
#define R_FRESH 0
#define R_LIVE 1      /* from the reuse/open CAS to retire */
#define R_QUAR 2      /* retired: in the quarantine FIFO */
#define R_RESET 3     /* taken from quarantine, being reset (registry lock) */

/* consumer token (core/record.h MBX__CONSUMER_*) */
#define CONS_FREE 0
#define CONS_OWNER 1
#define CONS_CLOSER 2
#define PENDING_CLOSED (-100) /* MBX__PENDING_CLOSED: a closed, drained life */

/* sync context states */
#define C_PENDING 0
#define C_RUNNING 1
#define C_DONE 2
#define C_CANCELED 3
#define C_ABANDONED 4  /* timed caller gave up */

/* ---------------------------------------------------------------- the record */
/* gate word: core/record.h, mbx__record.gate */
byte gate_gen;       /* bits 63..32 */
bit gate_open;       /* bit 31 */
bit gate_owner;      /* bit 30 */
byte gate_holds;     /* bits 29..16 */
byte gate_inflight;  /* bits 15..0: mbx_set_capacity callers inside */

short pending;       /* mbx__record.pending: counted before the push */
bit waiting;         /* mbx__record.waiting */
byte capacity;       /* mbx__record.capacity */
bit bound;           /* mbx__record.bound */
byte tail;           /* mbx__record.tail, node id */
byte head;           /* mbx__record.head, owner only */
byte consumed_unflushed; /* owner-private, or the consumer's */
byte consumer;       /* mbx__record.consumer: MBX__CONSUMER_* */
byte node_next[NNODES];  /* mbx__node.next */
bit node_freed[NNODES];  /* ghost: released (retired dummy); never read again */
byte run_count;      /* mbx__record.run, current life */
byte canceled_count; /* mbx__record.canceled, current life */
byte folded_run;     /* core/stats.c g_folded */
byte folded_canceled;
byte rejected_closed; /* mbx__record.rejected_closed: the count */
byte rej_tag = 1;     /* mbx__record.rejected_closed: its tag */

/* ghosts */
byte rstate = R_FRESH;
byte qlen;              /* quarantine FIFO length */
bit close_done;         /* close_and_cancel of the current life finished */
bit owner_asleep;       /* a thread sleeps in a futex wait on `pending` */
bit target_bound;       /* life 1's thread has bound its mailbox */
bit target_exiting;     /* life 1's thread has entered its exit path */
byte msg_state[NMSG];
byte node_gen[NNODES];  /* generation of the handle a node was sent through */
byte nodes_live;        /* mbx__node_alloc - mbx__node_free */
byte sent_ok;
byte lives_retired;

/* ---------------------------------------------------------------- sync context */
byte cstate = C_PENDING;
byte crefs;
bit ctx_live;
bit ctx_freed;
bit caller_asleep;     /* futex wait on cstate */
bit sleeper;           /* proxy/proxy_internal.h: a waiter sleeps on state */
bit sync_sl, sync_won; /* locals of the settle inline (one target at a time) */
bit caller_returned;
byte caller_rc;

/* ---------------------------------------------------------------- helpers */

/* A step touching life-specific state of the record on behalf of life g. */
#define LIFE_OK(g) (rstate == R_LIVE && gate_gen == (g))

/* gate_refusal (mbx__gate_refusal) on a gate snapshot. */
inline gate_refusal(sgen, sopen, hgen, rc) {
#ifdef MUTANT_NO_GEN_CHECK
  /* Mutant: only OPEN is checked; a stale generation is not refused. */
  rc = (sopen -> OK : ECLOSED)
#else
  rc = (sgen != hgen -> ESTALE : (sopen -> OK : ECLOSED))
#endif
}

/* retire (mbx__table_retire): registry lock held throughout. */
inline retire() {
  atomic {
    assert(rstate == R_LIVE);      /* exactly once per life */
    assert(!gate_open && !gate_owner && gate_holds == 0);
    /* closed and drained: refused senders' counts may still come and go */
    assert((pending == 0 ||
            (pending >= PENDING_CLOSED && pending <= PENDING_CLOSED + NMSG)) &&
           consumed_unflushed == 0);
    rstate = R_QUAR;
    qlen++;
    lives_retired++
  }
}

/* A push (mbx__queue_exchange, mbx__queue_link in send_to_record) of node
 * n by any thread. Message m's payload goes into the node its sender links
 * (prev), in the C code; here message m is node m + 1 all the same: which
 * line carries the payload changes no step. */
inline queue_push(n, prev, g) {
  /* mbx__queue_exchange: exchange tail, acq_rel. The sender writes nothing
   * into n: its link is NULL already (core/nodes.c: the allocator hands out
   * nodes with NULL links; node reuse is not modelled, a node id serves one
   * message, so here every node starts NIL). */
  atomic {
    assert(LIFE_OK(g));
    assert(!close_done);           /* nothing enqueued after close completes */
    assert(node_next[n] == NIL);
    prev = tail;
    tail = n;
    if
    :: n != STUB -> assert(msg_state[n - 1] == M_GATE); msg_state[n - 1] = M_QUEUED
    :: else
    fi
  }
  /* mbx__queue_link: the payload into prev, then prev->next = n, release. */
  atomic {
    assert(LIFE_OK(g));
    assert(!node_freed[prev]);     /* the consumer retires prev only after */
    node_next[prev] = n;
    prev = 0
  }
}

/* queue_pop (mbx__queue_pop), owner (or closer) only, with the consumer
 * token; out = the popped message's node or NIL. The head is a dummy (the
 * stub, then the node of the message popped last); a pop moves the head to
 * the next node and releases the old one, its link left as it is (the C
 * code returns the old head, which holds the payload, and the caller
 * releases it: mbx__node_release; ghost node_freed: conservative, as the C
 * code frees it with its block, later; asserted never read or linked
 * again). */
inline queue_pop(out, hd, nx, prev, g) {
  /* mbx__queue_pop: head (owner-private), load head->next acquire, store
   * head */
  atomic {
    assert(LIFE_OK(g));
    hd = head;
    assert(!node_freed[hd]);
    nx = node_next[hd];
    if
    :: nx == NIL -> out = NIL
    :: else ->
       head = nx; out = nx;
       if
       :: hd != STUB -> node_freed[hd] = 1     /* mbx__run_pending: release */
       :: else
       fi
    fi
  }
  hd = 0;
  nx = 0
}

/* The closer after step C (mbx__queue_take_dummy, closing_drain): every
 * producer linked, everything popped: release the last dummy, reset. */
inline queue_take_dummy(g) {
  atomic {
    assert(LIFE_OK(g));
    assert(tail == head);
    if
    :: head != STUB ->
       assert(!node_freed[head] && node_next[head] == NIL); /* the tail */
       node_freed[head] = 1
    :: else
    fi;
    node_next[STUB] = NIL; tail = STUB; head = STUB
  }
}

/* flush_consumed (mbx__flush_consumed): one seq_cst fetch_sub. */
inline flush_consumed(g) {
  atomic {
    assert(LIFE_OK(g));
    pending = pending - consumed_unflushed;
    consumed_unflushed = 0
  }
}

/* Futex wake on the record's state word (mbx__platform_wake_all). */
inline caller_wake() {
  atomic { assert(ctx_live && !ctx_freed); caller_asleep = 0 }
}

/* record_unref (mbx__call_unref): the last reference frees the record. */
inline ctx_unref() {
  atomic {
    assert(ctx_live && !ctx_freed && crefs > 0);
    crefs--;
    if
    :: crefs == 0 -> ctx_freed = 1
    :: else
    fi
  }
}

/* settle (mbx__call_settle) from `from` to a final state (DONE, CANCELED):
 * seq_cst CAS, then, if won, read `sleeper` and wake (mbx__call_settle). */
inline settle_final(from, to, won, sl) {
#ifdef MUTANT_WAKE_BEFORE_PUBLISH
  /* Mutant: the waiter is woken before the outcome is published. */
  atomic { assert(ctx_live && !ctx_freed); sl = sleeper }
  if
  :: sl -> caller_wake()
  :: else
  fi;
  atomic {
    assert(ctx_live && !ctx_freed);
    if
    :: cstate == from -> cstate = to; won = 1
    :: else -> won = 0
    fi
  }
#else
  atomic {
    assert(ctx_live && !ctx_freed);
    if
    :: cstate == from -> cstate = to; won = 1
    :: else -> won = 0
    fi
  }
  if
  :: won ->
     atomic { assert(ctx_live && !ctx_freed); sl = sleeper }
     if
     :: sl -> caller_wake()
     :: else
     fi
  :: else
  fi;
#endif
  sl = 0
}

/* work_run (mbx__proxy_work_run): the sync message's run function, on the target. */
inline sync_run(ok) {
  /* mbx__proxy_work_run settle PENDING -> RUNNING; lost to an abandoning caller */
  atomic {
    assert(ctx_live && !ctx_freed);
    if
    :: cstate == C_PENDING -> cstate = C_RUNNING; ok = 1
    :: else -> ok = 0
    fi
  }
  if
  :: ok ->
     /* mbx__proxy_work_run fn(arg): the call's effects (on the target) */
     settle_final(C_RUNNING, C_DONE, ok, sync_sl)      /* mbx__proxy_work_run */
  :: else
  fi;
  ok = 0;
  ctx_unref()                                          /* mbx__proxy_work_run */
}

/* work_canceled (mbx__proxy_work_canceled): the sync message's cancel function. */
inline sync_cancel() {
  settle_final(C_PENDING, C_CANCELED, sync_won, sync_sl);
  sync_won = 0;
  ctx_unref()
}

/* owner_claim (mbx__token_owner_claim): CAS consumer FREE -> OWNER; ok = success. */
inline owner_claim(ok, g) {
  atomic {
    assert(LIFE_OK(g));
#ifdef MUTANT_NO_CONSUMER_TOKEN
    ok = 1
#else
    if
    :: consumer == CONS_FREE -> consumer = CONS_OWNER; ok = 1
    :: else -> ok = 0
    fi
#endif
  }
}

/* owner_unclaim (mbx__token_owner_unclaim): store consumer = FREE, release. */
inline owner_unclaim(g) {
#ifdef MUTANT_NO_CONSUMER_TOKEN
  skip
#else
  atomic { assert(LIFE_OK(g) && consumer == CONS_OWNER); consumer = CONS_FREE }
#endif
}

/* mbx__run_pending (core/drain.c): pops and runs at most budget messages,
 * holding the consumer token only around each pop. count = -1 stands for
 * MBX_ECLOSED (taken over by a closer before anything ran). */
inline run_pending(budget, count, n, hd, nx, prev, ok, g, linger) {
  count = 0;
  do
  :: count < budget ->
     owner_claim(ok, g);                               /* mbx__run_pending */
     if
     :: !ok -> count = (count > 0 -> count : -1); break
     :: else
     fi;
     queue_pop(n, hd, nx, prev, g);                    /* mbx__run_pending */
     if
     :: n == NIL && linger && count > 0 ->
        /* mbx__run_pending: a waiter's brief spin on the link, then pop again */
        queue_pop(n, hd, nx, prev, g)
     :: else
     fi;
     if
     :: n != NIL -> consumed_unflushed++               /* mbx__run_pending */
     :: else
     fi;
     owner_unclaim(g);                                 /* mbx__run_pending */
     if
     :: n == NIL -> break
     :: else
     fi;
     /* mbx__run_pending: read the node, free it, count it (single-writer
      * relaxed counter) */
     atomic {
       assert(LIFE_OK(g));
       assert(node_gen[n] == g);       /* stale handles never deliver here */
       assert(msg_state[n - 1] == M_QUEUED);
       msg_state[n - 1] = M_RUN;
       nodes_live--;
       count++;
       run_count++;
       if
       :: n - 1 == SYNC_MSG -> n = 0; ok = 1
       :: else -> n = 0; ok = 0
       fi
     }
     /* mbx__run_pending run(arg) */
     if
     :: ok -> sync_run(ok)
     :: else
     fi
  :: else -> break
  od;
  if
  :: count >= 0 ->
     owner_claim(ok, g);                               /* mbx__run_pending */
     if
     :: ok ->
        flush_consumed(g);                             /* mbx__run_pending */
        owner_unclaim(g)                               /* mbx__run_pending */
     :: else -> count = (count > 0 -> count : -1)
     fi
  :: else
  fi;
  ok = 0
}

/* mbx_send and mbx__send_node (core/send.c) of message m through a handle
 * of generation hg. */
inline mbx_send(m, hg, rc, sg, so, before, w, prev) {
  /* mbx_send lookup: the index is always valid here.
   * mbx_send, step 1 early refusal on a relaxed gate snapshot. */
  atomic { sg = gate_gen; so = gate_open }
#ifdef MUTANT_NO_GATE_COUNT
  /* Mutant: the early relaxed check is the only check; no in-flight count,
   * so a close cannot wait for this sender. */
  gate_refusal(sg, so, hg, rc);
  if
  :: rc != OK -> msg_state[m] = M_REJECTED
  :: else ->
     atomic { msg_state[m] = M_GATE; nodes_live++; node_gen[m + 1] = hg }
     queue_push(m + 1, prev, hg);
     atomic { assert(LIFE_OK(hg)); before = pending; pending++ }
     atomic { assert(LIFE_OK(hg)); w = waiting }
     if
     :: before == 0 && w -> owner_asleep = 0
     :: else
     fi
  fi
#else
  gate_refusal(sg, so, hg, rc);
  if
  :: rc != OK ->
#ifdef MUTANT_STALE_STATS
     /* The old reject(): rejected_closed++ on the record, after the
      * snapshot; the record may have been reused meanwhile (found by this
      * model). */
     if
     :: rc == ECLOSED -> atomic { assert(gate_gen == hg); rejected_closed++ }
     :: else
     fi;
#else
     /* reject(): CAS-increment only while the tag names our life */
     if
     :: rc == ECLOSED ->
        atomic { if :: rej_tag == hg -> assert(gate_gen == hg); rejected_closed++ :: else fi }
     :: else
     fi;
#endif
     msg_state[m] = M_REJECTED
  :: else ->
     /* mbx_send, step 2 allocate the node before counting (private) */
     atomic { msg_state[m] = M_GATE; nodes_live++; node_gen[m + 1] = hg }
#ifdef MUTANT_CHECK_BEFORE_COUNT
     /* Mutant: the gate check before the count (the Dekker pair with the
      * closer's step A and its read of pending broken). */
     atomic { sg = gate_gen; so = gate_open }
#endif
#ifdef MUTANT_LOST_WAKEUP
     /* Mutant: read waiting before counting the message (the Dekker
      * pair's order reversed on the sender side). */
     atomic { w = waiting }
#endif
     /* send_to_record, step 3 fetch_add(pending), seq_cst: counts the
      * message, and tells a closer that we are inside. pending may be a
      * closed or a later life's: it allows counts that come and go. */
     atomic { before = pending; pending++ }
#ifndef MUTANT_CHECK_BEFORE_COUNT
     /* send_to_record, step 4 the gate, seq_cst load */
     atomic { sg = gate_gen; so = gate_open }
#endif
     gate_refusal(sg, so, hg, rc);
     /* send_to_record capacity (relaxed): full if the count we saw is */
     if
     :: rc == OK -> atomic { if :: capacity > 0 && before >= capacity -> rc = EFULL :: else fi }
     :: else
     fi;
#ifndef MUTANT_LOST_WAKEUP
     /* send_to_record load waiting, seq_cst, if we took pending from 0 */
     if
     :: before == 0 -> atomic { w = waiting }
     :: else -> w = 0
     fi;
#endif
     if
     :: rc != OK ->
        /* send_to_record refuses: fetch_sub(pending), release; mbx_send
         * frees the node. Having taken pending from 0, it wakes (a later
         * sender's count saw 1): at worst a spurious wake. */
        atomic { pending--; nodes_live--; msg_state[m] = M_REJECTED }
        if
        :: before == 0 && w -> owner_asleep = 0
        :: else
        fi
     :: else ->
        queue_push(m + 1, prev, hg);                 /* send_to_record, step 5 */
        /* send_to_record, step 6 wake after the push: the record may
         * already serve a later life; a wake there is only spurious. */
        if
        :: before == 0 && w -> owner_asleep = 0
        :: else
        fi
     fi
  fi
#endif
}

/* close_and_cancel (core/closing.c) by the owner of life g (notify 0) or
 * by a closer from outside holding the record (notify 1); closed = 0 if
 * the gate refused (already closed by the other closer) and the other
 * closer drains, or if the closer from outside gave up. */
inline close_and_cancel(g, n, hd, nx, prev, closed, notify, owner, pinned) {
  /* mbx__gate_close, step A CAS clearing OPEN if the generation matches */
  atomic {
#if !ORPHAN
    assert(gate_gen == g);     /* only an orphan closer lets a life end first */
#endif
    if
    :: gate_gen == g && gate_open -> gate_open = 0; closed = 1
    :: else -> closed = 0      /* closed by another closer, or a later life */
    fi
  }
#ifndef MUTANT_EXIT_NO_TAKEOVER
  /* closing_take_over: the owner's exit finds the gate closed but the
   * queue not taken (relaxed load of the token, mbx__token_closed): a closer
   * from outside gave up on it (issue 18 item 22a) or has not claimed yet;
   * the owner then drains after step B, and the two claims decide who does.
   * Only the owner takes over: an orphan closer that did (a bug this model
   * found) could drain and retire a life whose live owner (misuse) had won
   * step A and was about to claim the token of the next life. */
  if
  :: !closed && !notify && owner ->
     /* The owner first pins its life (mbx__gate_pin_owned: an orphan
      * closer may have released OWNER and retired it meanwhile), then
      * reads the token; taken already: release the pin (closing_take_over). */
     atomic {
       if
       :: gate_gen == g && gate_owner -> gate_holds++; pinned = 1
       :: else
       fi
     }
     if
     :: pinned ->
        atomic { assert(LIFE_OK(g)); closed = (consumer != CONS_CLOSER) }
        if
        :: !closed -> hold_release(g, retirable_tmp); pinned = 0
        :: else
        fi
     :: else
     fi
  :: else
  fi;
#endif
  if
  :: closed ->
#ifndef MUTANT_NO_INFLIGHT_WAIT
  /* mbx__gate_close / mbx__gate_wait_senders, step B wait for capacity
   * setters inside the gate (acquire load loop; modelled as a blocking
   * guard: it only yields); senders are waited for in step C */
  (gate_inflight == 0);
#endif
  /* mbx__token_closer_claim take the queue for good: CAS consumer FREE ->
   * CLOSER, retried while the owner is inside a pop. A closer from outside
   * may give up on an owner inside a pop (MBX_EBUSY after its timeout: a
   * descheduled owner, issue 18 item 22a); either closer finds CLOSER if
   * the other one won (MBX_ECLOSED). The orphan's forced take-over from a
   * dead owner is not modelled (the model has no thread death). */
#ifndef MUTANT_NO_CONSUMER_TOKEN
  atomic {
    if
    :: consumer == CONS_FREE -> assert(LIFE_OK(g)); consumer = CONS_CLOSER
    :: consumer == CONS_CLOSER -> closed = 0               /* MBX_ECLOSED */
    :: notify && consumer == CONS_OWNER -> closed = 0      /* MBX_EBUSY */
    fi
  }
#endif
  if
  :: !closed && pinned -> hold_release(g, retirable_tmp); pinned = 0
  :: else
  fi
  :: else
  fi;
  if
  :: closed ->
  /* close_and_cancel, step C cancel everything queued, in order, until
   * pending counts nothing more than was consumed (closing_drain,
   * closing_left: a seq_cst load of pending); modelled as a blocking guard
   * that also lets a newly linked node be popped (the C loop yields). */
  do
  :: queue_pop(n, hd, nx, prev, g);
     if
     :: n == NIL ->
#ifdef MUTANT_NO_INFLIGHT_WAIT
        /* Mutant: stop at the first empty pop, not waiting for senders
         * that counted their message and have not pushed it yet. */
        break
#else
        if
        :: atomic { pending - consumed_unflushed == 0 -> assert(LIFE_OK(g)) } -> break
        :: atomic { node_next[head] != NIL -> assert(LIFE_OK(g)) }
        fi
#endif
     :: else ->
        atomic {
          assert(LIFE_OK(g));
          assert(node_gen[n] == g);
          assert(msg_state[n - 1] == M_QUEUED);
          msg_state[n - 1] = M_CANCELED;
          nodes_live--;
          consumed_unflushed++;
          canceled_count++
        }
        if
        :: n - 1 == SYNC_MSG -> sync_cancel()
        :: else
        fi
     fi
  od;
  queue_take_dummy(g);                         /* close_and_cancel, step C */
#ifdef MUTANT_NO_CLOSE_WAKE
  flush_consumed(g);                           /* close_and_cancel, step D */
#else
  /* closing_finish, step D: pending += PENDING_CLOSED - consumed (seq_cst),
   * so an owner about to sleep on pending == 0 does not, and refused
   * senders still on their way out take their counts back after us; then,
   * for a live owner closed from outside, read waiting (seq_cst) and wake
   * it. */
  atomic {
    assert(LIFE_OK(g));
    pending = pending - consumed_unflushed + PENDING_CLOSED;
    consumed_unflushed = 0
  }
  if
  :: notify -> atomic { assert(LIFE_OK(g)); if :: waiting -> owner_asleep = 0 :: else fi }
  :: else
  fi;
#endif
  atomic { assert(LIFE_OK(g)); close_done = 1 }
  :: else
  fi
}

/* mbx__gate_release_owner (core/gate.c, gate_drop): step E, a CAS that
 * drops OWNER only if the generation matches, OWNER is set and the life is
 * closed; retires the record if nothing else keeps it. */
inline release_owner(g, retirable) {
  atomic {
    if
    :: gate_gen == g && gate_owner && !gate_open ->
       gate_owner = 0;
#ifdef MUTANT_RETIRE_IGNORES_HOLDS
       retirable = 1
#else
       retirable = (gate_holds == 0)
#endif
    :: else -> retirable = 0
    fi
  }
  if
  :: retirable -> retire()                     /* gate_drop */
  :: else
  fi
}

/* mbx_release (core/gate.c, gate_drop) of a hold on life g. */
inline hold_release(g, retirable) {
  atomic {
    assert(gate_gen == g && gate_holds > 0);
    gate_holds--;
    retirable = (!gate_open && !gate_owner && gate_holds == 0)
  }
  if
  :: retirable -> retire()
  :: else
  fi
}

/* mbx__thread_exit (core/lifecycle.c): close_and_cancel, then owner_unbind
 * and step E. If someone else closed the mailbox first (a closer from
 * outside, or an orphan closer racing the exit path), the owner pins its
 * life (mbx__gate_pin_owned: a hold, only while its OWNER is still set)
 * before it touches the record, else leaves it alone. */
inline thread_exit(g, n, hd, nx, prev, retirable, pinned) {
  pinned = 0;
  close_and_cancel(g, n, hd, nx, prev, retirable, 0, 1, pinned); /* mbx__thread_exit */
  if
  :: retirable ->                              /* we closed it: OWNER pins */
     atomic { assert(LIFE_OK(g)); bound = 0 }  /* owner_unbind */
     release_owner(g, retirable);              /* owner_unbind, step E */
     if
     :: pinned -> hold_release(g, retirable)   /* a take-over's pin */
     :: else
     fi
  :: else ->
#ifdef MUTANT_OWNER_RELEASE_TWICE
     /* The old code: unbind and fetch_and(~OWNER) whoever closed it. */
     atomic { assert(LIFE_OK(g)); bound = 0 }
     atomic { gate_owner = 0; retirable = (!gate_open && gate_holds == 0) }
     if
     :: retirable -> retire()
     :: else
     fi
#elif defined(MUTANT_NO_PIN)
     /* Release by CAS, but touch the record without pinning it first. */
     atomic { assert(LIFE_OK(g)); bound = 0 }
     release_owner(g, retirable)
#else
     atomic {                                  /* mbx__gate_pin_owned */
       if
       :: gate_gen == g && gate_owner -> gate_holds++; retirable = 1
       :: else -> retirable = 0
       fi
     }
     if
     :: retirable ->
        atomic { assert(LIFE_OK(g)); bound = 0 }   /* owner_unbind */
        release_owner(g, retirable);               /* may be refused */
        hold_release(g, retirable)                 /* the pin */
     :: else                                       /* not ours: no touch */
     fi
#endif
  fi
}

/* mbx_thread_bind (core/lifecycle.c) */
inline thread_bind(g) {
  atomic {                                     /* mbx_thread_bind */
    assert(LIFE_OK(g) && gate_open);
    assert(bound == 0);
    bound = 1;
    target_bound = 1
  }
}

/* ---------------------------------------------------------------- processes */

/* The target thread of life 1: bind, serve ROUNDS receive calls, exit. */
proctype Target() {
  byte n, hd, nx, prev, count, budget, rounds;
  short p;
  bit ok, timed, slept, spun, retirable, taken, pinned, retirable_tmp;
  thread_bind(1);
  do
  :: rounds < ROUNDS ->
     rounds++;
     if
     :: true ->
        /* mbx_poll (core/drain.c): budget = pending, relaxed */
        atomic { assert(LIFE_OK(1)); p = pending }
        if
        :: p > 0 -> budget = p; run_pending(budget, count, n, hd, nx, prev, ok, 1, 0)
        :: else
        fi
     :: true ->
        /* mbx_wait (mbx__wait, core/wait.c), timed (at most one sleep, then the
         * deadline has passed) or untimed */
        if
        :: timed = 1
        :: timed = 0
        fi;
        slept = 0;
        spun = 0;
        do
        :: /* mbx__wait: relaxed load, taken over from outside? */
           atomic { assert(LIFE_OK(1)); taken = (consumer == CONS_CLOSER) }
           if
           :: taken -> break                                   /* MBX_ECLOSED */
           :: else
           fi;
           atomic { assert(LIFE_OK(1)); p = pending }         /* mbx__wait */
           if
           :: p > 0 ->       /* max(p, STREAM_RUN_BUDGET): more than NMSG */
              budget = NMSG;
              run_pending(budget, count, n, hd, nx, prev, ok, 1, 1);
              if
              :: count != 0 -> break                           /* mbx__wait */
              :: else                                          /* yield */
              fi
           :: p < 0             /* MBX__PENDING_CLOSED: seen at the top */
           :: p == 0 && !spun ->
              /* wait_loop's spin before the first sleep (spin_on_queue):
               * on the head's link, under the consumer token; one poll
               * stands for the spin (a poll that sees nothing changes
               * nothing). Then a pop at once (its sender counted the
               * message before it linked it). */
              spun = 1;
#ifndef MUTANT_SPIN_NO_TOKEN
              owner_claim(ok, 1);                              /* spin_on_queue */
#else
              /* Mutant: spin without the token; a closer from outside
               * may release the head node under the loads. */
              ok = 1;
#endif
              if
              :: ok ->
                 atomic { assert(LIFE_OK(1)); hd = head }       /* spin_on_queue */
                 atomic {                                       /* spin_on_queue */
                   assert(!node_freed[hd]);
                   nx = node_next[hd]
                 }
#ifndef MUTANT_SPIN_NO_TOKEN
                 owner_unclaim(1);                              /* spin_on_queue */
#endif
                 hd = 0;
                 if
                 :: nx != NIL ->
                    nx = 0;
                    budget = NMSG;                              /* STREAM_RUN_BUDGET */
                    run_pending(budget, count, n, hd, nx, prev, ok, 1, 1);
                    if
                    :: count != 0 -> break                      /* mbx__wait */
                    :: else
                    fi
                 :: else
                 fi
              :: else                        /* taken over: seen at the top */
              fi
           :: p == 0 && !spun -> spun = 1     /* MBX__WAIT_NO_SPIN, spinning off */
           :: p == 0 && spun ->
              if
              :: timed && slept -> break                       /* ETIMEDOUT */
              :: else
              fi;
#ifndef VARIANT_WAITING_AFTER_CHECK
              atomic { assert(LIFE_OK(1)); waiting = 1 }       /* mbx__wait */
#endif
              /* mbx__wait: re-read pending, then futex wait, which
               * blocks only if pending still equals 0 (atomic check). */
              atomic { assert(LIFE_OK(1)); p = pending }
              if
              :: p == 0 ->
#ifdef VARIANT_WAITING_AFTER_CHECK
                 /* Receiver-side order reversed: waiting set after the
                  * check. Not a bug: the futex re-checks (docs/model.md). */
                 atomic { assert(LIFE_OK(1)); waiting = 1 }
#endif
                 atomic { if :: pending == 0 -> owner_asleep = 1 :: else fi }
                 if
                 :: timed -> if
                             :: owner_asleep == 0
                             :: owner_asleep = 0; slept = 1    /* timeout */
                             fi
                 :: else ->
end_sleep:          (owner_asleep == 0)
                 fi
              :: else
              fi;
              atomic { assert(LIFE_OK(1)); waiting = 0 }       /* mbx__wait */
           fi
        od
     fi
  :: rounds < ROUNDS -> rounds = ROUNDS   /* the thread exits early */
  :: rounds == ROUNDS -> break
  od;
  target_exiting = 1;
  thread_exit(1, n, hd, nx, prev, retirable, pinned)
}

/* An async sender holding a handle of life 1, sending one message. */
proctype Sender(byte m) {
  byte rc, sg, prev;
  bit so, w;
  short before;
  mbx_send(m, 1, rc, sg, so, before, w, prev);
  atomic {
    if
    :: rc == OK -> assert(msg_state[m] >= M_QUEUED && msg_state[m] != M_REJECTED); sent_ok++
    :: else -> assert(msg_state[m] == M_REJECTED)
    fi
  }
}

/* A sync caller (mbx_proxy_sync / mbx_proxy_sync_timed, call_and_wait
 * in proxy/call.c, wait_for_outcome) to life 1, not serving. */
proctype SyncCaller() {
  byte rc, sg, prev, s;
  bit so, w, timed, expired, gaveup;
  short before;
  if
  :: timed = 1
  :: timed = 0
  fi;
  /* record_new (mbx__call_new): two references, caller and work */
  atomic { ctx_live = 1; crefs = 2; cstate = C_PENDING }
  mbx_send(SYNC_MSG, 1, rc, sg, so, before, w, prev);
  if
  :: rc != OK ->
     /* refused: nothing will run; the record is freed */
     atomic { assert(msg_state[SYNC_MSG] == M_REJECTED); crefs = 0; ctx_freed = 1; caller_rc = rc }
  :: else ->
     atomic { sent_ok++ }
     do
     :: atomic { assert(!ctx_freed); s = cstate }         /* wait_for_outcome */
        if
        :: s == C_DONE || s == C_CANCELED -> break
        :: else
        fi;
        if
        :: timed && expired && s == C_PENDING ->
           /* wait_for_outcome deadline passed: settle PENDING -> ABANDONED */
           atomic {
             assert(!ctx_freed);
             if
             :: cstate == C_PENDING -> cstate = C_ABANDONED; gaveup = 1
             :: else
             fi
           }
           if
           :: gaveup -> break
           :: else -> skip                                 /* just started */
           fi
        :: else ->
           /* sleep_on_state (proxy/call.c): sleeper = 1 (seq_cst), then a
            * futex wait on state == s (atomic check-and-block); timed only
            * while PENDING (once fn started, only its end counts) */
           atomic { assert(!ctx_freed); sleeper = 1 }
           atomic { assert(!ctx_freed); if :: cstate == s -> caller_asleep = 1 :: else fi }
           if
           :: caller_asleep == 0
           :: timed && s == C_PENDING && caller_asleep == 1 ->
              caller_asleep = 0; expired = 1                /* timeout */
           fi
        fi
     od;
     caller_rc = (gaveup -> 7 : cstate);
     ctx_unref()
  fi;
  caller_returned = 1
}

/* mbx_hold / mbx_release through a handle of life 1 (core/gate.c). */
proctype Holder() {
  bit held, retirable;
  /* mbx_hold CAS loop: gen and OPEN checked, holds + 1 */
  atomic {
    if
    :: gate_gen == 1 && gate_open -> gate_holds++; held = 1
    :: else
    fi
  }
  if
  :: held ->
     /* while held, the record serves life 1 (e.g. mbx_stats_get works) */
     atomic { assert(rstate == R_LIVE && gate_gen == 1) }
     /* mbx_release release CAS, acq_rel */
     atomic {
       assert(gate_gen == 1 && gate_holds > 0);
       gate_holds--;
       retirable = (!gate_open && !gate_owner && gate_holds == 0)
     }
     if
     :: retirable -> retire()
     :: else
     fi
  :: else
  fi
}

#if OUTSIDE
/* mbx__close_from_outside (core/lifecycle.c) through a handle of life 1, as
 * the runtime-exit path does for every open mailbox: hold, close and
 * cancel on this thread, release. The owner keeps running. */
proctype OutsideCloser() {
  byte n, hd, nx, prev;
  bit held, closed, retirable, pinned, retirable_tmp;
  /* Bound: a close from outside before the thread binds leaves the thread
   * without a mailbox and the record's OWNER hold with nobody to release
   * it (docs/model.md, findings); the model starts after the bind. */
  (target_bound);
  /* mbx__close_from_outside: mbx_hold (core/gate.c) */
  atomic {
    if
    :: gate_gen == 1 && gate_open -> gate_holds++; held = 1
    :: else
    fi
  }
  if
  :: held ->
     close_and_cancel(1, n, hd, nx, prev, closed, 1, 0, pinned); /* mbx__close_from_outside */
     /* mbx__close_from_outside: mbx_release (core/gate.c) */
     atomic {
       assert(gate_gen == 1 && gate_holds > 0);
       gate_holds--;
       retirable = (!gate_open && !gate_owner && gate_holds == 0)
     }
     if
     :: retirable -> retire()
     :: else
     fi
  :: else
  fi
}
#endif

#if ORPHAN
/* mbx_mailbox_close_orphan (core/lifecycle.c) through a handle of life 1,
 * racing the owner's exit path: a browser's death hook for a terminated
 * worker that still runs its exit (issue 18 item 6). Hold, close and
 * cancel, release the owner's hold for it (refused if the owner released
 * it), release the hold. Exactly one of the two releases OWNER, and the
 * record is retired once. */
proctype OrphanCloser() {
  byte n, hd, nx, prev;
  bit held, closed, retirable, pinned, retirable_tmp;
  (target_exiting);
  atomic {                                     /* mbx_hold */
    if
    :: gate_gen == 1 && gate_open -> gate_holds++; held = 1
    :: else
    fi
  }
  if
  :: held ->
     close_and_cancel(1, n, hd, nx, prev, closed, 0, 0, pinned);
     if
     :: closed ->
        atomic { assert(LIFE_OK(1)); bound = 0 }  /* orphan_release */
        release_owner(1, retirable)               /* orphan_release */
     :: else
     fi;
     hold_release(1, retirable)                   /* mbx_release */
  :: else
  fi
}
#endif

#if CAPSET
/* mbx_set_capacity (core/send.c) through a handle of life 1. */
proctype CapacitySetter() {
  byte sg, rc;
  bit so;
#ifdef MUTANT_STALE_CAPACITY
  /* The old code: check, then store. Found by this model. */
  atomic { sg = gate_gen; so = gate_open }      /* relaxed load */
  gate_refusal(sg, so, 1, rc);
  if
  :: rc == OK ->
     /* relaxed store: lands in whichever life is current */
     atomic { assert(gate_gen == 1); capacity = 2 }
  :: else
  fi
#else
  /* fetch_add(gate, 1 in flight), acquire: a close waits for us */
  atomic { sg = gate_gen; so = gate_open; gate_inflight++ }
  gate_refusal(sg, so, 1, rc);
  if
  :: rc == OK -> atomic { assert(gate_gen == 1); capacity = 2 }
  :: else
  fi;
  /* fetch_sub(gate, 1 in flight), release */
  atomic { gate_inflight-- }
#endif
}
#endif

/* A new thread whose mailbox reuses the record (mbx__record_open
 * in core/table.c, with quarantine threshold 0), then binds, polls, exits. */
proctype Reuser() {
  byte n, hd, nx, prev, count, budget;
  short p;
  bit ok, retirable, pinned, retirable_tmp;
  /* mbx__record_open under the registry lock: take the oldest quarantined
   * record, fold its counters, reset its queue */
end_wait_reuse:
  atomic {
    qlen > 0 ->
    assert(rstate == R_QUAR);
    qlen--;
    rstate = R_RESET;
    folded_run = folded_run + run_count; run_count = 0;
    folded_canceled = folded_canceled + canceled_count; canceled_count = 0;
    rejected_closed = 0;
    rej_tag = gate_gen + 1;    /* record_open: tag stored before the gate CAS */
    node_next[STUB] = NIL; tail = STUB; head = STUB;
    /* reset_life: take MBX__PENDING_CLOSED away, keep refused senders'
     * counts (they take them back themselves) */
    if
    :: pending < 0 -> pending = pending - PENDING_CLOSED
    :: else
    fi;
    consumed_unflushed = 0; waiting = 0; consumer = CONS_FREE;
    capacity = 0; bound = 0;
    close_done = 0
  }
  /* mbx__gate_open CAS: gen + 1, OPEN, OWNER, keep in-flight count */
  atomic {
    assert(gate_holds == 0);
    gate_gen++;
    gate_open = 1;
    gate_owner = 1;
    rstate = R_LIVE
  }
  thread_bind(2);
  /* mbx_poll */
  atomic { assert(LIFE_OK(2)); p = pending }
  if
  :: p > 0 -> budget = p; run_pending(budget, count, n, hd, nx, prev, ok, 2, 0)
  :: else
  fi;
  thread_exit(2, n, hd, nx, prev, retirable, pinned)
}

init {
  byte i;
  /* mbx_mailbox_create on a fresh record (new_record in
   * core/table.c, then the CAS of mbx__gate_open): nothing else runs yet. */
  atomic {
    node_next[STUB] = NIL; tail = STUB; head = STUB;
    gate_gen = 1; gate_open = 1; gate_owner = 1;
    rstate = R_LIVE;
    capacity = CAPACITY                       /* mbx_set_capacity(h, 1) */
  }
  atomic {
    run Target();
    i = 0;
    do
    :: i < NASYNC -> run Sender(i); i++
    :: else -> break
    od;
#if NSYNC
    run SyncCaller();
#endif
#if HOLDER
    run Holder();
#endif
#if OUTSIDE
    run OutsideCloser();
#endif
#if CAPSET
    run CapacitySetter();
#endif
#if ORPHAN
    run OrphanCloser();
#endif
    run Reuser()
  }
end_all:
  (_nr_pr == 1);
  /* Everything finished: exact accounting. */
  i = 0;
  do
  :: i < NMSG ->
     assert(msg_state[i] == M_RUN || msg_state[i] == M_CANCELED ||
            msg_state[i] == M_REJECTED);
     i++
  :: else -> break
  od;
  assert(sent_ok == folded_run + folded_canceled + run_count + canceled_count);
  assert(nodes_live == 0);                     /* node memory back to zero */
  assert(!ctx_live || ctx_freed);              /* context freed */
#if NSYNC
  assert(caller_returned);
#endif
  assert((pending == 0 || pending == PENDING_CLOSED) && gate_inflight == 0 &&
         gate_holds == 0);
  assert(rstate == R_QUAR && lives_retired == 2)
}

/* Liveness (pan -a -f): every sync caller returns, and a sleeping owner
 * with a counted message is eventually woken (no lost wake-up). */
ltl live {
#if NSYNC
  (<> caller_returned) &&
#endif
  [] ((owner_asleep && pending > 0) -> <> !owner_asleep) &&
  /* an owner asleep when its mailbox is taken over from outside wakes */
  [] ((owner_asleep && consumer == CONS_CLOSER) -> <> !owner_asleep)
}
