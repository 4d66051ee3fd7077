// mbx-test-timeout: 60
/*
 * A thread that ends while it is blocked in mbx_broadcast must not hang
 * the targets or lose the broadcast's release.
 *
 * 1. Canceled. mbx_broadcast is not a cancellation point
 *    (<mbx/mailbox.h>). A caller without a mailbox waits on a condition
 *    variable under the broadcast's mutex; pthread_cond_wait is a
 *    cancellation point, and a thread canceled there ends holding the
 *    mutex (POSIX re-locks it before the cleanup handlers run). The last
 *    target to answer then locked that mutex to wake the caller and hung
 *    for good: before the fix, this test's main thread (the target) hung
 *    in mbx_poll. Now the wait ignores the cancel, returns MBX_OK once main
 *    answered, and the thread ends at its next cancellation point.
 * 2. Ended by a message it runs while it waits (pthread_exit). Before the
 *    fix its reference to the broadcast was never dropped: release never
 *    ran, the broadcast leaked. Now release runs once, after the last
 *    target (main) answered.
 * 3. Ended by its own run of fn (pthread_exit in fn, on the caller).
 *    Before the fix the broadcast never completed: it stayed registered,
 *    and every thread started later ran fn as a catch-up; release never
 *    ran. Now the caller's run counts as done, the broadcast completes when
 *    main answered, release runs once, and a new thread does not run fn.
 * 4. A thread that starts while a broadcast waits runs fn in its catch-up,
 *    and fn ends that thread (pthread_exit). Before the fix its count in
 *    the broadcast was never taken back: the caller waited for good. Now
 *    the broadcast completes once main answered.
 */
#include "test_threads.h"
#include "watchdog.h"

#include <mbx/broadcast.h>
#include <mbx/thread.h>
#include <pthread.h>

static _Atomic int g_ran, g_waiting, g_released, g_dog_quiet, g_rc = 1;

static void on_every_thread(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
}

/* Ends the thread that runs it, if that is the broadcast's caller. */
static _Thread_local int tls_is_caller;
static void quit_on_caller(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
  if (tls_is_caller)
    pthread_exit((void *)7);
}

static void on_release(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_released, 1);
}

/* Gives up its mailbox, so that it is no target and waits without
 * serving; is canceled while it waits. */
static void *canceled_caller(void *arg) {
  (void)arg;
  CHECK(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT) >= 0);
  atomic_store(&g_waiting, 1);
  atomic_store(&g_rc,
               mbx_broadcast(on_every_thread, NULL, 0, -1, NULL, NULL, 0));
  for (;;)
    pthread_testcancel();
  return NULL;
}

/* Serves its mailbox while it waits, where `quit` (sent by main) ends it. */
static void *exiting_caller(void *arg) {
  (void)arg;
  atomic_store(&g_rc,
               mbx_broadcast_with_release(on_every_thread, NULL, on_release, 0,
                                          -1, NULL, NULL, 0));
  return NULL; /* not reached */
}

static void *caller_quits_in_fn(void *arg) {
  (void)arg;
  tls_is_caller = 1;
  atomic_store(&g_rc,
               mbx_broadcast_with_release(quit_on_caller, NULL, on_release, 0,
                                          -1, NULL, NULL, 0));
  return NULL; /* not reached */
}

static void *returns_at_once(void *arg) { return arg; }

/* Part 4: fn ends every thread but main and the broadcast's caller: the
 * only other thread to run it is the one started meanwhile. */
static pthread_t g_main_thread;
static void quit_if_starting(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_ran, 1);
  if (!tls_is_caller && !pthread_equal(pthread_self(), g_main_thread))
    pthread_exit((void *)9);
}
static void *caller_waits(void *arg) {
  (void)arg;
  tls_is_caller = 1;
  atomic_store(&g_waiting, 1);
  atomic_store(&g_rc,
               mbx_broadcast(quit_if_starting, NULL, 0, -1, NULL, NULL, 0));
  return NULL;
}

/* The watchdog of watchdog.h, without a mailbox: it must not be a target
 * that never answers. */
static void *quiet_watchdog(void *arg) {
  CHECK(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT) >= 0);
  atomic_store(&g_dog_quiet, 1);
  return watchdog_main_(arg);
}

/* Main is the only target: answer until fn ran `want` times in all. */
static void answer_until(int want) {
  for (int i = 0; i < 10000 && atomic_load(&g_ran) < want; i++) {
    mbx_poll();
    sleep_ms(1);
  }
  CHECK_EQ(atomic_load(&g_ran), want);
}

int main(void) {
  watchdog_what_ = "broadcast_caller_ends";
  watchdog_ms_ = 30000;
  pthread_t dog;
  CHECK_EQ(pthread_create(&dog, NULL, quiet_watchdog, NULL), 0);
  pthread_detach(dog);
  /* Before any broadcast: else it may run fn as a starting thread. */
  wait_for_count(&g_dog_quiet, 1);
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_ran, 0);
    atomic_store(&g_waiting, 0);
    atomic_store(&g_rc, 1);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, canceled_caller, NULL), 0);
    wait_for_count(&g_waiting, 1);
    sleep_ms(50); /* let it reach its wait: main has not answered */
    CHECK_EQ(pthread_cancel(t), 0);
    sleep_ms(50);
    answer_until(2); /* the caller ran fn itself, then main */
    void *result = NULL;
    CHECK_EQ(pthread_join(t, &result), 0);
    CHECK(result == PTHREAD_CANCELED);
    /* The cancel waited: the broadcast returned, every target answered. */
    CHECK_EQ(atomic_load(&g_rc), MBX_OK);
  }
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_ran, 0);
    atomic_store(&g_released, 0);
    atomic_store(&g_rc, 1);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, exiting_caller, NULL), 0);
    /* Runs in the caller's wait: it polls only there. */
    CHECK_EQ(mbx_send(mbx_thread_handle(t), quit, NULL, NULL), MBX_OK);
    void *result = NULL;
    CHECK_EQ(pthread_join(t, &result), 0);
    CHECK(result == (void *)5);
    CHECK_EQ(atomic_load(&g_rc), 1); /* it never returned */
    CHECK_EQ(atomic_load(&g_released), 0);
    answer_until(2);
    /* Main's answer was the last reference: release ran there, once. */
    CHECK_EQ(atomic_load(&g_released), 1);
  }
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_ran, 0);
    atomic_store(&g_released, 0);
    atomic_store(&g_rc, 1);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, caller_quits_in_fn, NULL), 0);
    void *result = NULL;
    CHECK_EQ(pthread_join(t, &result), 0);
    CHECK(result == (void *)7);
    CHECK_EQ(atomic_load(&g_rc), 1); /* it never returned */
    CHECK_EQ(atomic_load(&g_released), 0);
    answer_until(2);
    CHECK_EQ(atomic_load(&g_released), 1);
    /* Complete, so unregistered: a new thread does not catch up on it. */
    pthread_t late;
    CHECK_EQ(pthread_create(&late, NULL, returns_at_once, NULL), 0);
    CHECK_EQ(pthread_join(late, NULL), 0);
    CHECK_EQ(atomic_load(&g_ran), 2);
  }
  g_main_thread = pthread_self();
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_ran, 0);
    atomic_store(&g_waiting, 0);
    atomic_store(&g_rc, 1);
    pthread_t t, starter;
    CHECK_EQ(pthread_create(&t, NULL, caller_waits, NULL), 0);
    wait_for_count(&g_waiting, 1);
    /* The broadcast is registered (the caller ran fn itself first). */
    wait_for_count(&g_ran, 1);
    CHECK_EQ(pthread_create(&starter, NULL, returns_at_once, NULL), 0);
    void *result = NULL;
    CHECK_EQ(pthread_join(starter, &result), 0);
    CHECK(result == (void *)9); /* fn ended it in its catch-up */
    answer_until(3);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(atomic_load(&g_rc), MBX_OK);
  }
  printf("PASS broadcast_caller_ends: 3 callers without a mailbox canceled "
         "in mbx_broadcast returned MBX_OK, then ended; 3 callers ended by "
         "a message they ran while waiting, 3 by their own run of fn; each "
         "release ran once; 3 threads ended by a catch-up's fn did not hold "
         "up the broadcast\n");
  return 0;
}
