// mbx-test-timeout: 60
/*
 * Issue 18 item 12: a capacity of 2^31 or more is a (huge) bound, not
 * "refuse everything" (it was compared as int32_t). The second half of
 * the item (rejected_closed carrying into its generation tag after 2^32
 * refusals) needs 4 billion sends and is covered by the fix plan only.
 */
#include "check.h"

static int g_runs;
static void count(void *arg) {
  (void)arg;
  g_runs++;
}

int main(void) {
  mbx_handle self;
  CHECK_EQ(mbx_thread_attach(&self), MBX_OK);
  const uint32_t caps[] = {0x7fffffffu, 0x80000000u, 0xfffffffeu,
                           0xffffffffu};
  for (unsigned i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    CHECK_EQ(mbx_set_capacity(self, caps[i]), MBX_OK);
    int rc = mbx_send(self, count, NULL, NULL);
    printf("capacity %u: send %s\n", caps[i], mbx_strerror(rc));
    CHECK_EQ(rc, MBX_OK);
    CHECK_EQ(mbx_poll(), 1);
  }
  CHECK_EQ(mbx_set_capacity(self, 1), MBX_OK); /* small ones still bound */
  CHECK_EQ(mbx_send(self, count, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_send(self, count, NULL, NULL), MBX_EFULL);
  CHECK_EQ(mbx_poll(), 1);
  CHECK_EQ(g_runs, 5);
  mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
  printf("PASS capacity_large\n");
  return 0;
}
