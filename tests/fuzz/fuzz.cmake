# Included by CMakeLists.txt when STAMP_FUZZ is on (build-fuzz, CC=clang):
# every tests/fuzz/fuzz_NAME.c becomes fuzz_NAME, linked with libFuzzer and
# ASan+UBSan against stampcore (built with -fsanitize=fuzzer-no-link), and
# a ctest fuzz/NAME that runs it over a copy of tests/fuzz/corpus/NAME for
# STAMP_FUZZ_SECONDS (default 15) as a regression (tests/fuzz/run.sh).
# make fuzz runs the same binaries longer and keeps the grown corpus.
enable_testing()
file(GLOB FUZZ_HARNESSES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
foreach(f ${FUZZ_HARNESSES})
  get_filename_component(n ${f} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" short ${n})
  add_executable(${n} ${f})
  target_link_libraries(${n} stampcore)
  target_link_options(${n} PRIVATE -fsanitize=fuzzer,address,undefined)
  # Harnesses find the shipped files (the catalog) under the source tree.
  target_compile_definitions(${n} PRIVATE STAMP_SRC_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME fuzz/${short}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/fuzz/run.sh $<TARGET_FILE:${n}> ${short}
                   ${CMAKE_BINARY_DIR}/fuzz-artifacts)
  set_tests_properties(fuzz/${short} PROPERTIES
    ENVIRONMENT "STAMP_SRC=${CMAKE_SOURCE_DIR}" TIMEOUT 300)
endforeach()
