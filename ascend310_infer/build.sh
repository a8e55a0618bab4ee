#!/bin/bash
# Build the SSD inference app (ascend310_infer/out/main) against MindSpore's C++ runtime.
#
#   MINDSPORE_PATH=/usr/local/lib/python3.9/site-packages/mindspore bash ascend310_infer/build.sh
#   MS_LITE_HOME=/opt/mindspore-lite-2.3.1-linux-aarch64 bash ascend310_infer/build.sh
#
# MINDSPORE_PATH is a MindSpore package holding include/api/model.h and lib/libmindspore.so (the
# Ascend install of MindSpore); MS_LITE_HOME an unpacked MindSpore Lite package. When neither is set,
# the installed Python package is tried. The PyPI wheel for CPU has no C++ runtime, so on such a
# machine this stops with one line saying what to set.

fail() {
  echo "error: $*" >&2
  exit 1
}

cd "$(dirname "$0")" || fail "cannot enter $(dirname "$0")"

has_full_runtime() {
  [ -f "$1/include/api/model.h" ] && [ -f "$1/lib/libmindspore.so" ]
}

if [ -n "$MS_LITE_HOME" ]; then
  [ -f "$MS_LITE_HOME/runtime/include/api/model.h" ] && [ -f "$MS_LITE_HOME/runtime/lib/libmindspore-lite.so" ] \
    || fail "MS_LITE_HOME=$MS_LITE_HOME is not an unpacked MindSpore Lite package (no runtime/include/api/model.h or runtime/lib/libmindspore-lite.so)"
  CMAKE_ARGS=(-DMS_LITE_HOME="$(cd "$MS_LITE_HOME" && pwd)")
elif [ -n "$MINDSPORE_PATH" ]; then
  has_full_runtime "$MINDSPORE_PATH" \
    || fail "MINDSPORE_PATH=$MINDSPORE_PATH has no MindSpore C++ runtime (include/api/model.h and lib/libmindspore.so); set it to the mindspore package of an Ascend install, or set MS_LITE_HOME"
  CMAKE_ARGS=(-DMINDSPORE_PATH="$(cd "$MINDSPORE_PATH" && pwd)")
else
  FOUND=$(python3 -c "import importlib.util as u; s = u.find_spec('mindspore'); print(s.submodule_search_locations[0] if s else '')" 2>/dev/null)
  if [ -n "$FOUND" ] && has_full_runtime "$FOUND"; then
    echo "using the MindSpore C++ runtime of the installed package: $FOUND"
    CMAKE_ARGS=(-DMINDSPORE_PATH="$FOUND")
  else
    fail "no MindSpore C++ runtime: set MINDSPORE_PATH to a mindspore package with include/api/model.h and lib/libmindspore.so (Ascend install), or MS_LITE_HOME to an unpacked MindSpore Lite package; the installed package${FOUND:+ ($FOUND)} has no C++ runtime"
  fi
fi

command -v cmake >/dev/null 2>&1 || fail "cmake not found: install cmake 3.14 or later"

rm -rf build out
mkdir -p build out || fail "cannot create ascend310_infer/build"
cd build || fail "cannot enter ascend310_infer/build"
cmake .. "${CMAKE_ARGS[@]}" || fail "cmake failed (see above)"
make -j"$(nproc 2>/dev/null || echo 2)" || fail "compilation failed (see above)"
mv main ../out/ || fail "the build produced no binary"
echo "built ascend310_infer/out/main"
