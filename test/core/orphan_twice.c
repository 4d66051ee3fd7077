// mbx-test-timeout: 60
/*
 * Issue 18 item 6: mbx_mailbox_close_orphan on a mailbox whose owner is
 * still alive (misuse; in a browser also a death hook racing the worker's
 * own exit path), followed by the owner's own mbx_thread_exit, must
 * release the owner's hold once: the record is retired once (not twice),
 * two later creates get two different records, and a send to the first
 * one succeeds. The misuse gets an error code from one of the two calls.
 */
#include "check.h"

#include <pthread.h>

static mbx_handle g_h;
static _Atomic int g_attached, g_go;
static int g_exit_rc;

static void *owner(void *arg) {
  (void)arg;
  CHECK_EQ(mbx_thread_attach(&g_h), MBX_OK);
  atomic_store(&g_attached, 1);
  while (!atomic_load(&g_go))
    sleep_ms(1);
  g_exit_rc = mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
  return NULL;
}

static void nothing(void *arg) { (void)arg; }

int main(void) {
  mbx_set_quarantine(0); /* reuse at once: a double retirement shows */
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, owner, NULL), 0);
  wait_for_count(&g_attached, 1);
  int orphan_rc = mbx_mailbox_close_orphan(g_h); /* owner still alive */
  atomic_store(&g_go, 1);
  pthread_join(t, NULL);
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  printf("close_orphan=%d thread_exit=%d records_total=%llu "
         "records_quarantine=%llu\n",
         orphan_rc, g_exit_rc, (unsigned long long)m.records_total,
         (unsigned long long)m.records_quarantine);
  CHECK(orphan_rc < 0 || g_exit_rc < 0);
  CHECK(m.records_quarantine <= m.records_total);
  CHECK_EQ(m.records_quarantine, 1);
  mbx_handle a, b;
  CHECK_EQ(mbx_mailbox_create(&a), MBX_OK);
  CHECK_EQ(mbx_mailbox_create(&b), MBX_OK);
  CHECK((uint32_t)a.bits != (uint32_t)b.bits); /* two different records */
  CHECK_EQ(mbx_send(a, nothing, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_send(b, nothing, NULL, NULL), MBX_OK);
  CHECK(mbx_mailbox_close_orphan(a) >= 0);
  CHECK(mbx_mailbox_close_orphan(b) >= 0);
  printf("PASS orphan_twice\n");
  return 0;
}
