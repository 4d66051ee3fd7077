/* Emscripten platform hooks: Atomics.wait/notify through the public
 * <emscripten/threading.h> futex functions. emscripten_futex_wake is
 * Atomics.notify, so it also resolves Atomics.waitAsync waiters armed by
 * src/mbx.js on the same word. */
#ifdef __EMSCRIPTEN__
#include "platform.h"

#include <emscripten/emscripten.h>
#include <emscripten/threading.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>

int mbx__platform_wait(_Atomic int32_t *word, int32_t expected,
                       double timeout_ms) {
  int rc = emscripten_futex_wait((void *)word, (uint32_t)expected,
                                 timeout_ms < 0 ? INFINITY : timeout_ms);
  return rc == -ETIMEDOUT;
}

void mbx__platform_wake_all(_Atomic int32_t *word) {
  emscripten_futex_wake((void *)word, INT_MAX);
}

double mbx__platform_now_ms(void) { return emscripten_get_now(); }

void mbx__platform_yield(void) { sched_yield(); }

#endif
