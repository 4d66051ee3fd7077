/*
 * Test-only hooks into the owner's pop (core/drain.c) and a sender's push
 * and post (core/send.c), for tests that need a thread stopped at a precise
 * point: the calling thread sets one for its own next pop or send. Not in any
 * public header; tests declare what they use.
 */
#include "record.h"

_Atomic int mbx__test_hooks_armed;
_Thread_local int mbx__tls_test_park_after_pop;

static void arm(void) {
  // Relaxed: see mbx__test_hooks_on.
  atomic_store_explicit(&mbx__test_hooks_armed, 1, memory_order_relaxed);
}

/* Sets *flag (if not NULL) once a delayed thread is where it stalls: a
 * test acts on the stall only then, never after a guessed sleep (under load
 * the thread was not there yet, and the test saw another case). */
static void say_stalled(_Atomic int **flag) {
  if (*flag)
    // Seq_cst: a test flag; its reader then acts on our stall.
    atomic_store(*flag, 1);
  *flag = NULL;
}

/* Issue 18 item 22b: after its next pop the calling thread releases the
 * consumer claim, sets *parked (if not NULL) and then sleeps forever instead
 * of running the message, as if its worker were killed right there. A test
 * kills it only once *parked is set: a kill earlier, inside the pop, is
 * another case (the message is abandoned, <mbx/thread.h>). */
static _Thread_local _Atomic int *tls_parked;

void mbx__test_park_after_pop(_Atomic int *parked) {
  mbx__tls_test_park_after_pop = 1;
  tls_parked = parked;
  arm();
}

void mbx__test_park_forever(void) {
  static _Atomic int32_t never_set;
  say_stalled(&tls_parked);
  for (;;)
    mbx__platform_wait(&never_set, 0, -1);
}

void mbx__test_sleep_ms(double ms) {
  _Atomic int32_t never = 0;
  for (double end = mbx__platform_now_ms() + ms, left = ms; left > 0;
       left = end - mbx__platform_now_ms())
    mbx__platform_wait(&never, 0, left);
}

_Thread_local mbx__test_stall mbx__tls_test_pop_stall, mbx__tls_test_link_stall,
    mbx__tls_test_push_stall, mbx__tls_test_post_stall;

static void stall_set(mbx__test_stall *s, double ms, _Atomic int *reached) {
  s->ms = ms;
  s->reached = reached;
  arm();
}

void mbx__test_stall_run(mbx__test_stall *s) {
  double ms = s->ms;
  s->ms = 0;
  say_stalled(&s->reached);
  mbx__test_sleep_ms(ms);
}

/* Issue 18 items 16 and 22a: the calling thread's next pop holds the
 * consumer claim for ms milliseconds first, as an owner descheduled (or
 * killed) there would; *in_claim is set when it holds it. */
void mbx__test_pop_delay_ms(double ms, _Atomic int *in_claim) {
  stall_set(&mbx__tls_test_pop_stall, ms, in_claim);
}

/* Issue 18 item 9: the calling thread's next send sleeps ms milliseconds
 * between its exchange on the tail and its link, as a sender descheduled
 * there would: until then the owner sees the queue end before its node,
 * while later senders' messages are already counted in pending. *exchanged
 * is set when it has exchanged. */
void mbx__test_link_delay_ms(double ms, _Atomic int *exchanged) {
  stall_set(&mbx__tls_test_link_stall, ms, exchanged);
}

/* Issue 17: the calling thread's next send, once counted in pending and
 * accepted by the gate, sets *stalling and sleeps ms milliseconds before it
 * pushes its message, as a sender descheduled there would: a close meanwhile
 * must wait for the push and cancel the message. */
void mbx__test_push_delay_ms(double ms, _Atomic int *stalling) {
  stall_set(&mbx__tls_test_push_stall, ms, stalling);
}

/* The calling thread's next posted wakeup (core/send.c, post_wake: an
 * event-loop owner without Atomics.waitAsync) sets *posting, sleeps ms
 * milliseconds and then reaches a cancellation point, as a post whose
 * allocator lock is contended does on Emscripten 5.x. */
void mbx__test_post_delay_ms(double ms, _Atomic int *posting) {
  stall_set(&mbx__tls_test_post_stall, ms, posting);
}

/* A thread killed between forgetting its batch of consumed nodes and
 * dropping it from their block leaks that block (core/nodes.c; <mbx/thread.h>,
 * "Abnormal death"): the accepted cost of never dropping twice. A test that
 * kills workers to find other leaks installs guard (test/support/
 * kill_guard.h): called with 1 before that window and 0 after it, on the
 * releasing thread, it takes the lock the killer holds, so no kill lands
 * inside (the batch is then the orphan closer's to drop). Set it before the
 * threads it guards start; NULL removes it. */
_Atomic(mbx__test_guard_fn) mbx__test_release_guard;

void mbx__test_release_window_guard(mbx__test_guard_fn guard) {
  // Relaxed: set before the guarded threads start (thread creation orders
  // it).
  atomic_store_explicit(&mbx__test_release_guard, guard, memory_order_relaxed);
  arm();
}
