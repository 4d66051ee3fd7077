# Runs one C test program for CTest and decides its verdict: it passes when
# the program exits 0 and printed a line starting with PASS. Its output is
# passed through as it comes. A program still running after MBX_TEST_TIMEOUT
# seconds is killed and fails (CTest's own TIMEOUT, a little later, is the
# backstop: killed by it, this script could not report the output).
# Usage (test/CMakeLists.txt):
#   cmake -DMBX_TEST_TIMEOUT=<s> -P run_test.cmake -- <command> [args...]
cmake_minimum_required(VERSION 3.20)

set(command "")
set(after_dashes FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_dashes)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_dashes TRUE)
  endif()
endforeach()
if(NOT command OR NOT MBX_TEST_TIMEOUT)
  message(FATAL_ERROR "usage: cmake -DMBX_TEST_TIMEOUT=<s> -P run_test.cmake -- <command> [args...]")
endif()

execute_process(COMMAND ${command} TIMEOUT ${MBX_TEST_TIMEOUT}
                RESULT_VARIABLE result
                OUTPUT_VARIABLE out ECHO_OUTPUT_VARIABLE
                ERROR_VARIABLE err ECHO_ERROR_VARIABLE)

list(JOIN command " " shown)
if(NOT result STREQUAL "0")
  # A number is the exit code; a string says how it ended (a signal, the
  # timeout).
  if(result MATCHES "timeout")
    string(APPEND result " (${MBX_TEST_TIMEOUT} s)")
  endif()
  message(FATAL_ERROR "FAIL: `${shown}` ended with: ${result}")
endif()
if(NOT out MATCHES "(^|\n)PASS")
  message(FATAL_ERROR "FAIL: `${shown}` exited 0 but printed no line starting with PASS")
endif()
