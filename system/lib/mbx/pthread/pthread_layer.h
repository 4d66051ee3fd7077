/*
 * What the pthread integration's files (thread_hooks.c, event_loop.c,
 * shutdown.c) share with each other and with src/mbx.js. Built on
 * core/layer.h only.
 */
#ifndef MBX__PTHREAD_LAYER_H
#define MBX__PTHREAD_LAYER_H

#include "../core/layer.h"

#include <mbx/thread.h>

/* event_loop.c: drop the calling thread's event-loop keepalive before it
 * exits (its exit hook, and runtime exit). */
void mbx__event_loop_on_exit(int returned);

/* shutdown.c: close every mailbox at runtime exit (an atexit handler, also
 * called from src/mbx.js), and install it with the worker watch. */
void mbx__runtime_exit(void);
void mbx__shutdown_install(void);
/* shutdown.c: 1 once the runtime exit has begun. */
int mbx__runtime_exiting(void);

#ifdef __EMSCRIPTEN__
/* thread_hooks.c: free the start record of the thread whose mailbox this
 * is, if that thread never took it (it ended or was killed before its
 * start routine ran). Main thread, before it closes that mailbox. */
void mbx__start_forget(mbx_handle mailbox);
/* thread_hooks.c: how many start records no thread has taken yet (threads
 * starting now, or ended or killed before their start routine). Any
 * thread; also test/thread/abnormal_death.c. */
int mbx__starts_pending(void);

/* src/mbx.js (the JS library linked with mbx::mbx). */
int mbx_js_arm(_Atomic int32_t *word, uint32_t epoch);
void mbx_js_defer(uint32_t epoch);
void mbx_js_post_watch(_Atomic int32_t *word, uint32_t epoch);
int mbx_js_has_wait_async(void);
void mbx_js_loop_hold(uint32_t epoch);
void mbx_js_loop_release(void);
void mbx_js_thread_exiting(int returned);
void mbx_js_watch_workers(void);
#endif

#endif
