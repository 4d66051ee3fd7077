/* Entry points shared by the lifecycle and broadcast layers (not installed).
 * The pthread layer calls mbx__lifecycle_thread_start through a weak no-op
 * default; the core calls mbx__lifecycle_mailbox_closed through the close
 * hook that mbx__lifecycle_link registers, which every public function of
 * these layers calls first. */
#ifndef MBX_LIFECYCLE_INTERNAL_H
#define MBX_LIFECYCLE_INTERNAL_H

#include <mbx/mailbox.h>

/* hooks.c: on a new thread, before its start function. */
void mbx__lifecycle_thread_start(void);
/* hooks.c: once per closed mailbox life, on the thread that closed it. */
void mbx__lifecycle_mailbox_closed(mbx_handle h, int reason);
/* hooks.c: registers the close hook with the core (once); called by every
 * public function of these layers, which also links hooks.c (and its
 * strong mbx__lifecycle_thread_start). */
void mbx__lifecycle_link(void);

/* broadcast/registry.c: run every registered broadcast on the calling, starting
 * thread (catch-up). */
void mbx__broadcast_catch_up(void);
/* watch.c: fire the watches of h, drop those h held on others. */
void mbx__watch_closed(mbx_handle h, int reason);

#endif
