// Third-party C++ code that starts a thread with std::thread and includes
// no mbx header: the loader example (examples/loader.c) checks that such a
// thread still catches up on every loaded library before its own code runs.
#include <cstdint>
#include <new>
#include <thread>

extern "C" void loader_thread_body(std::uint64_t libs_at_create, int kind);

extern "C" void *foreign_std_thread_start(std::uint64_t libs_at_create) {
  try {
    return new std::thread(
        [libs_at_create] { loader_thread_body(libs_at_create, 2); });
  } catch (...) {
    return nullptr;
  }
}

extern "C" void foreign_std_thread_join(void *t) {
  auto *thread = static_cast<std::thread *>(t);
  thread->join();
  delete thread;
}
