// JS side of mbx (passed to emcc with --js-library).
// - Event-loop delivery: a thread that returns to its JS event loop waits on
//   its mailbox's `pending` word with Atomics.waitAsync (or, without a native
//   waitAsync, gets a posted wakeup task) and runs its messages from a fresh
//   event-loop task.
// - Shutdown: on the main thread, watch every pthread's worker so that a
//   terminated thread's mailbox is closed (abnormal death), and close all
//   mailboxes when Emscripten tears the threads down at runtime exit.
mergeInto(LibraryManager.library, {
  // Arm one wait: returns 1 if armed, 0 if the word is already non-zero (the
  // caller drains again).
  mbx_js_arm__deps: ['$mbxWake'],
  mbx_js_arm: function(addr, epoch) {
    var r = Atomics.waitAsync(HEAP32, addr >> 2, 0);
    if (!r.async) return 0;
    r.value.then(function() { mbxWake(epoch); });
    return 1;
  },
  // Run fn (a drain, a death report) from an event-loop task the way
  // Emscripten runs its own callbacks (callUserCallback: 'unwind' and
  // exit() caught; on a pthread the thread ends once nothing keeps it
  // alive), except that on the main thread it never ends the runtime just
  // because nothing keeps it alive: Emscripten 3.1.6 keeps none for a
  // PROXY_TO_PTHREAD main while it runs (later releases push one), so the
  // exit check after a message to the main thread ended the runtime under
  // the running program, closing every mailbox with MBX_CANCEL_RUNTIME_EXIT
  // (test/thread/proxy_to_pthread_main.c). 3.1.6's callUserCallback skips
  // the check for a synchronous call; later releases ignore the flag.
  $mbxRun__deps: ['$callUserCallback', '$handleException'].concat(
      '$keepRuntimeAlive' in LibraryManager.library ? ['$keepRuntimeAlive'] : []),
  $mbxRun: function(fn) {
    if (ENVIRONMENT_IS_PTHREAD || keepRuntimeAlive()) {
      callUserCallback(fn);
      return;
    }
    try {
      callUserCallback(fn, /* synchronous: no exit check */ true);
    } catch (e) {
      handleException(e);
    }
  },
  // Drain from an event-loop task, for the attachment `epoch` only. A wait,
  // a deferred drain or the watch timer of an attachment that has ended
  // (detached, or its thread exited and the worker went back to the pool,
  // maybe to host another thread) does nothing: entering the runtime there
  // would run Emscripten's exit check on a worker with no thread, which
  // 3.1.6 asserts on (found by event_loop's flood part: a drain deferred by
  // a flood outlived its thread).
  $mbxWake__deps: ['$mbxRun', '$mbxLoop'],
  $mbxWake: function(epoch) {
    if (epoch !== mbxLoop.epoch) return;
    mbxLoop.fromLoop = true;
    mbxRun(function() { _mbx__event_loop_wake(epoch); });
  },
  // Run the drain again from a later task (a flood that keeps the word
  // non-zero, or a wakeup posted in the fallback mode), as soon as the
  // tasks already queued have run: setTimeout(0) would idle the thread for
  // a clamped 1-4 ms while its mailbox is full.
  $mbxSoon: function(fn) {
    if (typeof setImmediate == 'function') return setImmediate(fn); // Node
    if (!mbxSoon.port) { // browsers: a message task, not clamped
      var queue = [], channel = new MessageChannel();
      channel.port1.onmessage = function() { queue.shift()(); };
      mbxSoon.port = channel.port2;
      mbxSoon.queue = queue;
    }
    mbxSoon.queue.push(fn);
    mbxSoon.port.postMessage(0);
  },
  // One deferred drain at a time: it drains everything (or a slice), so a
  // second one queued behind it would only run another slice in the same
  // turn of the event loop, ahead of its timers. Node runs every immediate
  // queued before its check phase in one go: posted wakeups that each
  // deferred a drain held timers back for several slices (event_loop's
  // flood part under ASan on 3.1.6).
  mbx_js_defer__deps: ['$mbxWake', '$mbxSoon', '$mbxLoop'],
  mbx_js_defer: function(epoch) {
    if (mbxLoop.deferred === epoch) return;
    mbxLoop.deferred = epoch;
    mbxSoon(function() {
      if (mbxLoop.deferred === epoch) mbxLoop.deferred = 0;
      mbxWake(epoch);
    });
  },
  // Posted wakeups can be lost without anyone knowing: 3.1.6 drops a call
  // to a pthread whose call queue (127 entries) is full and returns 0 as
  // for a queued call, and every release drops on allocation failure. A
  // wakeup is posted only when pending leaves 0, so one lost post would
  // leave the mailbox undrained for good (issue 18 item 7). So in the
  // fallback mode the thread also looks at pending from a slow timer (every
  // 100 ms, only while attached): a lost wakeup costs at most that delay.
  mbx_js_post_watch__deps: ['$mbxWake', '$mbxLoop'],
  mbx_js_post_watch: function(addr, epoch) {
    if (mbxLoop.watch) clearInterval(mbxLoop.watch);
    mbxLoop.watch = setInterval(function() {
      if (Atomics.load(HEAP32, addr >> 2) > 0) mbxWake(epoch);
    }, 100);
  },
  // Only a native waitAsync: newer Emscripten releases may install a
  // polyfill that polls with timers, which the posted wakeup beats.
  mbx_js_has_wait_async: function() {
    return typeof Atomics.waitAsync === 'function' &&
        /\[native code\]/.test(Function.prototype.toString.call(Atomics.waitAsync)) ? 1 : 0;
  },
  // Keep the thread (a pthread: runtime keepalive) or the process (the Node
  // main thread, whose pending waitAsync does not keep Node alive, and whose
  // workers are unref'd by newer releases) alive while attached.
  // epoch: the current attachment's (0: none), see mbxWake.
  $mbxLoop: {nodeRef: null, fromLoop: false, watch: null, epoch: 0, deferred: 0},
  mbx_js_loop_hold__deps: ['$runtimeKeepalivePush', '$mbxLoop'],
  mbx_js_loop_hold: function(epoch) {
    mbxLoop.epoch = epoch;
    if (ENVIRONMENT_IS_PTHREAD) {
      runtimeKeepalivePush();
    } else if (ENVIRONMENT_IS_NODE && !mbxLoop.nodeRef) {
      mbxLoop.nodeRef = setInterval(function() {}, 1 << 30);
    }
  },
  mbx_js_loop_release__deps: ['$runtimeKeepalivePop', '$mbxLoop'],
  mbx_js_loop_release: function() {
    mbxLoop.epoch = 0;
    if (mbxLoop.watch) {
      clearInterval(mbxLoop.watch);
      mbxLoop.watch = null;
    }
    if (ENVIRONMENT_IS_PTHREAD) {
      runtimeKeepalivePop();
    } else if (mbxLoop.nodeRef) {
      clearInterval(mbxLoop.nodeRef);
      mbxLoop.nodeRef = null;
    }
  },
  // A pthread is ending. Pop only keepalives nobody else will pop: ours are
  // gone already (detach); a timer's (emscripten_async_call, ...) is popped
  // by the timer itself, so popping it here made its own pop assert
  // (issue 18 item 14). What remains is emscripten_exit_with_live_runtime's
  // push, which nothing pops: 3.1.6 does not reset the count, so it would
  // leak into the next thread on this worker and that thread would never
  // exit. We pop that one only when the thread really ran from its event
  // loop (a drain task ran: it had unwound to it) and ends by pthread_exit
  // or cancellation (`returned` 0; a start routine that returns did not
  // unwind). Releases whose library defines the counter as a symbol reset
  // it themselves: there this is a no-op. The main thread's count is the
  // runtime's.
  mbx_js_thread_exiting__deps: ['$runtimeKeepalivePop', '$mbxLoop'],
  mbx_js_thread_exiting: '$runtimeKeepaliveCounter' in LibraryManager.library ?
      function(returned) {} :
      function(returned) {
        if (!ENVIRONMENT_IS_PTHREAD) return;
        var unwound = mbxLoop.fromLoop;
        mbxLoop.fromLoop = false;
        if (!returned && unwound && runtimeKeepaliveCounter > 0) runtimeKeepalivePop();
      },

  // Shutdown watchers, installed once on the main thread (where Emscripten
  // creates and terminates every worker).
  $mbxWorkers__deps: ['$PThread', '$mbxRun'],
  $mbxWorkers: {
    tearingDown: false,
    // The pthread a worker hosts: 3.1.6 keeps it in worker.pthread, newer
    // releases in worker.pthread_ptr.
    hostedThread: function(w) {
      if (w.pthread_ptr) return w.pthread_ptr;
      if (w.pthread && w.pthread.threadInfoStruct) return w.pthread.threadInfoStruct;
      return 0;
    },
    dead: function(low, gen) {
      if (mbxWorkers.tearingDown || (typeof ABORT != 'undefined' && ABORT)) return;
      mbxRun(function() { _mbx__on_thread_death(low, gen); });
    },
    watch: function(w) {
      if (w.mbxWatched) return;
      w.mbxWatched = true;
      var terminate = w.terminate;
      w.terminate = function() {
        // Capture the thread's handle now: Emscripten may forget (3.1.6:
        // free) the pthread before the worker is really gone.
        var ptr = mbxWorkers.hostedThread(w);
        var low = 0, gen = 0;
        if (ptr && !mbxWorkers.tearingDown) {
          low = _mbx__death_capture(ptr);
          gen = _mbx__death_capture_gen();
        }
        var result = terminate.apply(w, arguments);
        if (low) {
          if (typeof w.once == 'function') {  // Node worker_threads
            w.once('exit', function() { mbxWorkers.dead(low, gen); });
          } else {  // browsers fire nothing: the worker stops at once
            setTimeout(function() { mbxWorkers.dead(low, gen); }, 0);
          }
        }
        return result;
      };
    },
    install: function() {
      if (ENVIRONMENT_IS_PTHREAD || mbxWorkers.installed) return;
      mbxWorkers.installed = true;
      var getNewWorker = PThread.getNewWorker;
      PThread.getNewWorker = function() {
        var w = getNewWorker.apply(PThread, arguments);
        if (w) mbxWorkers.watch(w);
        return w;
      };
      // A thread that ended before its start routine ran left its mailbox
      // open (shutdown.c, mbx__on_thread_reclaimed): close it when its
      // worker comes back, before the pthread is freed. Every release
      // reclaims joined and finished detached threads here.
      var giveBack = PThread.returnWorkerToPool;
      PThread.returnWorkerToPool = function(w) {
        var ptr = mbxWorkers.hostedThread(w);
        if (ptr && !mbxWorkers.tearingDown &&
            !(typeof ABORT != 'undefined' && ABORT)) {
          _mbx__on_thread_reclaimed(ptr);
        }
        return giveBack.apply(PThread, arguments);
      };
      // Every release tears threads down in PThread.terminateAllThreads:
      // 3.1.6 calls it twice at runtime exit; 5.x from terminateRuntime
      // (EXIT_RUNTIME) and from proc_exit (emscripten_force_exit without
      // EXIT_RUNTIME, which never reaches terminateRuntime).
      var teardown = PThread.terminateAllThreads;
      PThread.terminateAllThreads = function() {
        if (!mbxWorkers.tearingDown &&
            !(typeof runtimeExited != 'undefined' && runtimeExited) &&
            !(typeof ABORT != 'undefined' && ABORT)) {
          _mbx__runtime_exit();
        }
        mbxWorkers.tearingDown = true;
        return teardown.apply(PThread, arguments);
      };
    },
  },
  mbx_js_watch_workers__deps: ['$mbxWorkers'],
  mbx_js_watch_workers: function() { mbxWorkers.install(); },

  // ---- Promises for JS callers (system/lib/mbx/promise/promise.c,
  // docs/js.md). Each thread's JS realm keeps a table of its promises by id:
  // an entry holds the outcome until JS takes the Promise (so a rejection
  // that arrives before anyone listens is never an unhandled rejection),
  // or the resolve/reject functions once it has been taken.
  $mbxPromises__postset: 'mbxPromises.install();',
  $mbxPromises: {
    next: 1,
    table: null,
    names: {'-1': 'MBX_ECLOSED', '-2': 'MBX_ESTALE', '-3': 'MBX_EINVAL',
            '-4': 'MBX_ENOMEM', '-5': 'MBX_EFULL', '-6': 'MBX_EBUSY',
            '-7': 'MBX_ETIMEDOUT', '-8': 'MBX_EPERM', '-9': 'MBX_EAGAIN',
            '-10': 'MBX_ECANCELED', '-11': 'MBX_EDEADLK',
            '-12': 'MBX_EWOULDBLOCK'},
    error: function(code, message) {
      var e = new Error(message || ('mbx error ' + code));
      e.code = mbxPromises.names[code] || 'MBX_E' + (-code);
      e.errno = code;
      return e;
    },
    // A handle in JS: a BigInt (the 64 bits), a safe-integer Number, a
    // decimal or 0x string, or {lo, hi}. Returns [lo, hi], or null.
    split: function(h) {
      if (h !== null && typeof h == 'object' && 'lo' in h && 'hi' in h)
        return [h.lo >>> 0, h.hi >>> 0];
      try {
        if (typeof h == 'number' && !Number.isSafeInteger(h)) return null;
        var b = BigInt(h);
        if (b < BigInt(0) || b >= (BigInt(1) << BigInt(64))) return null;
        return [Number(b & BigInt(0xffffffff)), Number(b >> BigInt(32))];
      } catch (e) {
        return null;
      }
    },
    join: function(lo, hi) {
      return (BigInt(hi >>> 0) << BigInt(32)) | BigInt(lo >>> 0);
    },
    create: function() {
      var id = mbxPromises.next;
      mbxPromises.next = id >= 0x7fffffff ? 1 : id + 1;
      mbxPromises.table.set(id, {settled: false});
      return id;
    },
    settle: function(id, code, value, message) {
      var e = mbxPromises.table.get(id);
      if (!e || e.settled) return;  // settled exactly once
      e.settled = true;
      e.code = code;
      e.value = value >>> 0;
      e.message = message;
      if (e.resolve) {
        mbxPromises.table.delete(id);
        mbxPromises.finish(e, e.resolve, e.reject);
      }
    },
    finish: function(e, resolve, reject) {
      if (e.code) reject(mbxPromises.error(e.code, e.message));
      else resolve(e.value);
    },
    take: function(id) {
      return new Promise(function(resolve, reject) {
        var e = mbxPromises.table.get(id);
        if (!e || e.resolve) {
          reject(mbxPromises.error(-3, 'no such promise on this thread (ids are taken once, on the thread that made them)'));
        } else if (e.settled) {
          mbxPromises.table.delete(id);
          mbxPromises.finish(e, resolve, reject);
        } else {
          e.resolve = resolve;
          e.reject = reject;
        }
      });
    },
    install: function() {
      mbxPromises.table = new Map();
      Module['mbxPromise'] = mbxPromises.take;
      Module['mbxCall'] = function(target, fn, arg) {
        var h = mbxPromises.split(target);
        if (!h) return Promise.reject(mbxPromises.error(-3, 'bad handle: pass a BigInt, a safe integer, a string or {lo, hi}'));
        try {
          var id = _mbx__promise_js_call(h[0], h[1], fn >>> 0, arg >>> 0);
        } catch (e) {  // the runtime is not ready, or has aborted: reject
          return Promise.reject(e);
        }
        return mbxPromises.take(id);
      };
      Module['mbxHandle'] = mbxPromises.join;
      // Ids made on this thread and not yet settled and taken (diagnostics).
      Module['mbxPromisesPending'] = function() { return mbxPromises.table.size; };
      var handle = function(which, thread) {
        var lo = _mbx__promise_js_handle(which, thread >>> 0);
        return mbxPromises.join(lo, _mbx__promise_js_handle_hi());
      };
      Module['mbxSelf'] = function() { return handle(0, 0); };
      Module['mbxMainThread'] = function() { return handle(1, 0); };
      Module['mbxThreadHandle'] = function(t) { return handle(2, t); };
    },
  },
  mbx_js_promise_new__deps: ['$mbxPromises'],
  mbx_js_promise_new: function() { return mbxPromises.create(); },
  // The calling pthread exits (promise.c): its promises never settle (their
  // reactions would run on a worker with no thread), and the table starts
  // clean for the worker's next thread.
  mbx_js_promise_thread_exit__deps: ['$mbxPromises'],
  mbx_js_promise_thread_exit: function() { mbxPromises.table.clear(); },
  mbx_js_promise_settle__deps: ['$mbxPromises'],
  mbx_js_promise_settle: function(id, code, value, message) {
    var text = '';
    if (message) for (var i = message; HEAPU8[i]; i++) text += String.fromCharCode(HEAPU8[i]);
    mbxPromises.settle(id, code, value, text);
  },
});
