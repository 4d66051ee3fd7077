// mbx-test-flavors: native
// (Not native-asan: LeakSanitizer's exit check in the child of a threaded
//  parent tries to suspend threads that exist only in the parent and hung,
//  or reported the parent's queued nodes, which the child drops by policy.)
// mbx-test-args: --forks 10
// mbx-test-timeout: 180
/*
 * Issue 18 item 2: fork() while other threads send. The child inherits the
 * gate's in-flight sender counts (and possibly a held registry lock) of
 * senders that exist only in the parent; its exit() must still end (the
 * runtime-exit close must not wait for them). The child also must not
 * run or cancel the parent's queued messages a second time: its cancel
 * functions write a marker to a pipe, and the parent's queue is drained by
 * the parent only. Natively only (Emscripten has no fork).
 */
#define _GNU_SOURCE
#include "test_threads.h"
#include "watchdog.h"

#include <mbx/thread.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

enum { SENDERS = 2 };

static _Atomic int g_stop, g_run;
static mbx_handle g_sink;
static int g_child_pipe = -1;

static void on_run(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_run, 1);
}
static void on_cancel(void *arg, int reason) {
  (void)arg;
  (void)reason;
  if (g_child_pipe >= 0) /* in a child: the parent's message canceled here */
    (void)!write(g_child_pipe, "c", 1);
}

static void *sender(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop)) {
    mbx_send(g_sink, on_run, on_cancel, NULL);
    mbx_send(mbx_main_thread(), on_run, on_cancel, NULL);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int forks = (int)arg_long(argc, argv, "--forks", 10);
  pthread_t s, t[SENDERS];
  CHECK_EQ(pthread_create(&s, NULL, serve_until, &g_stop), 0);
  g_sink = mbx_thread_handle(s);
  /* Bounded queues: the senders flood (EFULL is fine). */
  CHECK_EQ(mbx_set_capacity(g_sink, 1000), MBX_OK);
  CHECK_EQ(mbx_set_capacity(mbx_main_thread(), 1000), MBX_OK);
  for (int i = 0; i < SENDERS; i++)
    CHECK_EQ(pthread_create(&t[i], NULL, sender, NULL), 0);
  int hung = 0, double_cancels = 0;
  for (int i = 0; i < forks; i++) {
    mbx_poll();
    sleep_ms(2);
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      g_child_pipe = fds[1];
      exit(0); /* runtime exit in the child */
    }
    close(fds[1]);
    int status = 0, done = 0;
    for (int ms = 0; ms < 3000 && !done; ms++) {
      done = waitpid(pid, &status, WNOHANG) == pid;
      if (!done)
        sleep_ms(1);
    }
    if (!done) {
      hung++;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    char buf[256];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
      double_cancels += (int)n;
    close(fds[0]);
    fprintf(stderr, "fork %d: %s\n", i, done ? "exited" : "hung, killed");
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < SENDERS; i++)
    pthread_join(t[i], NULL);
  pthread_join(s, NULL);
  printf("forks=%d hung=%d parent_messages_canceled_in_children=%d\n", forks,
         hung, double_cancels);
  fflush(stdout);
  CHECK_EQ(hung, 0);
  CHECK_EQ(double_cancels, 0);
  printf("PASS fork_child\n");
  return 0;
}
