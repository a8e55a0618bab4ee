"""Small C++ helpers of this package, compiled once per machine and loaded with ctypes.

:func:`load` builds a source file of this folder with ``$CXX`` (else ``g++`` or ``c++``) into a shared
library in ``$SSD_KERNEL_CACHE`` (default ``~/.cache/ssd_mindspore``), named after a hash of the source,
the compiler, the flags and the CPU (code built with ``-march=native`` must not move to another CPU).
The library is written under a temporary name and renamed, so processes building at the same time do
not see each other's half-written files. Without a working compiler :func:`load` logs one warning and
returns None, and callers fall back to numpy. Functions called through ``ctypes.CDLL`` release the GIL.
"""
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile

LOGGER = logging.getLogger(__name__)

# -ffp-contract=off: no fused multiply-adds, so float32 results round as numpy's do.
CXX_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC", "-std=c++14")
BUILD_TIMEOUT_S = 300


def source_path(name):
    """Path of the C++ source ``name`` kept in this folder."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def cpu_fingerprint():
    """Model name and ISA flags of this CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            lines = [line for line in info if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return os.uname().machine


def cache_dir():
    """``$SSD_KERNEL_CACHE`` or ``~/.cache/ssd_mindspore``, created if needed; the temp dir if it cannot be."""
    path = os.environ.get("SSD_KERNEL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ssd_mindspore"))
    try:
        os.makedirs(path, exist_ok=True)
        return path
    except OSError:
        return tempfile.gettempdir()


def find_compiler():
    """Absolute path of ``$CXX`` (else ``g++``, else ``c++``), or None."""
    wanted = os.environ.get("CXX")
    return shutil.which(wanted) if wanted else shutil.which("g++") or shutil.which("c++")


def compiler_identity(cxx):
    """Resolved path, size and modification time of the compiler: changes when it is upgraded."""
    real = os.path.realpath(cxx)
    stat = os.stat(real)
    return "%s %d %d" % (real, stat.st_size, stat.st_mtime_ns)


def library_path(source, cxx, flags):
    """Cache path of the library built from ``source`` by ``cxx`` with ``flags``."""
    with open(source, "rb") as text:
        code = text.read()
    key = hashlib.sha1(b"\n".join([code, compiler_identity(cxx).encode(), " ".join(flags).encode(),
                                   cpu_fingerprint().encode()])).hexdigest()
    stem = os.path.splitext(os.path.basename(source))[0]
    return os.path.join(cache_dir(), "ssd_%s_%s.so" % (stem, key[:16]))


def compile_library(source, cxx, flags, lib):
    """Compile ``source`` to ``lib`` through a temporary file in the same folder; the error text or None."""
    handle, tmp = tempfile.mkstemp(prefix=os.path.basename(lib) + ".", suffix=".tmp", dir=os.path.dirname(lib))
    os.close(handle)
    try:
        done = subprocess.run([cxx, *flags, source, "-o", tmp], capture_output=True, text=True, check=False,
                              timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
        os.replace(tmp, lib)
        return None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build(source, flags=CXX_FLAGS):
    """Path of the shared library built from ``source`` (compiled on first use), or None with a warning."""
    cxx = find_compiler()
    if cxx is None:
        LOGGER.warning("no C++ compiler found (set $CXX or install g++): %s falls back to numpy",
                       os.path.basename(source))
        return None
    try:
        lib = library_path(source, cxx, flags)
        error = None if os.path.isfile(lib) else compile_library(source, cxx, flags, lib)
    except (OSError, subprocess.SubprocessError) as exc:
        error = str(exc)
    if error is not None:
        LOGGER.warning("building %s failed, falling back to numpy: %s", os.path.basename(source), error)
        return None
    return lib


@functools.lru_cache(maxsize=None)
def load(name, flags=CXX_FLAGS):
    """ctypes.CDLL of the source ``name`` in this folder, built on first use; None (one warning) if it cannot be."""
    lib = build(source_path(name), flags)
    if lib is None:
        return None
    try:
        return ctypes.CDLL(lib)
    except OSError as exc:
        LOGGER.warning("loading %s failed, falling back to numpy: %s", lib, exc)
        return None
