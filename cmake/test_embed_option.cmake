# ctest: builds the library and CLI with -DFLASHMLA_EMBED_BUNDLE=<generated source> in a
# scratch build tree and checks that `flashmla info` lists the embedded bundle.
# Usage: cmake -DSOURCE_DIR=... -DBUNDLE_CPP=... -DWORK_DIR=... -DPREFIX_PATH=... -DGENERATOR=... -P test_embed_option.cmake
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}" -DFLASHMLA_BUILD_TESTS=OFF
                        "-DFLASHMLA_EMBED_BUNDLE=${BUNDLE_CPP}" "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "configuring with FLASHMLA_EMBED_BUNDLE failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}" --target flashmla_cli --parallel RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "building with FLASHMLA_EMBED_BUNDLE failed: ${rc}")
endif()
execute_process(COMMAND "${WORK_DIR}/flashmla" info OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
if(rc OR NOT out MATCHES "bundles: embedded:test_embedded")
  message(FATAL_ERROR "the library built with FLASHMLA_EMBED_BUNDLE does not list its bundle")
endif()
