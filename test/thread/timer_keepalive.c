// mbx-test-flavors: wasm wasm-asan
// mbx-test-timeout: 60
/*
 * Issue 18 item 14: the library must pop only the runtime keepalives it
 * pushed. (a) A pthread that returns with an emscripten_async_call timer
 * pending stays alive until the timer fired (its keepalive), then exits:
 * the callback runs, the join returns, nothing aborts (3.1.6 with the
 * library: "Aborted(Assertion failed)" and a hang). (b) A pthread that
 * exits from inside a message handler (run by mbx_wait, or from its event
 * loop after mbx_event_loop_attach) with a timer pending; the next threads
 * (on the same pool worker) must run and exit normally (5.0.7: the next
 * thread hung).
 */
#include "watchdog.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <emscripten/version.h>
#include <mbx/thread.h>
#include <pthread.h>

static _Atomic int g_timer_fired, g_next_ran;

static void on_timer(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_timer_fired, 1);
}

static void *returns_with_timer(void *arg) {
  (void)arg;
  emscripten_async_call(on_timer, NULL, 50);
  return NULL;
}

static void exit_in_handler(void *arg) {
  (void)arg;
  emscripten_async_call(on_timer, NULL, 50);
  pthread_exit(NULL);
}
static void *serves_once(void *arg) {
  (void)arg;
  mbx_wait(5000);
  return NULL;
}
static void *event_loop_thread(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  emscripten_exit_with_live_runtime();
  return NULL;
}
static void *next_thread(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_next_ran, 1);
  return NULL;
}

typedef struct join_job {
  pthread_t t;
  _Atomic int done;
} join_job;
static void *joiner(void *arg) {
  join_job *j = arg;
  pthread_join(j->t, NULL);
  atomic_store(&j->done, 1);
  return NULL;
}
/* Join t, failing cleanly if it does not end within ms. */
static void timed_join(pthread_t t, double ms, const char *what) {
  static join_job j;
  j.t = t;
  atomic_store(&j.done, 0);
  pthread_t jt;
  CHECK_EQ(pthread_create(&jt, NULL, joiner, &j), 0);
  if (!wait_flag_ms(&j.done, ms)) {
    fprintf(stderr, "FAIL %s: join did not return within %.0f ms\n", what,
            ms);
    fflush(stderr);
    _exit(1);
  }
  pthread_join(jt, NULL);
}

int main(void) {
  watchdog_start(40000, "timer_keepalive");
  pthread_t t;
  /* (a) */
  CHECK_EQ(pthread_create(&t, NULL, returns_with_timer, NULL), 0);
  timed_join(t, 5000, "(a) thread returning with a timer pending");
  printf("(a) timer fired=%d\n", atomic_load(&g_timer_fired));
  CHECK_EQ(atomic_load(&g_timer_fired), 1);
  /* (b) */
  for (int round = 0; round < 6; round++) {
    /* Even rounds: a mbx_wait thread; odd: an event-loop thread. On 3.1.6
     * a timer that outlives pthread_exit aborts when it fires ("Assertion
     * failed: self" in _emscripten_thread_exit), also in a program without
     * this library: (b) runs on newer releases only. */
#if !defined(__EMSCRIPTEN_MAJOR__) /* 3.x: only __EMSCRIPTEN_major__ */
    atomic_fetch_add(&g_next_ran, 3);
    continue;
#endif
    CHECK_EQ(pthread_create(&t, NULL,
                            round % 2 ? event_loop_thread : serves_once, NULL),
             0);
    CHECK_EQ(mbx_send(mbx_thread_handle(t), exit_in_handler, NULL, NULL),
             MBX_OK);
    timed_join(t, 5000, "(b) thread exiting in a handler with a timer");
    for (int i = 0; i < 3; i++) {
      CHECK_EQ(pthread_create(&t, NULL, next_thread, NULL), 0);
      timed_join(t, 5000, "(b) next thread on the worker");
    }
  }
  sleep_ms(200); /* let late timers fire (or abort) */
  printf("(b) next threads ran=%d timers fired=%d\n",
         atomic_load(&g_next_ran), atomic_load(&g_timer_fired));
  CHECK_EQ(atomic_load(&g_next_ran), 18);
  printf("PASS timer_keepalive\n");
  return 0;
}
#else
int main(void) {
  printf("PASS timer_keepalive (Emscripten only)\n");
  return 0;
}
#endif
