// mbx-test-cxxflags: -fexceptions
// mbx-test-timeout: 60
/*
 * Issue 18 item 17: a std::thread gets a mailbox (thread.h says so), also
 * natively with the default shared libstdc++, whose std::thread calls
 * pthread_create from inside libstdc++.so where -Wl,--wrap cannot reach.
 * The thread sees its own mailbox, a message sent to it runs there, and a
 * message still queued at its exit is canceled on it (Emscripten links
 * libc++ statically: there --wrap alone covers it).
 */
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mbx/mailbox.h>
#include <mbx/thread.h>
#include <thread>

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);        \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

static std::atomic<int> g_run{0}, g_canceled_on_owner{0}, g_go{0}, g_started{0},
    g_waited{0}, g_sent{0};
static std::atomic<uint64_t> g_self{0};
static std::thread::id g_owner;

int main() {
  std::thread t([] {
    g_self = mbx_self().bits;
    g_started = 1;
    while (!g_go)
      std::this_thread::yield();
    mbx_wait(1000); /* runs the first message */
    g_waited = 1;
    while (!g_sent) /* then exits with the second one queued */
      std::this_thread::yield();
  });
  while (!g_started)
    std::this_thread::yield();
  g_owner = t.get_id();
  mbx_handle h{g_self.load()};
  std::printf("std::thread mailbox: %s\n",
              mbx_handle_is_null(h) ? "none" : "yes");
  if (mbx_handle_is_null(h)) {
    g_go = g_sent = 1;
    t.join();
  }
  CHECK(!mbx_handle_is_null(h));
  CHECK(mbx_handle_equal(mbx_thread_handle(t.native_handle()), h));
  CHECK(mbx_send(
            h, [](void *) { g_run++; }, [](void *, int) { CHECK(false); },
            nullptr) == MBX_OK);
  g_go = 1;
  /* Until the wait has returned: a message that arrives while it lingers
   * after the first one may run in it (<mbx/mailbox.h>, mbx_wait). */
  while (!g_run || !g_waited)
    std::this_thread::yield();
  /* Queued after its last wait: canceled on the thread at its exit. */
  int rc = mbx_send(
      h, [](void *) { CHECK(false); },
      [](void *, int reason) {
        if (reason == MBX_CANCEL_THREAD_EXIT &&
            std::this_thread::get_id() == g_owner)
          g_canceled_on_owner++;
      },
      nullptr);
  g_sent = 1;
  t.join();
  CHECK(rc == MBX_OK);
  CHECK(g_canceled_on_owner == 1);
  std::printf("PASS std_thread_mailbox\n");
  return 0;
}
