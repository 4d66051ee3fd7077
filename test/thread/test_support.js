// Test-only JS helpers, linked into the test/thread programs.
mergeInto(LibraryManager.library, {
  // Hide Atomics.waitAsync from the calling thread's JS realm (each worker
  // has its own), so that mbx_event_loop_attach takes the posted-wakeup path.
  mbx_test_hide_wait_async: function() {
    var had = typeof Atomics.waitAsync === 'function';
    delete Atomics.waitAsync;
    return had ? 1 : 0;
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
