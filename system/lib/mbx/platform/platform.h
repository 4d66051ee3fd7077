/* Platform hooks: the only code that differs between Emscripten and native
 * Linux. Implemented in emscripten.c and linux.c. */
#ifndef MBX__PLATFORM_H
#define MBX__PLATFORM_H

#include <stdatomic.h>
#include <stdint.h>

/* Sleep while *word == expected, at most timeout_ms (< 0: forever).
 * Returns 0 when woken or the value differed, 1 on timeout. Spurious
 * returns are allowed: callers re-check their condition. */
int mbx__platform_wait(_Atomic int32_t *word, int32_t expected,
                       double timeout_ms);

/* Wake every thread sleeping on word (and, on Emscripten, every
 * Atomics.waitAsync waiter on it). */
void mbx__platform_wake_all(_Atomic int32_t *word);

/* Monotonic milliseconds. */
double mbx__platform_now_ms(void);

/* Give the CPU away briefly while another thread finishes a few
 * instructions (an in-flight send). */
void mbx__platform_yield(void);

#endif
