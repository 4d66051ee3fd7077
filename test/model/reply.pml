/*
 * Promela model of a serving sync caller's reply handshake (docs/proxying.md):
 * whether the reporter of a call's outcome sends a reply message to the
 * caller's mailbox, decided by CAS on reply_state (proxy/proxy_internal.h).
 * Caller: proxy/call.c wait_for_outcome and collect_reply; reporter:
 * proxy/ctx.c mbx__call_settle. One call, one caller, one reporter; every
 * statement is sequentially consistent (the C code's orders are argued
 * where it runs). Checked (test/model.test.mjs):
 * - a reply is never sent after its caller returned (no stray reply in its
 *   mailbox: issue 18 item 8), and at most one is sent;
 * - a caller never waits for a reply that is not coming (no invalid end
 *   state: the caller's wait sleeps until a message arrives);
 * - no reply is sent to a caller whose spin saw the outcome (issue 17: it
 *   cost the caller a message it then had to wait for).
 * Mutants: MUTANT_SPIN_HANDS_BACK (the old code: a spin that saw the outcome
 * moved WATCHING -> ARMED, and a reporter that came next sent a reply);
 * MUTANT_SKIP_WITHOUT_OUTCOME (a spin that ran out also moves to SKIPPED:
 * the caller then sleeps for a reply nobody sends).
 */
#define ARMED 0
#define WATCHING 1
#define SENT 2
#define SKIPPED 3
#define ARRIVED 4

#define PENDING 0
#define DONE 2

byte state = PENDING;  /* the call's state (RUNNING is not needed here) */
byte rs = ARMED;       /* reply_state */
chan mailbox = [1] of { bit }; /* the caller's mailbox: the reply message */
bit returned;          /* the caller returned from mbx_proxy_sync */
bit spin_saw_outcome;  /* ghost: the caller's spin ended on the outcome */
byte replies;          /* ghost: replies sent */

active proctype reporter() {
  bit send = 0;
  state = DONE; /* mbx__call_settle: CAS RUNNING -> DONE, seq_cst */
  /* the CAS loop on reply_state */
  atomic {
    if
    :: rs == ARMED -> rs = SENT; send = 1
    :: rs == WATCHING -> rs = SKIPPED
    :: else /* SKIPPED: the caller saw the outcome first */
    fi
  }
  if
  :: send ->
     assert(!returned);         /* no stray reply */
     assert(!spin_saw_outcome); /* no reply to a caller that saw it */
     replies++;
     assert(replies == 1);
     mailbox!1                  /* mbx__send_node to the caller */
  :: else
  fi
}

active proctype caller() {
  bit watching = 0;
  bit settled = 0;
  /* ARMED -> WATCHING before the spin (fails if the reporter decided) */
  atomic {
    if
    :: rs == ARMED -> rs = WATCHING; watching = 1
    :: else
    fi
  }
  if
  :: watching ->
     /* mbx__spin_while_between on state: sees the outcome, or its budget
      * runs out first */
     if
     :: state == DONE -> settled = 1; spin_saw_outcome = 1
     :: true -> settled = 0
     fi;
#ifdef MUTANT_SKIP_WITHOUT_OUTCOME
     settled = 1;
#endif
     atomic {
       if
#ifdef MUTANT_SPIN_HANDS_BACK
       :: rs == WATCHING -> rs = ARMED
#else
       :: rs == WATCHING && settled -> rs = SKIPPED
       :: rs == WATCHING && !settled -> rs = ARMED
#endif
       :: else /* the reporter moved it to SKIPPED */
       fi
     }
  :: else
  fi;
  /* The wait: check the state, else serve the mailbox (mbx__wait sleeps
   * until a message runs: here only the reply can come). */
  do
  :: state == DONE -> break
  :: else -> mailbox?1; rs = ARRIVED /* reply_arrived */
  od;
  /* collect_reply: ARMED -> SKIPPED, or serve until a sent reply arrived */
  atomic {
    if
    :: rs == ARMED -> rs = SKIPPED
    :: else
    fi
  }
  do
  :: rs == SENT -> mailbox?1; rs = ARRIVED
  :: else -> break
  od;
  returned = 1;
  assert(rs == SKIPPED || rs == ARRIVED)
}
