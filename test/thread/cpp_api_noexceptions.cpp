// mbx-test-cxxflags: -fno-exceptions
// mbx-test-timeout: 120
/*
 * cpp_api.cpp built with -fno-exceptions: <mbx/mbx.hpp> compiles and works
 * without exceptions (errors are result<T> codes; exception checks skipped).
 */
#include "cpp_api.cpp"
