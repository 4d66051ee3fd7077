/*
 * Demo: worker threads come and go while senders keep sending to them.
 *
 * Each worker thread gets its mailbox automatically from pthread_create
 * (mbx::mbx interposes it), serves messages for a while, then returns with
 * messages still queued: its mailbox closes as it exits and those messages
 * are canceled on the dying worker. The worker in slot 0 never finishes by
 * itself: main kills it with pthread_cancel, with the same result. Senders
 * hold handles to workers that may already be gone and get clean error
 * codes. The last line checks the library against the senders: `sent` is
 * what they saw accepted (MBX_OK), the library counts what was run,
 * canceled, dropped, still pending or abandoned, and
 * lost = sent - run - canceled - dropped - pending - abandoned.
 */
#define _POSIX_C_SOURCE 200809L
#include <mbx/mailbox.h>
#include <mbx/thread.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WORKER_SLOTS 4
#define GENERATIONS 3
#define SENDERS 2

/* Handles of the current worker in each slot (0 = none yet). */
static _Atomic uint64_t g_slot_handle[WORKER_SLOTS];
static _Atomic int g_done;

typedef struct job {
  int value;
} job;

static _Atomic long g_sum;      /* work the workers did */
static _Atomic long g_accepted; /* sends the senders saw succeed */

static void do_job(void *arg) {
  job *j = arg;
  atomic_fetch_add_explicit(&g_sum, j->value, memory_order_relaxed);
  free(j);
}

/* Runs on the dying worker for every job still queued: the sender's job is
 * not lost, it is handed back (here: freed and counted). */
static void cancel_job(void *arg, int reason) {
  (void)reason;
  free(arg);
}

typedef struct worker_args {
  int slot, generation, quota;
} worker_args;

static void *worker_main(void *p) {
  worker_args *a = p;
  pthread_cleanup_push(free, a);
  mbx_set_capacity(mbx_self(), 1024); /* backpressure: senders see EFULL */
  long ran = 0;
  while (ran < a->quota) {
    pthread_testcancel(); /* where pthread_cancel may end this thread */
    int n = mbx_wait(1000);
    if (n > 0)
      ran += n;
  }
  /* Stop serving for a moment before returning, as a busy thread would:
   * the senders keep queueing, and the exit cancels what they queued. */
  struct timespec pause = {0, 2000000};
  nanosleep(&pause, NULL);
  pthread_cleanup_pop(1);
  return NULL; /* the mailbox closes here, on the way out */
}

static void *sender_main(void *p) {
  unsigned seed = (unsigned)(uintptr_t)p * 2654435761u + 1;
  while (!atomic_load(&g_done)) {
    seed = seed * 1103515245u + 12345u;
    mbx_handle to = {atomic_load(&g_slot_handle[(seed >> 16) % WORKER_SLOTS])};
    job *j = malloc(sizeof *j);
    if (!j)
      abort();
    j->value = 1;
    int rc = mbx_send(to, do_job, cancel_job, j);
    if (rc == MBX_OK)
      atomic_fetch_add_explicit(&g_accepted, 1, memory_order_relaxed);
    else
      free(j); /* refused: the sender still owns the job */
  }
  return NULL;
}

int main(void) {
  printf("mbx demo: %d worker slots x %d generations, %d senders\n",
         WORKER_SLOTS, GENERATIONS, SENDERS);
  pthread_t senders[SENDERS];
  for (int i = 0; i < SENDERS; i++)
    pthread_create(&senders[i], NULL, sender_main, (void *)(uintptr_t)(i + 1));
  /* (Senders get mailboxes too; they simply never read them.) */
  for (int gen = 0; gen < GENERATIONS; gen++) {
    pthread_t workers[WORKER_SLOTS];
    mbx_handle handles[WORKER_SLOTS];
    for (int s = 0; s < WORKER_SLOTS; s++) {
      worker_args *a = malloc(sizeof *a);
      a->slot = s;
      a->generation = gen;
      a->quota = s == 0 ? INT32_MAX : 20000 + 15000 * s;
      pthread_create(&workers[s], NULL, worker_main, a);
      /* The mailbox is open before pthread_create returns: publish it at
       * once, and hold it so its counters survive the thread. */
      handles[s] = mbx_thread_handle(workers[s]);
      mbx_hold(handles[s]);
      atomic_store(&g_slot_handle[s], handles[s].bits);
    }
    struct timespec busy = {0, 30000000};
    nanosleep(&busy, NULL);
    pthread_cancel(workers[0]); /* kill it while it serves */
    for (int s = 0; s < WORKER_SLOTS; s++) {
      void *result;
      pthread_join(workers[s], &result);
      mbx_stats ws;
      mbx_stats_get(handles[s], &ws);
      printf("worker %d.%d %s: ran %llu, canceled %llu still queued\n", s, gen,
             result == PTHREAD_CANCELED ? "killed" : "exited",
             (unsigned long long)ws.run,
             (unsigned long long)(ws.canceled + ws.dropped));
      mbx_release(handles[s]);
    }
  }
  atomic_store(&g_done, 1);
  for (int i = 0; i < SENDERS; i++)
    pthread_join(senders[i], NULL);

  mbx_stats s;
  mbx_stats_global(&s);
  uint64_t rejected = s.rejected_closed + s.rejected_stale +
                      s.rejected_invalid + s.rejected_nomem + s.rejected_full;
  long long sent = atomic_load(&g_accepted);
  long long lost = sent - (long long)(s.run + s.canceled + s.dropped +
                                      s.pending + s.abandoned);
  printf("rejected by reason: closed=%llu stale=%llu full=%llu "
         "invalid(no worker yet)=%llu\n",
         (unsigned long long)s.rejected_closed,
         (unsigned long long)s.rejected_stale,
         (unsigned long long)s.rejected_full,
         (unsigned long long)s.rejected_invalid);
  printf("work done by workers: %ld\n", atomic_load(&g_sum));
  printf("sent=%lld run=%llu canceled=%llu rejected=%llu lost=%lld\n", sent,
         (unsigned long long)s.run,
         (unsigned long long)(s.canceled + s.dropped),
         (unsigned long long)rejected, lost);
  return lost == 0 && (long)s.run == atomic_load(&g_sum) ? 0 : 1;
}
