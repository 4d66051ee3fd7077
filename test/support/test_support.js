// Test-only JS helpers, linked into the test/thread programs.
mergeInto(LibraryManager.library, {
  // Hide the native Atomics.waitAsync from the calling thread's JS realm
  // (each worker has its own), so that mbx_event_loop_attach takes the
  // posted-wakeup path. It is replaced by a forwarding function, which is
  // what an engine without waitAsync looks like once Emscripten 4+ has
  // installed its polyfill (that runtime needs one for its own mailbox);
  // mbx only trusts a native waitAsync.
  mbx_test_hide_wait_async: function() {
    var native = Atomics.waitAsync;
    if (typeof native !== 'function') return 0;
    Atomics.waitAsync = function() { return native.apply(Atomics, arguments); };
    return 1;
  },
  // The longest gap, in ms, between ticks of a 5 ms interval on the calling
  // thread's event loop since mbx_test_stall_start: how long that loop was
  // blocked (flood_kill.c: the orphan closer must not block main's loop).
  $mbxStall: {max: 0, id: null},
  mbx_test_stall_start__deps: ['$mbxStall'],
  mbx_test_stall_start: function() {
    var last = performance.now();
    mbxStall.max = 0;
    if (mbxStall.id) clearInterval(mbxStall.id);
    mbxStall.id = setInterval(function() {
      var now = performance.now();
      if (now - last > mbxStall.max) mbxStall.max = now - last;
      last = now;
    }, 5);
  },
  mbx_test_stall_max__deps: ['$mbxStall'],
  mbx_test_stall_max: function() {
    if (mbxStall.id) clearInterval(mbxStall.id);
    mbxStall.id = null;
    return mbxStall.max;
  },
  // Terminate the worker hosting pthread `ptr`, as a crashed or killed
  // worker would end. Main thread only. Returns 1 if a worker was found.
  mbx_test_terminate_thread__deps: ['$PThread'],
  mbx_test_terminate_thread: function(ptr) {
    var p = PThread.pthreads[ptr];
    var w = p && (p.worker || p);  // 3.1.6 | newer releases
    if (!w || typeof w.terminate != 'function') return 0;
    w.terminate();
    return 1;
  },
});
