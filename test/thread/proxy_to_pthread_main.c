// mbx-test-flavors: wasm wasm-asan
// mbx-test-wasm-link: -sPROXY_TO_PTHREAD
// mbx-test-timeout: 120
/*
 * A PROXY_TO_PTHREAD program: main() runs on a pthread, and the main
 * (browser or Node) thread only serves its event loop, attached with
 * mbx_event_loop_attach. Work sent to the main thread while main() runs
 * must not end the runtime. Emscripten 3.1.6 keeps no keepalive for a
 * proxied main, and the library ran its drains on the main thread through
 * Emscripten's callUserCallback, whose exit check then ended the runtime
 * after a message: every mailbox closed with MBX_CANCEL_RUNTIME_EXIT under
 * the running program (found by bench_broadcast, 1 run in 3). Here: 300
 * synchronous calls and 300 posts to the main thread, none refused or
 * canceled, no mailbox closed, then main() returns 0 and the runtime ends
 * as usual, closing the mailboxes with MBX_CANCEL_RUNTIME_EXIT.
 */
#include "check.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#include <emscripten/threading.h>
#include <mbx/lifecycle.h>
#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

enum { CALLS = 300 };
static _Atomic int g_ran, g_posted_ran, g_closes;
static _Atomic int g_main_is_main = 1;

static void on_main(void *arg) {
  (void)arg;
  if (!emscripten_is_main_browser_thread())
    atomic_store(&g_main_is_main, 0);
  atomic_fetch_add(&g_ran, 1);
}
static void posted(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_posted_ran, 1);
}
static void on_close(mbx_handle closed, int reason, void *arg) {
  (void)closed;
  (void)reason;
  (void)arg;
  atomic_fetch_add(&g_closes, 1);
}

int main(void) {
  CHECK(!emscripten_is_main_browser_thread());
  CHECK_EQ(mbx_on_mailbox_close(on_close, NULL, NULL), MBX_OK);
  CHECK_EQ(emscripten_sync_run_in_main_runtime_thread(EM_FUNC_SIG_I,
                                                      mbx_event_loop_attach),
           MBX_OK);
  mbx_handle main_thread = mbx_main_thread();
  CHECK(!mbx_handle_is_null(main_thread));
  for (int i = 0; i < CALLS; i++) {
    CHECK_EQ(mbx_send(main_thread, posted, NULL, NULL), MBX_OK);
    CHECK_EQ(mbx_proxy_sync(main_thread, on_main, NULL), MBX_OK);
    if (i % 50 == 0)
      sleep_ms(2); /* let the main thread's loop go idle in between */
  }
  /* Each post ran before the call sent after it (one queue, in order). */
  CHECK_EQ(atomic_load(&g_ran), CALLS);
  CHECK_EQ(atomic_load(&g_posted_ran), CALLS);
  CHECK(atomic_load(&g_main_is_main));
  CHECK_EQ(atomic_load(&g_closes), 0);
  printf("%d calls and %d posts ran on the main thread while main() ran on "
         "a pthread; no mailbox closed before main returned\n",
         CALLS, CALLS);
  printf("PASS proxy_to_pthread_main\n");
  return 0;
}
#else
int main(void) {
  printf("PASS proxy_to_pthread_main (Emscripten only)\n");
  return 0;
}
#endif
