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
