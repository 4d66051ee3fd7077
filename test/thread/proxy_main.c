// mbx-test-timeout: 120
/*
 * Proxying to and from the main thread. On Emscripten main serves from its
 * JS event loop (mbx_event_loop_attach, then back to the event loop);
 * natively it serves with mbx_wait. A pthread proxies every kind of call to
 * main; main, from inside a handler, sync-proxies back to that pthread
 * while the pthread is blocked in a sync call to main (both complete); main
 * with blocking disallowed (what the browser's main thread gets by
 * default) is refused with MBX_EWOULDBLOCK, while Node's main thread may
 * block by default.
 */
#include "proxy_util.h"
#include "test_support.h"

#ifdef __EMSCRIPTEN__
#include <emscripten/emscripten.h>
#endif

static pthread_t g_main;
static mbx_handle g_main_handle, g_peer_handle;
static _Atomic int g_on_main, g_off_main, g_leaf_runs;
static int g_back_rc = 1, g_refused_rc = 1, g_default_blocking = 2;

static void on_main(void *p) {
  (void)p;
  if (pthread_equal(pthread_self(), g_main))
    atomic_fetch_add(&g_on_main, 1);
  else
    atomic_fetch_add(&g_off_main, 1);
}
static void finish_later(void *ctx) { CHECK_EQ(mbx_proxy_finish(ctx), MBX_OK); }
static void ctx_on_main(mbx_proxy_ctx *ctx, void *p) {
  on_main(p);
  CHECK_EQ(mbx_proxy_async(mbx_self(), finish_later, NULL, ctx), MBX_OK);
}
static _Thread_local int tls_callbacks;
static void on_done(void *p) {
  (void)p;
  tls_callbacks++;
}
static void leaf(void *p) {
  (void)p;
  atomic_fetch_add(&g_leaf_runs, 1);
}
/* On main: sync back to the peer, which is blocked in its call to us. */
static void main_syncs_back(void *p) {
  (void)p;
  g_default_blocking = mbx_proxy_set_blocking(-1);
  g_back_rc = mbx_proxy_sync(g_peer_handle, leaf, NULL);
}
/* On main: what the browser's main thread gets. */
static void main_refused(void *p) {
  (void)p;
  mbx_proxy_set_blocking(0);
  g_refused_rc = mbx_proxy_sync(g_peer_handle, leaf, NULL);
  mbx_proxy_set_blocking(-1);
}

#ifndef __EMSCRIPTEN__
static _Atomic int g_stop;
#endif
static void finish(void *p) {
  (void)p;
  CHECK_EQ(atomic_load(&g_off_main), 0);
  CHECK_EQ(atomic_load(&g_on_main), 6);
  CHECK_EQ(g_back_rc, MBX_OK);
  CHECK_EQ(g_refused_rc, MBX_EWOULDBLOCK);
  CHECK_EQ(g_default_blocking, -1);
  CHECK_EQ(atomic_load(&g_leaf_runs), 1);
  printf("main thread: sync, timed, ctx, callback, async served; main "
         "synced back to a caller blocked on it; refusal when blocking is "
         "off\n");
  printf("PASS proxy_main\n");
  fflush(stdout);
#ifdef __EMSCRIPTEN__
  emscripten_force_exit(0);
#else
  atomic_store(&g_stop, 1);
#endif
}

static void *peer_main(void *arg) {
  (void)arg;
  g_peer_handle = mbx_self();
  mbx_handle m = mbx_main_thread();
  CHECK(mbx_handle_equal(m, g_main_handle));
  CHECK_EQ(mbx_proxy_sync(m, on_main, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_sync_timed(m, on_main, NULL, 30000), MBX_OK);
  CHECK_EQ(mbx_proxy_sync_with_ctx(m, ctx_on_main, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_callback(m, on_main, on_done, NULL, NULL), MBX_OK);
  while (tls_callbacks < 1)
    CHECK(mbx_wait(30000) > 0);
  CHECK_EQ(mbx_proxy_async(m, on_main, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_sync(m, on_main, NULL), MBX_OK); /* after the async */
  CHECK_EQ(mbx_proxy_sync(m, main_syncs_back, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_sync(m, main_refused, NULL), MBX_OK);
  CHECK_EQ(mbx_proxy_async(m, finish, NULL, NULL), MBX_OK);
  return NULL;
}

int main(void) {
  g_main = pthread_self();
  g_main_handle = mbx_main_thread();
  CHECK(!mbx_handle_is_null(g_main_handle));
#ifdef __EMSCRIPTEN__
  test_main_serves_loop(peer_main, NULL);
  return 99; /* not reached */
#else
  pthread_t peer;
  CHECK_EQ(pthread_create(&peer, NULL, peer_main, NULL), 0);
  while (!atomic_load(&g_stop))
    CHECK(mbx_wait(30000) > 0);
  CHECK_EQ(pthread_join(peer, NULL), 0);
  check_no_live_calls();
  return 0;
#endif
}
