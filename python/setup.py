"""Builds libflashmla.so with CMake (from the repository root, one level up) and bundles it
into the flashmla package. Without cmake, or if the build fails, the package installs
without the library and finds it at run time through FLASHMLA_LIBRARY (see README.md).

Environment: FLASHMLA_SKIP_BUILD=1 skips the build; FLASHMLA_CMAKE_ARGS adds cmake arguments
(e.g. "-DCMAKE_PREFIX_PATH=/opt/deps"); CUDA_HOME locates the CUDA headers, as for CMake.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD_DIR = HERE / "build" / "cmake-flashmla"  # flashmla/_capi.py also looks here
LIBRARY = "libflashmla.so"


def say(message):
    print(f"flashmla setup: {message}", file=sys.stderr, flush=True)


def build_library():
    """Path of a freshly built libflashmla.so, or None (with the reason printed)."""
    if os.environ.get("FLASHMLA_SKIP_BUILD"):
        say("FLASHMLA_SKIP_BUILD is set: not building libflashmla.so; set FLASHMLA_LIBRARY at run time")
        return None
    if not (ROOT / "CMakeLists.txt").is_file() or not (ROOT / "include" / "flashmla" / "flashmla.h").is_file():
        say(f"no flashmla source tree at {ROOT}: not building libflashmla.so; set FLASHMLA_LIBRARY at run time")
        return None
    cmake = shutil.which("cmake")
    if cmake is None:
        say("cmake not found: installing without libflashmla.so; set FLASHMLA_LIBRARY at run time")
        return None
    configure = [cmake, "-S", str(ROOT), "-B", str(BUILD_DIR), "-DCMAKE_BUILD_TYPE=Release",
                 "-DFLASHMLA_BUILD_TESTS=OFF", "-DFLASHMLA_WERROR=OFF"]
    if shutil.which("ninja") and not (BUILD_DIR / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    configure += shlex.split(os.environ.get("FLASHMLA_CMAKE_ARGS", ""))
    build = [cmake, "--build", str(BUILD_DIR), "--target", "flashmla", "--parallel"]
    for command in (configure, build):
        say(" ".join(command))
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            say(f"building libflashmla.so failed; installing without it (set FLASHMLA_LIBRARY at run time):\n"
                f"{result.stdout[-4000:]}")
            return None
    library = BUILD_DIR / LIBRARY
    if not library.is_file():
        say(f"the build produced no {library}; installing without it")
        return None
    return library


class BuildPyWithLibrary(build_py):
    """build_py, plus libflashmla.so copied into the built flashmla package."""

    def run(self):
        super().run()
        library = build_library()
        target = Path(self.build_lib) / "flashmla" / LIBRARY
        if library is None:
            target.unlink(missing_ok=True)  # no stale copy from an earlier build
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)
        say(f"bundled {library} as {target}")


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
