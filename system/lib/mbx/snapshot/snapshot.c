/*
 * Writes the JSON snapshot of <mbx/snapshot.h> from the public counters
 * (mbx_mailboxes_list, mbx_stats_get, mbx_stats_global,
 * mbx_memory_stats_get, mbx_proxy_stats_get) and nothing else, so it sits
 * above the core and needs none of its internals.
 */
#include <mbx/proxy.h>
#include <mbx/snapshot.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Appends to a fixed buffer, counting what would not fit, so that one pass
 * both fills the buffer and measures the document. */
typedef struct writer {
  char *buf;
  size_t size, len;
} writer;

static void put(writer *w, const char *fmt, ...) {
  char *at = w->len < w->size ? w->buf + w->len : NULL;
  size_t room = at ? w->size - w->len : 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(at, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    w->len += (size_t)n;
}

#define U(x) ((uintmax_t)(x))

static void put_mailbox(writer *w, int first, mbx_handle h, long watch,
                        const char *state, const mbx_stats *s) {
  put(w,
      "%s{\"handle\":\"0x%016" PRIx64 "\",\"watch\":%ld,\"state\":\"%s\","
      "\"sent\":%ju,\"run\":%ju,\"canceled\":%ju,\"dropped\":%ju,"
      "\"pending\":%ju,\"abandoned\":%ju,\"rejected_closed\":%ju,"
      "\"rejected_nomem\":%ju,\"rejected_full\":%ju,"
      "\"queue_high_water\":%ju}",
      first ? "" : ",", h.bits, watch, state, U(s->sent), U(s->run),
      U(s->canceled), U(s->dropped), U(s->pending), U(s->abandoned),
      U(s->rejected_closed), U(s->rejected_nomem), U(s->rejected_full),
      U(s->queue_high_water));
}

/* The open mailboxes, in a malloc'd array (*out NULL when none are open).
 * Returns MBX_OK or MBX_ENOMEM. */
static int list_open(mbx_handle **out, uint32_t *count) {
  *out = NULL;
  uint32_t open = 0;
  mbx_mailboxes_list(NULL, 0, &open);
  for (;;) {
    if (open == 0) {
      *count = 0;
      return MBX_OK;
    }
    uint32_t cap = open + open / 4 + 8; /* room for threads starting now */
    mbx_handle *a = realloc(*out, cap * sizeof *a);
    if (!a) {
      free(*out);
      *out = NULL;
      return MBX_ENOMEM;
    }
    *out = a;
    mbx_mailboxes_list(a, cap, &open);
    if (open <= cap) {
      *count = open;
      return MBX_OK;
    }
  }
}

static int is_listed(mbx_handle h, const mbx_handle *list, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (mbx_handle_equal(list[i], h))
      return 1;
  return 0;
}

int mbx_snapshot_json(const mbx_handle *watch, uint32_t watch_count, char *buf,
                      size_t size, size_t *length) {
  if (!length || (!buf && size > 0) || (!watch && watch_count > 0))
    return MBX_EINVAL;
  mbx_handle *open = NULL;
  uint32_t open_count = 0;
  if (list_open(&open, &open_count) != MBX_OK)
    return MBX_ENOMEM;

  writer w = {buf, size, 0};
  int first = 1;
  put(&w, "{\"version\":1,\"mailboxes\":[");
  for (uint32_t i = 0; i < watch_count; i++, first = 0) {
    mbx_stats s = {0};
    const char *state = "none";
    if (!mbx_handle_is_null(watch[i])) {
      int rc = mbx_stats_get(watch[i], &s);
      state = rc == MBX_ESTALE                        ? "stale"
              : rc != MBX_OK                          ? "invalid"
              : is_listed(watch[i], open, open_count) ? "open"
                                                      : "closed";
    }
    put_mailbox(&w, first, watch[i], (long)i, state, &s);
  }
  for (uint32_t i = 0; i < open_count; i++) {
    mbx_stats s;
    if (is_listed(open[i], watch, watch_count) ||
        mbx_stats_get(open[i], &s) != MBX_OK) /* recycled since listed */
      continue;
    put_mailbox(&w, first, open[i], -1L, "open", &s);
    first = 0;
  }
  free(open);

  mbx_stats g;
  mbx_stats_global(&g);
  put(&w,
      "],\"global\":{\"sent\":%ju,\"run\":%ju,\"canceled\":%ju,"
      "\"dropped\":%ju,\"pending\":%ju,\"abandoned\":%ju,"
      "\"rejected_closed\":%ju,"
      "\"rejected_stale\":%ju,\"rejected_invalid\":%ju,"
      "\"rejected_nomem\":%ju,\"rejected_full\":%ju,"
      "\"queue_high_water\":%ju,\"wakeups\":%ju}",
      U(g.sent), U(g.run), U(g.canceled), U(g.dropped), U(g.pending),
      U(g.abandoned), U(g.rejected_closed), U(g.rejected_stale),
      U(g.rejected_invalid), U(g.rejected_nomem), U(g.rejected_full),
      U(g.queue_high_water), U(g.wakeups));
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  put(&w,
      ",\"memory\":{\"records_total\":%ju,\"records_live\":%ju,"
      "\"records_quarantine\":%ju,\"record_bytes\":%ju,\"nodes_live\":%ju,"
      "\"bytes_live\":%ju,\"nodes_cached\":%ju}",
      U(m.records_total), U(m.records_live), U(m.records_quarantine),
      U(m.record_bytes), U(m.nodes_live), U(m.bytes_live), U(m.nodes_cached));
  mbx_proxy_stats p;
  mbx_proxy_stats_get(&p);
  put(&w,
      ",\"proxy\":{\"calls_live\":%ju,\"sync_done\":%ju,"
      "\"sync_canceled\":%ju,\"sync_timed_out\":%ju,\"abandoned\":%ju,"
      "\"contexts_canceled\":%ju,\"callbacks_done\":%ju,"
      "\"callbacks_canceled\":%ju,\"callbacks_dropped\":%ju,"
      "\"replies_skipped\":%ju}}",
      U(p.calls_live), U(p.sync_done), U(p.sync_canceled), U(p.sync_timed_out),
      U(p.abandoned), U(p.contexts_canceled), U(p.callbacks_done),
      U(p.callbacks_canceled), U(p.callbacks_dropped), U(p.replies_skipped));

  *length = w.len;
  return w.len < size ? MBX_OK : MBX_EFULL;
}
