/*
 * mbx_snapshot_json (<mbx/snapshot.h>): the document lists open and watched
 * mailboxes with their state and counters, measures itself when the buffer
 * is too small, and refuses bad arguments with MBX_EINVAL.
 */
#include "check.h"

#include <inttypes.h>
#include <mbx/snapshot.h>

static char g_buf[1 << 16];

static void snap(const mbx_handle *watch, uint32_t n) {
  size_t len = 0;
  CHECK_EQ(mbx_snapshot_json(watch, n, g_buf, sizeof g_buf, &len), MBX_OK);
  CHECK_EQ(strlen(g_buf), len);
  CHECK(g_buf[0] == '{' && g_buf[len - 1] == '}');
}

/* The object of mailbox h in g_buf (its text up to the closing brace). */
static const char *entry(mbx_handle h, char *out, size_t size) {
  char key[64];
  snprintf(key, sizeof key, "{\"handle\":\"0x%016" PRIx64 "\"", h.bits);
  const char *at = strstr(g_buf, key);
  if (!at)
    return NULL;
  const char *end = strchr(at, '}');
  CHECK(end && (size_t)(end - at) < size);
  memcpy(out, at, (size_t)(end - at));
  out[end - at] = 0;
  return out;
}

static long long field(const char *obj, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *at = strstr(obj, key);
  CHECK(at);
  return strtoll(at + strlen(key), NULL, 10);
}

static void nop(void *arg) { (void)arg; }
static void nop_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
}

int main(void) {
  mbx_handle self, a, b;
  CHECK_EQ(mbx_thread_attach(&self), MBX_OK);
  CHECK_EQ(mbx_mailbox_create(&a), MBX_OK);
  CHECK_EQ(mbx_mailbox_create(&b), MBX_OK);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mbx_send(a, nop, nop_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_send(self, nop, nop_cancel, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 1);

  /* Bad arguments. */
  size_t len = 0;
  CHECK_EQ(mbx_snapshot_json(NULL, 0, g_buf, sizeof g_buf, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_snapshot_json(NULL, 0, NULL, 10, &len), MBX_EINVAL);
  CHECK_EQ(mbx_snapshot_json(NULL, 1, g_buf, sizeof g_buf, &len), MBX_EINVAL);

  /* Measuring, then truncating, then the whole document. */
  size_t need = 0;
  CHECK_EQ(mbx_snapshot_json(NULL, 0, NULL, 0, &need), MBX_EFULL);
  CHECK(need > 100);
  CHECK_EQ(mbx_snapshot_json(NULL, 0, g_buf, 10, &len), MBX_EFULL);
  CHECK_EQ(len, need);
  CHECK_EQ(strlen(g_buf), 9);
  CHECK_EQ(mbx_snapshot_json(NULL, 0, g_buf, need, &len), MBX_EFULL);
  CHECK_EQ(mbx_snapshot_json(NULL, 0, g_buf, need + 1, &len), MBX_OK);
  CHECK_EQ(len, need);

  /* Open mailboxes are listed, not watched, with their counters. */
  char obj[1024];
  snap(NULL, 0);
  CHECK(strncmp(g_buf, "{\"version\":1,\"mailboxes\":[", 26) == 0);
  CHECK(entry(a, obj, sizeof obj));
  CHECK(strstr(obj, "\"state\":\"open\""));
  CHECK_EQ(field(obj, "watch"), -1);
  CHECK_EQ(field(obj, "pending"), 3);
  CHECK_EQ(field(obj, "sent"), 3);
  CHECK(entry(self, obj, sizeof obj));
  CHECK_EQ(field(obj, "run"), 1);
  CHECK(entry(b, obj, sizeof obj));
  CHECK_EQ(field(obj, "sent"), 0);
  CHECK(strstr(g_buf, "\"global\":{\"sent\":"));
  CHECK(strstr(g_buf, "\"memory\":{\"records_total\":"));
  CHECK(strstr(g_buf, "\"proxy\":{\"calls_live\":"));

  /* A held mailbox closed from outside is reported closed when watched,
   * with what its close canceled; unwatched it is no longer listed. */
  CHECK_EQ(mbx_hold(a), MBX_OK);
  CHECK_EQ(mbx_mailbox_close_orphan(a), 3);
  CHECK_EQ(mbx_send(a, nop, nop_cancel, NULL), MBX_ECLOSED);
  snap(NULL, 0);
  CHECK(!entry(a, obj, sizeof obj));
  mbx_handle watch[3] = {a, MBX_NULL_HANDLE, b};
  snap(watch, 3);
  CHECK(entry(a, obj, sizeof obj));
  CHECK(strstr(obj, "\"state\":\"closed\""));
  CHECK_EQ(field(obj, "watch"), 0);
  CHECK_EQ(field(obj, "canceled"), 3);
  CHECK_EQ(field(obj, "pending"), 0);
  CHECK_EQ(field(obj, "rejected_closed"), 1);
  CHECK(strstr(g_buf, "{\"handle\":\"0x0000000000000000\",\"watch\":1,"
                      "\"state\":\"none\""));
  CHECK(entry(b, obj, sizeof obj));
  CHECK_EQ(field(obj, "watch"), 2);
  CHECK(strstr(obj, "\"state\":\"open\""));
  /* Listed once, as watched. */
  char key[64];
  snprintf(key, sizeof key, "0x%016" PRIx64, b.bits);
  CHECK(strstr(strstr(g_buf, key) + 1, key) == NULL);

  /* Released and recycled: stale, counters 0. */
  CHECK_EQ(mbx_release(a), MBX_OK);
  CHECK_EQ(mbx_set_quarantine(0), MBX_OK);
  mbx_handle c;
  for (int i = 0; i < 4; i++) { /* cycle records until a's is reused */
    CHECK_EQ(mbx_mailbox_create(&c), MBX_OK);
    CHECK_EQ(mbx_mailbox_close_orphan(c), 0);
  }
  CHECK_EQ(mbx_send(a, nop, nop_cancel, NULL), MBX_ESTALE);
  {
    snap(watch, 1);
    CHECK(entry(a, obj, sizeof obj));
    CHECK(strstr(obj, "\"state\":\"stale\""));
    CHECK_EQ(field(obj, "sent"), 0);
  }

  /* Nothing in flight: the global identity holds exactly. */
  snap(NULL, 0);
  const char *g = strstr(g_buf, "\"global\":");
  CHECK_EQ(field(g, "sent"), field(g, "run") + field(g, "canceled") +
                                 field(g, "dropped") + field(g, "pending") +
                                 field(g, "abandoned"));
  CHECK_EQ(mbx_mailbox_close_orphan(b), 0);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  printf("PASS snapshot (%zu bytes)\n", len);
  return 0;
}
