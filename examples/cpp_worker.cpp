/*
 * Example: <mbx/mbx.hpp> from C++17. Two workers (std::threads serving their
 * mailboxes) own a word count each; main sends them lambdas: move-only
 * ones with post, a blocking call that returns a value, a future, and a
 * callback whose answer runs back on main. Then a worker is stopped with
 * work sent behind the stop: each piece runs, or is canceled on the
 * worker, or is refused; none is lost. Build: link mbx::mbx, -std=c++17.
 */
#include <mbx/mbx.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

/* State owned by one worker thread: only lambdas running there touch it. */
struct word_count {
  std::map<std::string, int> counts;
  void add(const std::string &text) {
    std::istringstream in(text);
    for (std::string w; in >> w;)
      counts[w]++;
  }
};

int main() {
  std::vector<mbx::worker> workers(2);
  std::vector<std::unique_ptr<word_count>> state;
  for (size_t i = 0; i < workers.size(); i++)
    state.push_back(std::make_unique<word_count>());

  const char *lines[] = {"the cat sat", "on the mat", "the end"};
  for (int i = 0; i < 3; i++) {
    // A move-only lambda: the text travels in a unique_ptr.
    auto text = std::make_unique<std::string>(lines[i]);
    word_count *wc = state[i % 2].get();
    mbx::result<void> sent =
        workers[i % 2].post([wc, text = std::move(text)] { wc->add(*text); });
    if (!sent) {
      std::printf("post failed: %s\n", sent.error().message().c_str());
      return 1;
    }
  }

  // A blocking call with a value: runs on worker 0, after its queued posts.
  word_count *wc0 = state[0].get();
  mbx::result<int> the = workers[0].call([wc0] { return wc0->counts["the"]; });
  std::printf("worker 0 saw \"the\" %d times\n", the.value());

  // A future.
  word_count *wc1 = state[1].get();
  auto words = workers[1].async([wc1] { return (int)wc1->counts.size(); });
  std::printf("worker 1 knows %d words\n", words->get());

  // A callback: the answer runs here, on main, when main drains its mailbox.
  bool answered = false;
  mbx::result<void> asked = mbx::callback(
      workers[1].handle(), [wc1] { return wc1->counts["mat"]; },
      [&answered](int mats) {
        std::printf("callback on main: \"mat\" %d time(s)\n", mats);
        answered = true;
      },
      [&answered](int code) {
        std::printf("callback canceled: %s\n", mbx_strerror(code));
        answered = true;
      });
  while (asked && !answered)
    mbx_wait(-1);

  // Stop worker 0 with more work behind the stop: each of those either
  // still runs (in the drain that ran the stop), or is canceled on the
  // dying worker, or is refused once it is gone; never lost.
  int ran = 0, canceled = 0, refused = 0;
  int refusal = MBX_OK;
  workers[0].request_stop();
  for (int i = 0; i < 3; i++) {
    mbx::result<void> late =
        workers[0].post([&ran] { ran++; }, // on the worker; read after join
                        [&canceled](int reason) {
                          if (reason == MBX_CANCEL_THREAD_EXIT)
                            canceled++; // on the dying worker
                        });
    if (!late) {
      refused++;
      refusal = late.code();
    }
  }
  workers[0].join();
  std::printf("after stop: %d ran, %d canceled on the worker, %d refused "
              "(of 3)%s%s\n",
              ran, canceled, refused, refused ? ": " : "",
              refused ? mbx_strerror(refusal) : "");
  if (ran + canceled + refused != 3)
    return 1;
  return 0; // ~worker stops and joins worker 1
}
