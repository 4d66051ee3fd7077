// mbx-test-timeout: 60
/*
 * Issue 18 item 20: pins the return codes the headers now document.
 * - a handle whose generation is ahead of its record's gets MBX_EINVAL
 *   (forged) however far ahead (docs/design.md: generations never wrap);
 * - mbx_stats_get(h, NULL) is MBX_EINVAL;
 * - after runtime exit (checked from an atexit handler that runs after
 *   the library's): mbx_main_thread() still returns the old handle, sends
 *   to it get MBX_ECLOSED, mbx_poll() on the exiting thread is MBX_EPERM,
 *   and mbx_proxy_callback from it is MBX_EPERM.
 */
#include "check.h"

#include <mbx/proxy.h>
#include <mbx/thread.h>

static mbx_handle g_main_before;
static void nothing(void *arg) { (void)arg; }

static void after_runtime_exit(void) {
  mbx_handle now = mbx_main_thread();
  CHECK(mbx_handle_equal(now, g_main_before));
  CHECK_EQ(mbx_send(now, nothing, NULL, NULL), MBX_ECLOSED);
  CHECK_EQ(mbx_poll(), MBX_EPERM);
  CHECK_EQ(mbx_proxy_callback(now, nothing, NULL, NULL, NULL), MBX_EPERM);
  printf("PASS header_codes\n");
  fflush(stdout);
}

/* Registered before the library's own handler (its constructor has the
 * default priority), so it runs after it. */
__attribute__((constructor(101))) static void register_check(void) {
  atexit(after_runtime_exit);
}

int main(void) {
  g_main_before = mbx_main_thread();
  CHECK(!mbx_handle_is_null(g_main_before));
  mbx_handle h = mbx_self();
  uint32_t gen = (uint32_t)(h.bits >> 32);
  mbx_handle ahead1 = {h.bits + (1ull << 32)};
  mbx_handle ahead_max = {(h.bits & 0xffffffffu) |
                          ((uint64_t)(gen + 0x7fffffffu) << 32)};
  mbx_handle ahead_half = {(h.bits & 0xffffffffu) |
                           ((uint64_t)(gen + 0x80000000u) << 32)};
  CHECK_EQ(mbx_send(ahead1, nothing, NULL, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_send(ahead_max, nothing, NULL, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_send(ahead_half, nothing, NULL, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_stats_get(h, NULL), MBX_EINVAL);
  mbx_stats s;
  CHECK_EQ(mbx_stats_get(ahead1, &s), MBX_EINVAL);
  CHECK_EQ(mbx_stats_get(ahead_half, &s), MBX_EINVAL);
  return 0; /* the checks that matter run at exit */
}
