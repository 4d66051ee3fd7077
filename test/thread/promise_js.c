// mbx-test-flavors: wasm wasm-asan
// mbx-test-timeout: 120
/*
 * Promises for JS callers (<mbx/promise.h>, Module.mbxCall/mbxPromise). The
 * Node main thread, attached to its event loop, calls into a worker in its
 * event loop and into a worker blocked in mbx_wait, and awaits: values;
 * 1,000 concurrent promises settled once each (fn ran 1,000 times, the JS
 * table is empty after); a call to main itself; the C form handed to JS;
 * a target that exits before running the work and one that exits inside
 * it (MBX_ECANCELED); a closed and a stale handle (rejections, not
 * throws); null fn, bad handles and unknown ids (MBX_EINVAL); a caller
 * with no mailbox (MBX_EPERM, from a TSD destructor); a worker in its
 * event loop calling main with Module.mbxCall; a worker that exits with
 * its promise pending (the work, not started, is abandoned; no reaction
 * runs); no call record
 * left.
 * Natively the C form returns MBX_EPERM.
 */
#include "proxy_util.h"
#include "test_support.h"

#include <mbx/promise.h>
#include <stdint.h>

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>

static _Atomic int g_fn_runs, g_release, g_loop_ready;
static pthread_t g_main;
static _Atomic int g_on_main;

EMSCRIPTEN_KEEPALIVE void *twice(void *arg) {
  atomic_fetch_add(&g_fn_runs, 1);
  if (pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_on_main, 1);
  return (void *)((uintptr_t)arg * 2);
}
static void block(void *arg) {
  (void)arg;
  while (!atomic_load(&g_release))
    sleep_ms(0.2);
}
EMSCRIPTEN_KEEPALIVE void *exit_inside(void *arg) {
  (void)arg;
  pthread_exit(NULL);
}

/* Targets, as (lo, hi) for JS. */
static mbx_handle g_loop, g_server, g_doomed, g_stale, g_closed;
static pthread_t g_server_t, g_doomed_t, g_loop_t;

/* g_doomed runs block, then exits: work queued behind is canceled. */
EMSCRIPTEN_KEEPALIVE void test_doom(void) {
  CHECK_EQ(mbx_proxy_async(g_doomed, block, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_async(g_doomed, exit_thread, NULL, NULL), MBX_OK);
}
EMSCRIPTEN_KEEPALIVE void test_release(void) { atomic_store(&g_release, 1); }
EMSCRIPTEN_KEEPALIVE int test_fn_runs(void) { return atomic_load(&g_fn_runs); }
EMSCRIPTEN_KEEPALIVE int test_on_main(void) { return atomic_load(&g_on_main); }

/* The C form: a promise id for JS. */
EMSCRIPTEN_KEEPALIVE uint32_t test_c_form(uintptr_t arg) {
  uint32_t id = 0;
  CHECK_EQ(mbx_proxy_promise_js(g_server, twice, (void *)arg, &id), MBX_OK);
  CHECK(id != 0);
  return id;
}
/* The C form with a refused call: still an id, already rejected. */
EMSCRIPTEN_KEEPALIVE uint32_t test_c_form_closed(void) {
  uint32_t id = 0;
  CHECK_EQ(mbx_proxy_promise_js(g_closed, twice, NULL, &id), MBX_ECLOSED);
  CHECK(id != 0);
  CHECK_EQ(mbx_proxy_promise_js(g_closed, twice, NULL, NULL), MBX_EINVAL);
  return id;
}

/* A caller with no mailbox: a TSD destructor runs after the mailbox closed. */
static pthread_key_t g_key;
static _Atomic int g_no_mailbox_rc = 1;
static void in_destructor(void *v) {
  (void)v;
  uint32_t id = 0;
  atomic_store(&g_no_mailbox_rc,
               mbx_proxy_promise_js(g_server, twice, NULL, &id));
  CHECK(id != 0);
}
static void *no_mailbox_main(void *arg) {
  (void)arg;
  CHECK_EQ(pthread_setspecific(g_key, (void *)1), 0);
  return NULL;
}

/* A caller that is not attached is refused with MBX_EPERM (its promise
 * reactions would never run). Returns the promise id. */
EMSCRIPTEN_KEEPALIVE uint32_t test_not_attached(void) {
  CHECK_EQ(mbx_event_loop_attached(), 1);
  CHECK_EQ(mbx_event_loop_detach(), MBX_OK);
  uint32_t id = 0;
  CHECK_EQ(mbx_proxy_promise_js(g_server, twice, NULL, &id), MBX_EPERM);
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  return id;
}

/* A worker in its event loop awaits a promise from main. */
static _Atomic int g_worker_value;
EMSCRIPTEN_KEEPALIVE void test_worker_result(int v) {
  atomic_store(&g_worker_value, v);
}
// clang-format off
EM_JS(void, worker_js_call, (int fn), {
  Module.mbxCall(Module.mbxMainThread(), fn, 50)
      .then(
          function(v) { _test_worker_result(v); },
          function(e) { _test_worker_result(-1000 + e.errno); });
});
// clang-format on
static void worker_calls_main(void *arg) {
  (void)arg;
  worker_js_call((int)(uintptr_t)twice);
}
EMSCRIPTEN_KEEPALIVE void test_worker_call(void) {
  CHECK_EQ(mbx_proxy_async(g_loop, worker_calls_main, NULL, NULL), MBX_OK);
}
EMSCRIPTEN_KEEPALIVE int test_worker_value(void) {
  return atomic_load(&g_worker_value);
}

/* A caller that exits with its promise pending: the work still runs on the
 * target, the promise is dropped (no reaction on the dead thread's worker),
 * the record is freed by the target. */
static _Atomic int g_w2_result, g_w2_ready, g_release2;
EMSCRIPTEN_KEEPALIVE void test_w2_result(int v) {
  atomic_store(&g_w2_result, v);
}
EMSCRIPTEN_KEEPALIVE int test_w2_value(void) {
  return atomic_load(&g_w2_result);
}
static void block2(void *arg) {
  (void)arg;
  while (!atomic_load(&g_release2))
    sleep_ms(0.2);
}
// clang-format off
EM_JS(void, w2_js_call, (uint32_t lo, uint32_t hi, int fn), {
  Module.mbxCall(Module.mbxHandle(lo, hi), fn, 9).then(
      function(v) { _test_w2_result(v); },
      function(e) { _test_w2_result(-1000 + e.errno); });
});
// clang-format on
static mbx_handle g_slow;
static void w2_call_then_exit(void *arg) {
  (void)arg;
  w2_js_call((uint32_t)g_slow.bits, (uint32_t)(g_slow.bits >> 32),
             (int)(uintptr_t)twice);
  pthread_exit(NULL);
}
EMSCRIPTEN_KEEPALIVE void test_exit_with_pending(void) {
  pthread_t slow_t, w2;
  g_slow = start_server(&slow_t);
  CHECK_EQ(mbx_proxy_async(g_slow, block2, NULL, NULL), MBX_OK);
  CHECK_EQ(
      pthread_create(&w2, NULL, test_event_loop_thread, (void *)&g_w2_ready),
      0);
  mbx_handle h = mbx_thread_handle(w2);
  while (!atomic_load(&g_w2_ready))
    sched_yield();
  int runs = atomic_load(&g_fn_runs);
  CHECK_EQ(mbx_proxy_async(h, w2_call_then_exit, NULL, NULL), MBX_OK);
  CHECK_EQ(pthread_join(w2, NULL), 0);
  atomic_store(&g_release2, 1);
  stop_server(slow_t, g_slow); /* after the work: the queue is in order */
  /* The caller's exit abandoned the call, which had not started (the
   * target was busy): fn never runs, and nothing leaks (ASan). */
  CHECK_EQ(atomic_load(&g_fn_runs), runs);
}

/* From the main thread's drain, where emscripten_force_exit may unwind
 * (called straight from a promise reaction, 5.x reports its ExitStatus as
 * an unhandled rejection). */
static void finish(void *ok) {
  CHECK_EQ((int)(intptr_t)ok, 1);
  CHECK_EQ(atomic_load(&g_no_mailbox_rc), MBX_EPERM);
  stop_server(g_server_t, g_server);
  CHECK_EQ(pthread_join(g_doomed_t, NULL), 0);
  check_no_live_calls();
  printf("PASS promise_js\n");
  fflush(stdout);
  emscripten_force_exit(0);
}
EMSCRIPTEN_KEEPALIVE void test_finish(int ok) {
  CHECK_EQ(mbx_proxy_async(mbx_self(), finish, NULL, (void *)(intptr_t)ok),
           MBX_OK);
}

/* The driver, on the main thread's JS. Any failure prints and exits 1. */
// clang-format off
EM_JS(
    void, run_js,
    (uint32_t loop_lo, uint32_t loop_hi, uint32_t srv_lo, uint32_t srv_hi,
     uint32_t doom_lo, uint32_t doom_hi, uint32_t stale_lo, uint32_t stale_hi,
     uint32_t closed_lo, uint32_t closed_hi, int twice, int exit_inside),
    {
      var H = Module.mbxHandle;
      var loop = H(loop_lo, loop_hi), srv = H(srv_lo, srv_hi);
      var doom = H(doom_lo, doom_hi), stale = H(stale_lo, stale_hi);
      var closed = H(closed_lo, closed_hi);
      function assert(c, what) {
        if (!c)
          throw new Error('check failed: ' + what);
      }
      async function rejects(p, code, what) {
        try {
          await p;
        } catch (e) {
          assert(e instanceof Error, what + ': an Error');
          assert(e.code === code, what + ': code ' + e.code + ' != ' + code);
          assert(typeof e.message == 'string' && e.message.length > 0,
                 what + ': message');
          return e;
        }
        throw new Error(what + ': resolved, expected ' + code);
      }
      (async function() {
        assert(typeof Module.mbxCall == 'function', 'Module.mbxCall');
        assert(await Module.mbxCall(loop, twice, 21) === 42,
               'value from event-loop worker');
        assert(await Module.mbxCall(srv, twice, 5) === 10,
               'value from mbx_wait worker');
        assert(await Module.mbxCall({lo: srv_lo, hi: srv_hi}, twice, 6) === 12,
               '{lo,hi} handle');
        assert(await Module.mbxCall(String(srv), twice, 7) === 14,
               'string handle');
        assert(await Module.mbxCall(Module.mbxMainThread(), twice, 8) === 16,
               'call to main itself');
        assert(Module.mbxSelf() === Module.mbxMainThread(), 'mbxSelf on main');
        assert(await Module.mbxCall(srv, twice, 0x7fffffff) === 0xfffffffe,
               'unsigned value');
        var before = _test_fn_runs();
        var ps = [];
        for (var i = 0; i < 1000; i++)
          ps.push(Module.mbxCall(i & 1 ? loop : srv, twice, i));
        var vs = await Promise.all(ps);
        for (var i = 0; i < 1000; i++)
          assert(vs[i] === 2 * i, 'concurrent value ' + i);
        assert(_test_fn_runs() - before === 1000, 'fn ran once per promise');
        assert(Module.mbxPromisesPending() === 0, 'JS table empty');
        assert(await Module.mbxPromise(_test_c_form(30)) === 60, 'C form');
        await rejects(Module.mbxPromise(_test_c_form_closed()), 'MBX_ECLOSED',
                      'C form, closed');
        _test_worker_call();
        for (var t = 0; t < 2000 && !_test_worker_value(); t++)
          await new Promise(function(r) { setTimeout(r, 5); });
        assert(_test_worker_value() === 100,
               'worker awaited main: ' + _test_worker_value());
        var na = _test_not_attached();
        assert(na !== 0, 'the refusal gives a promise id');
        await rejects(Module.mbxPromise(na), 'MBX_EPERM', 'not attached');
    _test_exit_with_pending();
    await new Promise(function(r) { setTimeout(r, 50); });
    assert(_test_w2_value() === 0, 'no reaction after the caller exited: ' + _test_w2_value());
    _test_doom();
        var canceled = Module.mbxCall(doom, twice, 1);
        _test_release();
        var e = await rejects(canceled, 'MBX_ECANCELED',
                              'target exits before running');
        assert(e.errno === -10, 'errno');
        await rejects(Module.mbxCall(loop, exit_inside, 0), 'MBX_ECANCELED',
                      'target exits inside fn');
        await rejects(Module.mbxCall(closed, twice, 1), 'MBX_ECLOSED',
                      'closed handle');
        await rejects(Module.mbxCall(stale, twice, 1), 'MBX_ESTALE',
                      'stale handle');
        await rejects(Module.mbxCall(srv, 0, 1), 'MBX_EINVAL', 'null fn');
        await rejects(Module.mbxCall(BigInt(0), twice, 1), 'MBX_EINVAL',
                      'null handle');
        await rejects(Module.mbxCall('nonsense', twice, 1), 'MBX_EINVAL',
                      'bad handle string');
        await rejects(Module.mbxCall(Math.pow(2, 60), twice, 1), 'MBX_EINVAL',
                      'unsafe number');
        await rejects(Module.mbxPromise(123456789), 'MBX_EINVAL', 'unknown id');
        var id = _test_c_form(1);
        assert(await Module.mbxPromise(id) === 2, 'first take');
        await rejects(Module.mbxPromise(id), 'MBX_EINVAL', 'second take');
        assert(Module.mbxPromisesPending() === 0, 'JS table empty at the end');
        console.log(
            'promise_js: values, 1000 concurrent, C form, canceled x2, closed, stale, invalid x6, worker->main, caller exits first, ' +
                'not attached: MBX_EPERM');
      })()
          .then(
              function() { _test_finish(1); },
              function(e) {
                console.log('FAIL promise_js: ' + (e && e.stack || e));
                _test_finish(0);
              });
    });
// clang-format on

int main(void) {
  g_main = pthread_self();
  CHECK_EQ(mbx_event_loop_attach(), MBX_OK);
  CHECK_EQ(pthread_key_create(&g_key, in_destructor), 0);

  /* A stale handle: with no quarantine the next thread reuses the record. */
  mbx_set_quarantine(0);
  pthread_t t;
  g_stale = start_server(&t);
  stop_server(t, g_stale);
  g_closed = start_server(&t); /* reuses g_stale's record */
  stop_server(t, g_closed);
  mbx_set_quarantine(64);
  CHECK_EQ(mbx_proxy_async(g_stale, stop_serving, NULL, NULL), MBX_ESTALE);
  CHECK_EQ(mbx_proxy_async(g_closed, stop_serving, NULL, NULL), MBX_ECLOSED);

  g_server = start_server(&g_server_t);
  g_doomed = start_server(&g_doomed_t);
  CHECK_EQ(pthread_create(&g_loop_t, NULL, test_event_loop_thread,
                          (void *)&g_loop_ready),
           0);
  g_loop = mbx_thread_handle(g_loop_t);
  CHECK_EQ(pthread_detach(g_loop_t), 0);
  while (!atomic_load(&g_loop_ready))
    sched_yield();
  CHECK_EQ(pthread_create(&t, NULL, no_mailbox_main, NULL), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);

#define LOHI(h) (uint32_t)(h).bits, (uint32_t)((h).bits >> 32)
  run_js(LOHI(g_loop), LOHI(g_server), LOHI(g_doomed), LOHI(g_stale),
         LOHI(g_closed), (int)(uintptr_t)twice, (int)(uintptr_t)exit_inside);
  emscripten_exit_with_live_runtime();
  return 99;
}

#else
int main(void) {
  uint32_t id = 7;
  CHECK_EQ(mbx_proxy_promise_js(mbx_self(), NULL, NULL, &id), MBX_EPERM);
  CHECK_EQ(id, 0);
  CHECK_EQ(mbx_proxy_promise_js(mbx_self(), NULL, NULL, NULL), MBX_EINVAL);
  puts("promise_js: wasm only (see mbx-test-flavors); natively MBX_EPERM");
  return 1;
}
#endif
