# cmake -DCXX=... -DINCLUDE=... -DSOURCE=... -DEXPECT=... -P check_compile_error.cmake
# Compiles SOURCE (syntax and types only) and requires that it fails, that the first error is
# reported at the line marked `KEYBY-LINE` of SOURCE, that it contains EXPECT, and that the
# diagnostics stay short (a user reads them, not a template backtrace through Abseil).
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -fdiagnostics-color=never
                        -I${INCLUDE} ${SOURCE}
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
file(STRINGS ${SOURCE} lines)
set(n 0)
set(marked "")
foreach(line IN LISTS lines)
  math(EXPR n "${n} + 1")
  if(line MATCHES "KEYBY-LINE")
    set(marked ${n})
  endif()
endforeach()
string(REGEX MATCH "[^\n]*error:[^\n]*" first_error "${err}")
if(NOT first_error MATCHES "${EXPECT}")
  message(FATAL_ERROR "first error is not the expected message '${EXPECT}':\n${first_error}\n--- all:\n${err}")
endif()
get_filename_component(name ${SOURCE} NAME)
if(NOT err MATCHES "${name}:${marked}:[0-9]+:   required from here")
  message(FATAL_ERROR "the diagnostics do not point at ${name}:${marked} (the KeyBy line):\n${err}")
endif()
string(REGEX MATCHALL "error:" errors "${err}")
list(LENGTH errors error_count)
if(error_count GREATER 2)
  message(FATAL_ERROR "${error_count} errors (at most 2 expected):\n${err}")
endif()
message(STATUS "${name}: fails as expected with: ${first_error}")
