// mbx-test-timeout: 60
/*
 * Issue 18 item 4: a context finished from a cancel function during the
 * target's exit must not report MBX_OK to its caller. The target starts a
 * context (fn stores ctx and returns), then exits with a message queued
 * whose cancel function calls mbx_proxy_finish(ctx). The exit must cancel
 * outstanding contexts before queued messages (or otherwise make sure the
 * caller never gets MBX_OK for work that did not run): the caller gets
 * MBX_ECANCELED and the late finish returns MBX_ECANCELED.
 */
#include "watchdog.h"

#include <mbx/proxy.h>
#include <mbx/thread.h>
#include <pthread.h>

static mbx_proxy_ctx *_Atomic g_ctx;
static _Atomic int g_exit_now, g_caller_done, g_finish_rc = 99;
static int g_caller_rc;
static mbx_handle g_target;

static void start_ctx(mbx_proxy_ctx *ctx, void *arg) {
  (void)arg;
  atomic_store(&g_ctx, ctx); /* to be finished later (it never is) */
}

static void finish_on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  atomic_store(&g_finish_rc, mbx_proxy_finish(atomic_load(&g_ctx)));
}
static void never_runs(void *arg) { (void)arg; }

static void *target(void *arg) {
  (void)arg;
  while (!atomic_load(&g_ctx))
    mbx_wait(10);
  while (!atomic_load(&g_exit_now))
    sleep_ms(1); /* does not drain: the message below stays queued */
  return NULL;
}

/* Part 2: mbx_proxy_finish_status hands its status to the caller. */
static void finish_with_status(mbx_proxy_ctx *ctx, void *arg) {
  CHECK_EQ(mbx_proxy_finish_status(ctx, 1), MBX_EINVAL); /* not consumed */
  CHECK_EQ(mbx_proxy_finish_status(NULL, MBX_OK), MBX_EINVAL);
  CHECK_EQ(mbx_proxy_finish_status(ctx, *(int *)arg), MBX_OK);
}
static _Atomic int g_stop;
static void stop(void *arg) {
  (void)arg;
  atomic_store(&g_stop, 1);
}
static void *serve_until_closed(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop))
    mbx_wait(-1);
  return NULL;
}

static void *caller(void *arg) {
  (void)arg;
  g_caller_rc = mbx_proxy_sync_with_ctx(g_target, start_ctx, NULL);
  atomic_store(&g_caller_done, 1);
  return NULL;
}

int main(void) {
  watchdog_start(30000, "finish_status");
  pthread_t t, c;
  CHECK_EQ(pthread_create(&t, NULL, target, NULL), 0);
  g_target = mbx_thread_handle(t);
  CHECK_EQ(pthread_create(&c, NULL, caller, NULL), 0);
  while (!atomic_load(&g_ctx))
    sleep_ms(1);
  CHECK_EQ(mbx_send(g_target, never_runs, finish_on_cancel, NULL), MBX_OK);
  atomic_store(&g_exit_now, 1);
  pthread_join(t, NULL);
  pthread_join(c, NULL);
  printf("caller=%s finish=%s\n", mbx_strerror(g_caller_rc),
         mbx_strerror(atomic_load(&g_finish_rc)));
  CHECK_EQ(g_caller_rc, MBX_ECANCELED);
  CHECK_EQ(atomic_load(&g_finish_rc), MBX_ECANCELED);
  /* Part 2. */
  pthread_t s;
  CHECK_EQ(pthread_create(&s, NULL, serve_until_closed, NULL), 0);
  mbx_handle server = mbx_thread_handle(s);
  int codes[] = {MBX_OK, MBX_ETIMEDOUT, MBX_ECANCELED, MBX_ENOMEM};
  for (int i = 0; i < 4; i++)
    CHECK_EQ(mbx_proxy_sync_with_ctx(server, finish_with_status, &codes[i]),
             codes[i]);
  CHECK_EQ(mbx_send(server, stop, NULL, NULL), MBX_OK);
  pthread_join(s, NULL);
  printf("PASS finish_status\n");
  return 0;
}
