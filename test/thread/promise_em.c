// mbx-test-flavors: wasm wasm-asan
// mbx-test-requires: emscripten/promise.h
// mbx-test-timeout: 120
/*
 * The em_promise_t form (Emscripten 4.x/5.x only): mbx_proxy_promise
 * shaped like emscripten_proxy_promise. From the main thread in its event
 * loop: fulfilled with fn's value (a worker in mbx_wait, one in its event
 * loop, main itself), with NULL for mbx_proxy_promise_run's void fn
 * (upstream's signature); rejected with the MBX_E* code as the reason, never
 * with none: a closed handle (MBX_ECLOSED), a null fn (MBX_EINVAL), a
 * target that exits before running the work (MBX_ECANCELED); a handle the
 * caller destroys before the promise settles (every one here); 200
 * concurrent promises.
 */
#include "proxy_util.h"

#include <emscripten/emscripten.h>
#include <mbx/promise.h>
#include <stdint.h>

#define CONCURRENT 200

static _Atomic int g_release, g_loop_ready, g_fn_runs;
static int g_settled, g_expected;
static mbx_handle g_server, g_doomed, g_loop;
static pthread_t g_server_t, g_doomed_t;

static void *twice(void *arg) {
  atomic_fetch_add(&g_fn_runs, 1);
  return (void *)((uintptr_t)arg * 2);
}
static void count_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_fn_runs, 1);
}
static void block(void *arg) {
  (void)arg;
  while (!atomic_load(&g_release))
    sleep_ms(0.2);
}
static void *loop_main(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  atomic_store(&g_loop_ready, 1);
  emscripten_exit_with_live_runtime();
  return NULL;
}

/* Runs from the main thread's drain (see settled). */
static void finish(void *unused) {
  (void)unused;
  CHECK_EQ(atomic_load(&g_fn_runs), 4 + CONCURRENT);
  stop_server(g_server_t, g_server);
  CHECK_EQ(pthread_join(g_doomed_t, NULL), 0);
  check_no_live_calls();
  printf("promise_em: 3 values and a void fn (NULL), %d concurrent, "
         "rejected ECLOSED, EINVAL x2, "
         "ECANCELED with the code as reason; early destroy\n",
         CONCURRENT);
  printf("PASS promise_em\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
static void settled(void) {
  /* Not from the promise reaction itself: emscripten_force_exit unwinds
   * with a throw, which would reject the reaction's promise. */
  if (++g_settled == g_expected)
    CHECK_EQ(mbx_proxy_async(mbx_self(), finish, NULL, NULL), MBX_OK);
}

/* data: the expected value; a rejection fails the test. */
static em_promise_result_t expect_value(void **result, void *data,
                                        void *value) {
  (void)result;
  CHECK_EQ((uintptr_t)value, (uintptr_t)data);
  settled();
  return EM_PROMISE_FULFILL;
}
static em_promise_result_t unexpected_reject(void **result, void *data,
                                             void *reason) {
  (void)result;
  (void)data;
  printf("FAIL: rejected with %d\n", (int)(intptr_t)reason);
  CHECK(0);
  return EM_PROMISE_FULFILL;
}
/* data: the expected code. */
static em_promise_result_t unexpected_value(void **result, void *data,
                                            void *value) {
  (void)result;
  (void)data;
  printf("FAIL: fulfilled with %p\n", value);
  CHECK(0);
  return EM_PROMISE_FULFILL;
}
static em_promise_result_t expect_code(void **result, void *data,
                                       void *reason) {
  (void)result;
  CHECK_EQ((int)(intptr_t)reason, (int)(intptr_t)data);
  settled();
  return EM_PROMISE_FULFILL;
}

static void expect(em_promise_t p, int ok, intptr_t want) {
  CHECK(p != NULL);
  em_promise_t q = ok ? emscripten_promise_then(p, expect_value,
                                                unexpected_reject, (void *)want)
                      : emscripten_promise_then(p, unexpected_value,
                                                expect_code, (void *)want);
  /* Both handles go before the promise settles: the callbacks still run. */
  emscripten_promise_destroy(p);
  emscripten_promise_destroy(q);
  g_expected++;
}

int main(void) {
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  g_server = start_server(&g_server_t);
  g_doomed = start_server(&g_doomed_t);
  pthread_t t;
  mbx_handle closed = start_server(&t);
  stop_server(t, closed);
  CHECK_EQ(pthread_create(&t, NULL, loop_main, NULL), 0);
  g_loop = mbx_thread_handle(t);
  CHECK_EQ(pthread_detach(t), 0);
  while (!atomic_load(&g_loop_ready))
    sched_yield();

  expect(mbx_proxy_promise(g_server, twice, (void *)21), 1, 42);
  expect(mbx_proxy_promise(g_loop, twice, (void *)5), 1, 10);
  expect(mbx_proxy_promise(mbx_self(), twice, (void *)6), 1, 12);
  for (uintptr_t i = 0; i < CONCURRENT; i++)
    expect(mbx_proxy_promise(i & 1 ? g_loop : g_server, twice, (void *)i), 1,
           (intptr_t)(2 * i));
  /* Upstream's shape: void fn, fulfilled with NULL. */
  expect(mbx_proxy_promise_run(g_loop, count_run, (void *)3), 1, 0);
  expect(mbx_proxy_promise_run(g_server, NULL, NULL), 0, MBX_EINVAL);
  expect(mbx_proxy_promise(closed, twice, NULL), 0, MBX_ECLOSED);
  expect(mbx_proxy_promise(g_server, NULL, NULL), 0, MBX_EINVAL);
  CHECK_EQ(mbx_proxy_async(g_doomed, block, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_async(g_doomed, exit_thread, NULL, NULL), MBX_OK);
  expect(mbx_proxy_promise(g_doomed, twice, NULL), 0, MBX_ECANCELED);
  atomic_store(&g_release, 1);
  emscripten_exit_with_live_runtime();
  return 99;
}
