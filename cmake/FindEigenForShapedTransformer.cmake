# Finds Eigen 3.4: a system (or user-given) Eigen3 CMake package first, else the
# headers of the `cmeel-eigen` wheel from the package index, which pip installs as
# a build requirement (no system Eigen is assumed).
find_package(Eigen3 3.4 CONFIG QUIET)
if(NOT TARGET Eigen3::Eigen)
  if(NOT Python_EXECUTABLE)
    find_package(Python 3.8 COMPONENTS Interpreter)
  endif()
  if(Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c
        "import sys, os\nfor p in sys.path:\n    d = os.path.join(p, 'cmeel.prefix', 'share', 'eigen3', 'cmake')\n    if os.path.isdir(d):\n        print(d); break"
      OUTPUT_VARIABLE _st_cmeel_eigen_dir OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_st_cmeel_eigen_dir)
      find_package(Eigen3 3.4 CONFIG REQUIRED PATHS "${_st_cmeel_eigen_dir}" NO_DEFAULT_PATH)
    endif()
  endif()
endif()
if(NOT TARGET Eigen3::Eigen)
  message(FATAL_ERROR "Eigen 3.4 not found: install it (apt-get install libeigen3-dev) or "
                      "`pip install cmeel-eigen` into the Python used by CMake, or set Eigen3_DIR.")
endif()
message(STATUS "Eigen3 ${Eigen3_VERSION} from ${Eigen3_DIR}")
