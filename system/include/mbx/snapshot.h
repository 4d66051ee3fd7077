/*
 * A JSON snapshot of the library's state: every open mailbox (and any
 * handles the caller names) with its counters, plus the process-wide,
 * memory and proxy counters. Built only from the public functions of
 * <mbx/mailbox.h> and <mbx/proxy.h>, for dashboards and tooling (the
 * browser demo page, examples/browser/, renders it).
 *
 * The document (one line, no spaces, keys always present):
 *
 *   {"version":1,
 *    "mailboxes":[{"handle":"0x0000000100000003","watch":0,"state":"open",
 *                  "sent":N,"run":N,"canceled":N,"dropped":N,"pending":N,
 *                  "rejected_closed":N,"rejected_nomem":N,
 *                  "rejected_full":N,"queue_high_water":N}, ...],
 *    "global":{every field of struct mbx_stats},
 *    "memory":{every field of struct mbx_memory_stats},
 *    "proxy":{every field of struct mbx_proxy_stats}}
 *
 * - The watched handles come first, in the caller's order, with "watch"
 *   set to their index; then every other open mailbox (from
 *   mbx_mailboxes_list), with "watch":-1.
 * - "state": "open" (listed by mbx_mailboxes_list), "closed" (its thread
 *   exited; counters still readable because someone holds it, or it is not
 *   yet recycled), "stale" (recycled: no counters, all reported as 0),
 *   "invalid" (a forged handle; counters 0) or "none" (the null handle). Only
 * watched handles can be other than open.
 * - Handles are strings (hex of mbx_handle.bits): 64-bit values do not fit
 *   a JavaScript number. Counters are plain JSON numbers.
 * - Each mailbox's counters are read one at a time while other threads keep
 *   working, so the document is not one consistent cut: only when no
 *   message is in flight does global sent equal run + canceled + dropped +
 *   pending exactly.
 */
#ifndef MBX_SNAPSHOT_H
#define MBX_SNAPSHOT_H

#include <mbx/mailbox.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Write the snapshot into buf (NUL-terminated) and its length, without the
 * NUL, into *length. `watch` may name handles to report whatever their
 * state (e.g. held handles of threads that exited); watch_count may be 0.
 * Any thread, any number of threads at once; takes no lock of its own and
 * calls no user code (it allocates a temporary array with malloc).
 * Returns:
 *   MBX_OK      the whole document is in buf;
 *   MBX_EFULL   buf is too small: *length is the length needed now (the
 *               next snapshot may be longer: call again with some slack),
 *               and buf holds a truncated, NUL-terminated prefix if
 *               size > 0 (buf may be NULL with size 0 to ask for the size);
 *   MBX_EINVAL  length is NULL, buf is NULL with size > 0, or watch is NULL
 *               with watch_count > 0;
 *   MBX_ENOMEM  the temporary array could not be allocated.
 */
int mbx_snapshot_json(const mbx_handle *watch, uint32_t watch_count, char *buf,
                      size_t size, size_t *length);

#ifdef __cplusplus
}
#endif

#endif /* MBX_SNAPSHOT_H */
