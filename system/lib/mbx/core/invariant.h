/* MBX_ASSERT: checks the invariants of the model (test/model/mbx.pml) in the
 * sanitizer and debug builds, where CMake defines MBX_ASSERTIONS=1; compiled
 * out of release builds, which still return their error codes and never
 * abort. The condition must have no side effects. */
#ifndef MBX__INVARIANT_H
#define MBX__INVARIANT_H

#if defined(MBX_ASSERTIONS) && MBX_ASSERTIONS
void mbx__assert_failed(const char *cond, const char *file, int line);
#define MBX_ASSERT(cond)                                                       \
  ((cond) ? (void)0 : mbx__assert_failed(#cond, __FILE__, __LINE__))
#else
#define MBX_ASSERT(cond) ((void)0)
#endif

#endif
