/* Entry points shared by the lifecycle and broadcast layers (not installed).
 * The core and the pthread layer call the two mbx__lifecycle_* functions
 * through weak no-op defaults; the strong ones live in lifecycle/hooks.c,
 * which every public function of these layers links in. */
#ifndef MBX_LIFECYCLE_INTERNAL_H
#define MBX_LIFECYCLE_INTERNAL_H

#include <mbx/mailbox.h>

/* hooks.c: on a new thread, before its start function. */
void mbx__lifecycle_thread_start(void);
/* hooks.c: once per closed mailbox life, on the thread that closed it. */
void mbx__lifecycle_mailbox_closed(mbx_handle h, int reason);
/* hooks.c: does nothing; referenced by watch.c and broadcast.c so that a
 * program using them links hooks.c (and its strong definitions above). */
void mbx__lifecycle_link(void);

/* broadcast.c: run every registered broadcast on the calling, starting
 * thread (catch-up). */
void mbx__broadcast_catch_up(void);
/* watch.c: fire the watches of h, drop those h held on others. */
void mbx__watch_closed(mbx_handle h, int reason);

#endif
