// JS helpers for the benchmark programs (wasm builds only).
(typeof addToLibrary === 'function' ? addToLibrary : function(o) { mergeInto(LibraryManager.library, o); })({
  // Process CPU time, all threads (Node), microseconds.
  bench_cpu_usage_us: function() {
    var u = process.cpuUsage();
    return u.user + u.system;
  },
});
