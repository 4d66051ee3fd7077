/* Reports a failed MBX_ASSERT (sanitizer and debug builds only) and aborts,
 * so that the sanitizer prints the stack. */
#include "invariant.h"

#if defined(MBX_ASSERTIONS) && MBX_ASSERTIONS
#include <stdio.h>
#include <stdlib.h>

void mbx__assert_failed(const char *cond, const char *file, int line) {
  fprintf(stderr, "mbx: invariant violated: %s (%s:%d)\n", cond, file, line);
  abort();
}
#else
/* ISO C forbids an empty translation unit. */
typedef int mbx__invariant_unused;
#endif
