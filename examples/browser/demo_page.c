/*
 * The demo as a web page (demo_page.html, served by `node js/serve.mjs`):
 * worker threads come and go while two senders keep sending to them, and
 * the page shows it live from the library's own counters.
 *
 * Every round, four worker slots get a worker each. Slots 2 and 3 serve
 * for a random time and return with messages still queued (canceled on
 * the dying worker), and are replaced at once; slot 0 is killed with
 * pthread_cancel and slot 1's worker is terminated (abnormal death: its
 * queued messages are canceled on the page's main thread) at the end of
 * the round. Then the senders pause, nothing is in flight, and the round's
 * line `sent = run + canceled + dropped + pending + abandoned, lost = 0`
 * checks the library against the program: `sent` counts the sends the
 * program saw accepted (MBX_OK), the rest is mbx_stats_global. The page
 * polls demo_snapshot() (JSON: the demo's slot bookkeeping plus
 * mbx_snapshot_json() of the slots' handles).
 *
 * The page's main thread never blocks: it serves its mailbox from its event
 * loop (mbx_event_loop_attach) and runs the page's JavaScript.
 */
#define _GNU_SOURCE
#include <mbx/mailbox.h>
#include <mbx/snapshot.h>
#include <mbx/thread.h>

#include <emscripten/emscripten.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 4
#define SENDERS 2
#define ROUND_MS 1500

/* Terminate the worker that hosts `thread`, as a crashed or killed worker
 * ends (page's main thread only). 3.1.6 keeps the worker in
 * PThread.pthreads[ptr].worker, newer releases in PThread.pthreads[ptr]. */
EM_JS(int, demo_terminate_worker, (pthread_t thread), {
  var p = PThread.pthreads[thread];
  var w = p && (p.worker || p);
  if (!w || typeof w.terminate != 'function')
    return 0;
  w.terminate();
  return 1;
});

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct slot {
  _Atomic uint64_t handle; /* what the senders send to (0: none) */
  pthread_t thread;
  _Atomic int finished;             /* the worker is about to return */
  int workers;                      /* workers this slot has had */
  const char *fate;                 /* how its last worker ended */
  uint64_t past_run, past_canceled; /* its earlier workers' final counts */
} slot;

static slot g_slots[SLOTS];
static _Atomic int g_round_over, g_pause, g_paused, g_round;
static _Atomic long g_exited, g_killed_cancel, g_killed_terminate, g_replaced;
static _Atomic long g_work; /* jobs run: what the workers did */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* slots, g_last */
static char g_last[512]; /* the last settled round, JSON */

static void do_job(void *arg) {
  (void)arg;
  atomic_fetch_add_explicit(&g_work, 1, memory_order_relaxed);
}
static void cancel_job(void *arg, int reason) {
  (void)arg;
  (void)reason; /* handed back: nothing to free here */
}

typedef struct worker_args {
  int slot, serve_ms;
} worker_args;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *worker_main(void *p) {
  worker_args a = *(worker_args *)p;
  free(p);
  mbx_set_capacity(mbx_self(), 512); /* backpressure: senders see EFULL */
  double end = now_ms() + a.serve_ms;
  while (now_ms() < end && !atomic_load(&g_round_over)) {
    pthread_testcancel(); /* where pthread_cancel ends slot 0 */
    mbx_wait(20);
  }
  /* A busy moment before returning: what the senders queue now is
   * canceled on the way out. */
  sleep_ms(3);
  atomic_store(&g_slots[a.slot].finished, 1);
  return NULL; /* the mailbox closes here */
}

static void start_worker(int s, unsigned *seed) {
  worker_args *a = malloc(sizeof *a);
  if (!a)
    abort();
  a->slot = s;
  *seed = *seed * 1103515245u + 12345u;
  a->serve_ms = s < 2 ? 1 << 30 : 200 + (int)((*seed >> 16) % 900);
  atomic_store(&g_slots[s].finished, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, worker_main, a) != 0)
    abort();
  mbx_handle h = mbx_thread_handle(t);
  mbx_hold(h); /* so its counters stay readable after it is gone */
  pthread_mutex_lock(&g_lock);
  uint64_t old = atomic_exchange(&g_slots[s].handle, h.bits);
  g_slots[s].thread = t;
  g_slots[s].workers++;
  pthread_mutex_unlock(&g_lock);
  if (old) { /* gone now: its counters are final */
    mbx_stats st;
    if (mbx_stats_get((mbx_handle){old}, &st) == MBX_OK) {
      pthread_mutex_lock(&g_lock);
      g_slots[s].past_run += st.run;
      g_slots[s].past_canceled += st.canceled + st.dropped;
      pthread_mutex_unlock(&g_lock);
    }
    mbx_release((mbx_handle){old});
  }
}

/* Sends the program saw accepted (MBX_OK): the senders' and the
 * coordinator's. */
static _Atomic long long g_accepted;
static void count_send(int rc) {
  if (rc == MBX_OK)
    atomic_fetch_add_explicit(&g_accepted, 1, memory_order_relaxed);
}

static void *sender_main(void *p) {
  unsigned seed = (unsigned)(uintptr_t)p * 2654435761u + 1;
  for (;;) {
    if (atomic_load(&g_pause)) {
      atomic_fetch_add(&g_paused, 1);
      while (atomic_load(&g_pause))
        sleep_ms(2);
      atomic_fetch_sub(&g_paused, 1);
    }
    for (int i = 0; i < 64; i++) {
      seed = seed * 1103515245u + 12345u;
      mbx_handle to = {atomic_load(&g_slots[(seed >> 16) % SLOTS].handle)};
      /* Refused: counted by the library, and the job is still ours. */
      count_send(mbx_send(to, do_job, cancel_job, NULL));
    }
    sleep_ms(1);
  }
  return NULL;
}

static _Atomic int g_terminated;
static void terminate_on_main(void *thread) {
  atomic_store(&g_terminated, demo_terminate_worker((pthread_t)thread));
}

static int is_open(mbx_handle h) {
  mbx_handle open[256];
  uint32_t n = 0;
  mbx_mailboxes_list(open, 256, &n);
  for (uint32_t i = 0; i < n && i < 256; i++)
    if (mbx_handle_equal(open[i], h))
      return 1;
  return 0;
}

static void *coordinator(void *arg) {
  (void)arg;
  unsigned seed = 12345;
  pthread_t senders[SENDERS];
  for (int i = 0; i < SENDERS; i++)
    pthread_create(&senders[i], NULL, sender_main, (void *)(uintptr_t)(i + 1));
  for (;;) {
    atomic_store(&g_round_over, 0);
    for (int s = 0; s < SLOTS; s++)
      start_worker(s, &seed);
    pthread_detach(g_slots[1].thread); /* terminated: never joined */
    for (int t = 0; t < ROUND_MS / 20; t++) {
      sleep_ms(20);
      for (int s = 2; s < SLOTS; s++) {
        if (!atomic_load(&g_slots[s].finished))
          continue;
        pthread_join(g_slots[s].thread, NULL);
        g_slots[s].fate = "returned";
        atomic_fetch_add(&g_exited, 1);
        atomic_fetch_add(&g_replaced, 1);
        start_worker(s, &seed);
      }
    }
    /* End of the round: kill slots 0 and 1, stop 2 and 3. */
    pthread_cancel(g_slots[0].thread);
    mbx_handle h1 = {atomic_load(&g_slots[1].handle)};
    atomic_store(&g_terminated, -1);
    count_send(mbx_send(mbx_main_thread(), terminate_on_main, NULL,
                        (void *)g_slots[1].thread));
    atomic_store(&g_round_over, 1);
    pthread_join(g_slots[0].thread, NULL);
    for (int s = 2; s < SLOTS; s++)
      pthread_join(g_slots[s].thread, NULL);
    while (atomic_load(&g_terminated) < 0 || is_open(h1))
      sleep_ms(2); /* its mail is canceled on main, from the event loop */
    pthread_mutex_lock(&g_lock);
    g_slots[0].fate = "pthread_cancel";
    g_slots[1].fate = atomic_load(&g_terminated) ? "worker.terminate" : "?";
    g_slots[2].fate = g_slots[3].fate = "returned";
    pthread_mutex_unlock(&g_lock);
    atomic_fetch_add(&g_killed_cancel, 1);
    atomic_fetch_add(&g_killed_terminate, 1);
    atomic_fetch_add(&g_exited, 2);

    /* Settle: senders paused, every worker gone, nothing in flight. */
    atomic_store(&g_pause, 1);
    while (atomic_load(&g_paused) < SENDERS)
      sleep_ms(1);
    mbx_stats g;
    mbx_stats_global(&g);
    long long sent = atomic_load(&g_accepted);
    long long lost = sent - (long long)(g.run + g.canceled + g.dropped +
                                        g.pending + g.abandoned);
    int round = atomic_fetch_add(&g_round, 1) + 1;
    pthread_mutex_lock(&g_lock);
    snprintf(g_last, sizeof g_last,
             "{\"round\":%d,\"sent\":%lld,\"run\":%llu,\"canceled\":%llu,"
             "\"dropped\":%llu,\"pending\":%llu,\"abandoned\":%llu,"
             "\"lost\":%lld}",
             round, sent, (unsigned long long)g.run,
             (unsigned long long)g.canceled, (unsigned long long)g.dropped,
             (unsigned long long)g.pending, (unsigned long long)g.abandoned,
             lost);
    pthread_mutex_unlock(&g_lock);
    printf("round %d: sent=%lld run=%llu canceled=%llu dropped=%llu "
           "pending=%llu abandoned=%llu lost=%lld\n",
           round, sent, (unsigned long long)g.run,
           (unsigned long long)g.canceled, (unsigned long long)g.dropped,
           (unsigned long long)g.pending, (unsigned long long)g.abandoned,
           lost);
    atomic_store(&g_pause, 0);
  }
  return NULL;
}

/* The page's data: called by the page's JavaScript on the main thread.
 * Returns a JSON string valid until the next call. */
EMSCRIPTEN_KEEPALIVE const char *demo_snapshot(void) {
  static char *buf;
  static size_t size = 1 << 14;
  char head[1536];
  mbx_handle watch[SLOTS];
  pthread_mutex_lock(&g_lock);
  int n =
      snprintf(head, sizeof head,
               "{\"demo\":{\"round\":%d,\"round_ms\":%d,\"senders\":%d,"
               "\"exited\":%ld,\"killed_cancel\":%ld,"
               "\"killed_terminate\":%ld,\"replaced\":%ld,\"work\":%ld,"
               "\"accepted\":%lld,\"last\":%s,\"slots\":[",
               atomic_load(&g_round), ROUND_MS, SENDERS, atomic_load(&g_exited),
               atomic_load(&g_killed_cancel), atomic_load(&g_killed_terminate),
               atomic_load(&g_replaced), atomic_load(&g_work),
               atomic_load(&g_accepted), g_last[0] ? g_last : "null");
  for (int s = 0; s < SLOTS; s++) {
    watch[s].bits = atomic_load(&g_slots[s].handle);
    n += snprintf(head + n, sizeof head - (size_t)n,
                  "%s{\"workers\":%d,\"last_fate\":\"%s\","
                  "\"past_run\":%llu,\"past_canceled\":%llu}",
                  s ? "," : "", g_slots[s].workers,
                  g_slots[s].fate ? g_slots[s].fate : "",
                  (unsigned long long)g_slots[s].past_run,
                  (unsigned long long)g_slots[s].past_canceled);
  }
  pthread_mutex_unlock(&g_lock);
  n += snprintf(head + n, sizeof head - (size_t)n, "]},\"mbx\":");
  for (;;) {
    if (!buf && !(buf = malloc(size)))
      return "{}";
    memcpy(buf, head, (size_t)n);
    size_t len = 0;
    int rc =
        mbx_snapshot_json(watch, SLOTS, buf + n, size - (size_t)n - 1, &len);
    if (rc == MBX_OK) {
      strcpy(buf + n + len, "}");
      return buf;
    }
    if (rc != MBX_EFULL)
      return "{}";
    free(buf);
    buf = NULL;
    size = (size_t)n + len + 4096;
  }
}

int main(void) {
  if (mbx_event_loop_attach() != MBX_OK)
    return 1;
  printf("mbx demo page: %d worker slots, %d senders, %d ms rounds\n", SLOTS,
         SENDERS, ROUND_MS);
  pthread_t t;
  pthread_create(&t, NULL, coordinator, NULL);
  pthread_detach(t);
  emscripten_exit_with_live_runtime();
  return 0;
}
