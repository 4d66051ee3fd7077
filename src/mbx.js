// JS side of mbx: event-loop delivery. A thread that returns to its JS event
// loop waits on its mailbox's `pending` word with Atomics.waitAsync and runs
// its messages from a fresh event-loop task when a sender notifies it.
mergeInto(LibraryManager.library, {
  // Arm one wait: returns 1 if armed, 0 if the word is already non-zero (the
  // caller drains again), -1 if Atomics.waitAsync is unavailable.
  mbx_js_arm__deps: ['$callUserCallback'],
  mbx_js_arm: function(addr, epoch) {
    if (typeof Atomics.waitAsync !== 'function') return -1;
    var r = Atomics.waitAsync(HEAP32, addr >> 2, 0);
    if (!r.async) return 0;
    r.value.then(function() {
      callUserCallback(function() { _mbx__event_loop_wake(epoch); });
    });
    return 1;
  },
  // Run the drain again from a later task (used when a flood keeps the word
  // non-zero, so that the thread still returns to its event loop).
  mbx_js_defer__deps: ['$callUserCallback'],
  mbx_js_defer: function(epoch) {
    setTimeout(function() {
      callUserCallback(function() { _mbx__event_loop_wake(epoch); });
    }, 0);
  },
  mbx_js_has_wait_async: function() {
    return typeof Atomics.waitAsync === 'function' ? 1 : 0;
  },
  mbx_js_keepalive_push__deps: ['$runtimeKeepalivePush'],
  mbx_js_keepalive_push: function() { runtimeKeepalivePush(); },
  mbx_js_keepalive_pop__deps: ['$runtimeKeepalivePop'],
  mbx_js_keepalive_pop: function() { runtimeKeepalivePop(); },
  // A pthread is exiting: drop every keepalive it still holds (for example
  // emscripten_exit_with_live_runtime's). Emscripten 3.1.6 does not reset
  // the count, so it would leak into the next thread on this worker and that
  // thread would never exit. Releases whose library defines the counter as a
  // symbol reset it themselves: there this is a no-op, and we do not depend
  // on their internal symbol.
  mbx_js_thread_exiting__deps: ['$runtimeKeepalivePop'],
  mbx_js_thread_exiting: '$runtimeKeepaliveCounter' in LibraryManager.library ?
      function() {} :
      function() {
        for (var i = 0; i < 1e6 && runtimeKeepaliveCounter > 0; i++) runtimeKeepalivePop();
      },
});
