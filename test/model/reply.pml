/*
 * Promela model of a serving sync caller's reply handshake (docs/proxying.md):
 * whether the reporter of a call's outcome sends a reply message to the
 * caller's mailbox, decided on reply_state (proxy/proxy_internal.h).
 * Caller: proxy/call.c wait_for_outcome and collect_reply; reporter:
 * proxy/ctx.c mbx__call_settle. One call, one caller, one reporter; every
 * statement is sequentially consistent (the C code's orders are argued
 * where it runs). The record starts WATCHING: the caller spins on the
 * call's state first, and only the caller moves WATCHING (to ARMED, when
 * its spin ran out); the reporter sends a reply only from ARMED and writes
 * nothing otherwise (issue 17: its WATCHING -> SKIPPED and the caller's
 * ARMED -> WATCHING were two writes on the line the other side was
 * reading). Checked (test/model.test.mjs):
 * - a reply is never sent after its caller returned (no stray reply in its
 *   mailbox: issue 18 item 8), and at most one is sent;
 * - a caller never waits for a reply that is not coming (no invalid end
 *   state: the caller's wait sleeps until a message arrives);
 * - no reply is sent to a caller whose spin saw the outcome (issue 17: it
 *   cost the caller a message it then had to wait for).
 * Mutants: MUTANT_SPIN_HANDS_BACK (a spin that saw the outcome hands the
 * decision back, WATCHING -> ARMED, as the code before issue 17 did, and a
 * reporter that comes next sends a reply); MUTANT_SKIP_WITHOUT_OUTCOME (a
 * spin that ran out keeps WATCHING as if it had seen the outcome: the
 * caller then sleeps for a reply nobody sends); MUTANT_NO_RECHECK (a
 * caller that handed the decision back waits for the reply without first
 * re-reading the state: the reporter read WATCHING before the hand-back).
 */
#define ARMED 0
#define WATCHING 1
#define SENT 2
#define SKIPPED 3
#define ARRIVED 4

#define PENDING 0
#define DONE 2

byte state = PENDING;  /* the call's state (RUNNING is not needed here) */
byte rs = WATCHING;    /* reply_state: a serving caller's record starts so */
chan mailbox = [1] of { bit }; /* the caller's mailbox: the reply message */
bit returned;          /* the caller returned from mbx_proxy_sync */
bit spin_saw_outcome;  /* ghost: the caller's spin ended on the outcome */
byte replies;          /* ghost: replies sent */

active proctype reporter() {
  bit send = 0;
  state = DONE; /* mbx__call_settle: CAS RUNNING -> DONE, seq_cst */
  /* a load of reply_state, seq_cst, then a CAS ARMED -> SENT */
  atomic {
    if
    :: rs == ARMED -> rs = SENT; send = 1
    :: else /* WATCHING: the caller sees the outcome, in its spin or in the
             * re-check after its hand-back; SKIPPED: it saw it first */
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
  bit settled = 0;
  /* The spin (on the record's settled hint, which the reporter sets to
   * the final state, with release, after its CAS on state): it read the
   * outcome, or its budget ran out first. Reading the hint final is
   * reading state final, so the hint is folded into that read of state.
   * A caller that saw it returns at once (the loop below breaks at once
   * for it). */
  if
  :: state == DONE -> settled = 1; spin_saw_outcome = 1
  :: true -> settled = 0
  fi;
#ifdef MUTANT_SKIP_WITHOUT_OUTCOME
  settled = 1;
#endif
#ifdef MUTANT_SPIN_HANDS_BACK
  settled = 0;
#endif
  if
  :: !settled ->
     /* hand the decision back: a store, seq_cst (only the caller moves
      * WATCHING) */
     assert(rs == WATCHING);
     rs = ARMED
  :: else
  fi;
  /* The wait: check the state (seq_cst), else serve the mailbox (mbx__wait
   * sleeps until a message runs: here only the reply can come). */
#ifdef MUTANT_NO_RECHECK
  if
  :: !settled -> mailbox?1; rs = ARRIVED
  :: else
  fi;
#endif
  do
  :: state == DONE -> break
  :: else -> mailbox?1; rs = ARRIVED /* reply_arrived */
  od;
  /* collect_reply: WATCHING (our spin saw the outcome) and the final states
   * need nothing; ARMED -> SKIPPED, or serve until a sent reply arrived */
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
  assert(rs == SKIPPED || rs == ARRIVED || (rs == WATCHING && settled))
}
