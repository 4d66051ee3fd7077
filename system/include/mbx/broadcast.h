/*
 * Broadcast: run a function once on every live thread that has a mailbox,
 * and on every thread started while the broadcast is registered (catch-up),
 * the way Emscripten's dynamic loader runs "load library N" everywhere.
 * Part of mbx::mbx. docs/guide.md shows when to use it and the loader
 * pattern.
 *
 * How it works, and what is guaranteed:
 * - The broadcast first registers itself (fn, arg, a sequence number), then
 *   takes a snapshot of the open mailboxes (mbx_mailboxes_list) and sends
 *   each one a message; the calling thread runs fn inline (unless
 *   MBX_BROADCAST_SKIP_SELF).
 * - Every thread created through the interposed pthread_create (also by code
 *   that includes no mbx header: std::thread, a plain pthread_create) runs,
 *   right after its mailbox is bound and before its start function, every
 *   registered broadcast ("catch-up", in sequence order). A thread that is in
 *   the snapshot and also catches up runs fn once: the message carries the
 *   sequence number and is skipped if the catch-up ran it.
 * - Exactly once per thread: fn runs on each snapshot target at most once,
 *   and on every target unless it exits first (then it is counted as
 *   exited, "done by exit", never as a hang) or its message could not be
 *   queued (counted as failed: MBX_ENOMEM, MBX_EFULL).
 * - A transient broadcast is registered until every target has answered
 *   (ran it or exited) and every catch-up of it has returned; a thread whose
 *   mailbox opened after the snapshot and that starts after that point does
 *   not run it. MBX_BROADCAST_PERSIST keeps it registered until
 *   mbx_broadcast_retire: every thread started later runs it (loaded
 *   libraries).
 * - A catch-up's fn may end its thread (pthread_exit, or a cancellation
 *   point reached with a cancel pending, as one sent right after
 *   pthread_create is): the broadcasts it had not run yet then no longer
 *   wait for that thread, as if it had exited before it started.
 * - Threads that never started through the interposed pthread_create (the
 *   main thread, mbx_thread_attach) get the message only; threads with no
 *   mailbox are not reached.
 * - Where fn runs: on each target when it drains its mailbox (mbx_poll,
 *   mbx_wait, its event loop, or while it blocks in a proxy call or a
 *   blocking broadcast), so a target blocked elsewhere (pthread_cond_wait,
 *   a futex, a long computation) answers only when it drains again. The
 *   blocking form therefore takes a deadline and says which targets did not
 *   answer; see docs/guide.md ("Foreign waits") for the measured cost.
 * - A thread that has a mailbox but never drains it holds a broadcast until
 *   its deadline (reported late) or for ever without one. Example: under
 *   -sPROXY_TO_PTHREAD the browser's main thread has a mailbox and sits in
 *   its event loop: attach that loop (mbx_event_loop_attach, run there)
 *   so it answers, or pass a deadline.
 * - fn may run after mbx_broadcast returned MBX_ETIMEDOUT (the late targets
 *   still run it when they drain: a library must not be skipped), so arg
 *   must stay valid until the callback form's done callback runs (or for
 *   ever, e.g. static data). For a persistent broadcast, arg must stay valid
 *   until retired (a thread already in its catch-up may still run it once
 *   after mbx_broadcast_retire returned).
 *
 * Order on a starting thread: mailbox bound, catch-up, start hooks
 * (<mbx/lifecycle.h>), start function. Broadcast messages queued to a
 * dying thread are canceled with its queue (it counts as exited), before its
 * TSD destructors.
 */
#ifndef MBX_BROADCAST_H
#define MBX_BROADCAST_H

#include <mbx/mailbox.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  MBX_BROADCAST_SKIP_SELF = 1, /* do not run fn on the calling thread */
  MBX_BROADCAST_PERSIST = 2,   /* also run on every thread started later,
                                  until mbx_broadcast_retire */
};

typedef struct mbx_broadcast_report {
  uint64_t seq;       /* this broadcast's sequence number (> 0) */
  uint32_t targets;   /* mailboxes it was sent to (snapshot, without the
                         caller), plus 1 for the caller unless SKIP_SELF */
  uint32_t done;      /* targets that ran fn (caller included) */
  uint32_t exited;    /* targets that closed before running it */
  uint32_t failed;    /* targets whose message could not be queued */
  uint32_t late;      /* targets that had not answered at the deadline */
  uint32_t caught_up; /* catch-up runs at thread start (threads not in the
                         snapshot, and snapshot targets that started
                         after it; those also count in done) */
} mbx_broadcast_report;

/*
 * Run fn(arg) on every live thread with a mailbox (and catch-up, above),
 * and wait until each target ran it or exited, or timeout_ms passed
 * (timeout_ms < 0: no limit; 0: do not wait, just send). While waiting,
 * the caller runs messages sent to its own mailbox (so two threads
 * broadcasting at once both complete, and a broadcast from inside a
 * message handler works). report may be NULL; if late_out is not NULL, up
 * to late_capacity handles of the targets that did not answer are written
 * there (report->late says how many there were).
 * Calling thread: any thread that may block; a thread without a mailbox
 * waits without serving. Which threads may block is the rule of the proxy
 * calls (mbx_proxy_set_blocking: by default all but the browser's main
 * thread on a web page); others get MBX_EWOULDBLOCK unless
 * timeout_ms == 0.
 * Not a cancellation point (<mbx/mailbox.h>): a pthread_cancel of the
 * caller acts after this returns. If the caller's thread ends inside it
 * anyway (its own run of fn, or a message it runs while waiting, calls
 * pthread_exit or reaches a cancellation point and is canceled), the
 * broadcast goes on without it: that run of fn counts as done, the
 * targets still run fn, and mbx_broadcast_with_release's release runs on
 * the thread that sees the last answer.
 * Returns MBX_OK (every target ran fn or exited), MBX_ETIMEDOUT (some had
 * not answered; fn will still run on them), MBX_EAGAIN (some messages could
 * not be queued: report->failed; the others were sent), MBX_EINVAL (fn
 * NULL, bad flags), MBX_ENOMEM (nothing was sent, nothing registered),
 * MBX_EWOULDBLOCK.
 */
int mbx_broadcast(mbx_run_fn fn, void *arg, int flags, double timeout_ms,
                  mbx_broadcast_report *report, mbx_handle *late_out,
                  uint32_t late_capacity);

/* Releases a broadcast's arg (mbx_broadcast_with_release). */
typedef void (*mbx_broadcast_release_fn)(void *arg);

/*
 * As mbx_broadcast, and then release(arg), exactly once, as soon as fn can
 * no longer run anywhere: every target ran it or exited, every catch-up of
 * it returned, and, with MBX_BROADCAST_PERSIST, it was retired. So arg may
 * be freed there even when this returned MBX_ETIMEDOUT (fn still runs on
 * the late targets first). When every target answered (MBX_OK, MBX_EAGAIN)
 * and the broadcast is not persistent, release has run before this
 * returns; otherwise it runs on the thread that sees the last of the
 * broadcast: a late target right after its fn, a starting thread after its
 * catch-up, or mbx_broadcast_retire's caller. release may be NULL (then
 * this is mbx_broadcast). A late target that never drains again means
 * release never runs.
 * Calling thread and returns: as mbx_broadcast. On MBX_EINVAL,
 * MBX_ENOMEM and MBX_EWOULDBLOCK nothing ran and release is not called:
 * arg is still the caller's. (The C++ mbx::broadcast, <mbx/mbx.hpp>, is
 * built on this.)
 */
int mbx_broadcast_with_release(mbx_run_fn fn, void *arg,
                               mbx_broadcast_release_fn release, int flags,
                               double timeout_ms, mbx_broadcast_report *report,
                               mbx_handle *late_out, uint32_t late_capacity);

/* Called on the broadcasting thread once every target ran fn or exited
 * (and every catch-up of it returned). */
typedef void (*mbx_broadcast_done_fn)(const mbx_broadcast_report *report,
                                      void *done_arg);

/*
 * Callback form: as mbx_broadcast, but returns at once; done(report,
 * done_arg) runs later on the calling thread, from its mailbox, when all
 * have answered. If the caller exits first, done never runs (done_arg is
 * the caller's to release). A target that never drains again means done
 * never runs: pair it with a timer of your own, or use the blocking form.
 * Calling thread: any thread with a mailbox.
 * Returns MBX_OK (done will run unless the caller exits), MBX_EPERM (no
 * mailbox), MBX_EINVAL (fn or done NULL, bad flags), MBX_ENOMEM (nothing
 * sent). Messages that could not be queued are counted in report->failed.
 */
int mbx_broadcast_async(mbx_run_fn fn, void *arg, int flags,
                        mbx_broadcast_done_fn done, void *done_arg,
                        uint64_t *seq_out);

/*
 * Stop running a persistent broadcast on threads that start from now on.
 * Any thread. Returns MBX_OK, MBX_EINVAL (no persistent broadcast with
 * that sequence number registered).
 */
int mbx_broadcast_retire(uint64_t seq);

#ifdef __cplusplus
}
#endif

#endif /* MBX_BROADCAST_H */
