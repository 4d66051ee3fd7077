/*
 * Promises for JavaScript callers: run a C function on another thread and
 * get a JS Promise (or, on Emscripten 4.x/5.x, an em_promise_t) settled with
 * its outcome. An upper layer over mbx_proxy_callback (<mbx/proxy.h>); the
 * JS half is in src/mbx.js, the user's guide in docs/js.md.
 *
 * The work: `void *fn(void *arg)` runs on the target; its return value
 * fulfills the promise (in JS: a Number, the pointer value as unsigned).
 * (Upstream's emscripten_proxy_promise takes `void fn(void *)` and fulfills
 * with NULL: mbx_proxy_promise_run is that shape.) A function pointer
 * passed from JS must really have the type `void *(void *)`: wasm traps on
 * the target on a signature mismatch, which nothing here can check. A promise
 * is rejected, never with nothing, when the work cannot complete: in JS with an
 * Error whose `code` is the MBX_E* name ('MBX_ECANCELED', ...), `errno` the
 * number and `message` mbx_strerror's text; as an em_promise_t with the MBX_E*
 * code as the reason (`(intptr_t)reason`). Reasons: MBX_ECANCELED  the target
 * exited before fn returned (fn did not run, or it ended the thread)
 *   MBX_ECLOSED, MBX_ESTALE, MBX_EINVAL, MBX_EFULL, MBX_ENOMEM
 *                  not queued (as mbx_proxy_callback): fn never runs
 *   MBX_EPERM      the calling thread cannot receive the outcome: it has no
 *                  mailbox, or (when the event-loop layer can tell,
 *                  see docs/js.md) its event loop is not attached
 * Every promise settles exactly once, on the calling thread, from its JS
 * event loop: the caller must have called mbx_event_loop_attach()
 * (<mbx/thread.h>) and returned to its event loop (a thread that only
 * polls never returns to JS, where reactions run). Nothing here blocks.
 *
 * Lifetime: a pthread that exits with promises outstanding never sees them
 * settle: they are dropped at its exit (their reactions would run JS, and
 * maybe C, on a worker whose thread is gone), and its JS table is cleared.
 * The work runs only if it had started (the caller's exit abandons it
 * otherwise, as for mbx_proxy_callback, and waits for it if it is
 * running). Each call holds a 32-byte record (wasm32) until both sides are
 * done with it; the exiting caller frees those it still has.
 *
 * Native builds: this header compiles; mbx_proxy_promise_js returns
 * MBX_EPERM (there is no JS), and mbx_proxy_promise is absent.
 */
#ifndef MBX_PROMISE_H
#define MBX_PROMISE_H

#include <mbx/proxy.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Work proxied for a promise: its return value fulfills the promise. */
typedef void *(*mbx_promise_fn)(void *arg);

/*
 * Queue fn(arg) on target; the outcome settles a JS Promise on the calling
 * thread, which JS takes with `Module.mbxPromise(id)` (see docs/js.md).
 * Whenever promise_id is non-null (Emscripten), *promise_id receives a
 * non-zero id whose promise settles exactly once, also when nothing was
 * queued (it is then already rejected with the returned code), so C code
 * can always hand JS a promise. The id is valid on the calling thread only;
 * take it exactly once (an untaken id keeps a small JS entry until the
 * thread exits; on the main thread, for good).
 * Any thread whose event loop is attached (Emscripten).
 * Returns MBX_OK (fn will run, or the promise is rejected MBX_ECANCELED),
 * or, with fn never run: MBX_EINVAL (promise_id NULL: no id is made; fn
 * NULL; a null/forged handle), MBX_EPERM (no mailbox, not attached, or a
 * native build: *promise_id is 0 natively), MBX_ECLOSED, MBX_ESTALE,
 * MBX_EFULL, MBX_ENOMEM.
 */
int mbx_proxy_promise_js(mbx_handle target, mbx_promise_fn fn, void *arg,
                         uint32_t *promise_id);

#if defined(__EMSCRIPTEN__) && __has_include(<emscripten/promise.h>)
#include <emscripten/promise.h>
#define MBX_HAVE_EM_PROMISE 1
/*
 * The em_promise_t form (Emscripten 4.x/5.x), so code written for
 * emscripten_proxy_promise ports by changing the call (see
 * mbx_proxy_promise_run for upstream's exact signature). Queue fn(arg) on
 * target and return a promise fulfilled with fn's return value, or rejected
 * with the MBX_E* code as the reason (as listed at the top; upstream
 * rejects with none). Never returns a null handle; the caller owns it and
 * frees it with emscripten_promise_destroy (also before it settles). Any
 * thread whose event loop is attached; settled on that thread.
 */
em_promise_t mbx_proxy_promise(mbx_handle target, mbx_promise_fn fn, void *arg);

/*
 * mbx_proxy_promise for a `void fn(void *)`, the exact signature
 * emscripten_proxy_promise takes: fulfilled with NULL (as upstream), and
 * rejected with the MBX_E* code. Threads and ownership as above.
 */
em_promise_t mbx_proxy_promise_run(mbx_handle target, mbx_run_fn fn, void *arg);
#endif

#ifdef __cplusplus
}
#endif

#endif /* MBX_PROMISE_H */
