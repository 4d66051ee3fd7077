// mbx-test-cxxflags: -fexceptions
// mbx-test-timeout: 120
/*
 * cpp_api.cpp built with -fexceptions (compile and link): on Emscripten,
 * whose default disables catching, this is the build where the exception
 * checks run (rethrown on the caller, in futures, the handler for
 * fire-and-forget work).
 */
#define CPP_TEST_FEXCEPTIONS 1
#include "cpp_api.cpp"
