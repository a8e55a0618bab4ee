"""Small C++ helpers of this package, compiled once per machine and loaded with ctypes.

:func:`load` builds a source file of this folder with ``$CXX`` (else ``g++`` or ``c++``) into a shared
library in ``$SSD_KERNEL_CACHE`` (default ``~/.cache/ssd_mindspore``, mode 0700), named after a hash of
the source (with the folder's headers), the compiler, the flags and the CPU (code built with
``-march=native`` must not move to another CPU). The library is written under a temporary name and
renamed, so processes building at the same time do not see each other's half-written files. A folder or
library another user owns or may write to is never loaded from (it could be planted): the cache moves to
a private per-user folder and the library is built again, as it is when a cached file does not load.
Without a working compiler :func:`build` logs one warning and returns None, and callers fall back (the
matcher to numpy, the kernels to the plain MindSpore formulation). Functions called through
``ctypes.CDLL`` release the GIL.
"""
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import stat
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


def private(path):
    """True when ``path`` exists, belongs to this user and nobody else may write to it: a library loaded
    from a folder or file another local user can write could be one they planted."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def private_dir(path):
    """``path`` created (mode 0700) if missing; None when it cannot be, or is not :func:`private`."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return path if private(path) else None


def cache_dir():
    """``$SSD_KERNEL_CACHE`` (empty: unset) or ``~/.cache/ssd_mindspore``, created with mode 0700; when
    that cannot be made or is not private (another user owns it, or others may write to it), a per-user
    folder in the temp dir; None when neither is usable."""
    path = os.environ.get("SSD_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ssd_mindspore")
    found = private_dir(path)
    if found is None:
        found = private_dir(os.path.join(tempfile.gettempdir(), "ssd_mindspore-%d" % os.getuid()))
        if found is not None:
            LOGGER.warning("kernel cache %s is not usable or not private to this user; using %s", path, found)
    return found


def find_compiler():
    """Absolute path of ``$CXX`` (else ``g++``, else ``c++``), or None."""
    wanted = os.environ.get("CXX")
    return shutil.which(wanted) if wanted else shutil.which("g++") or shutil.which("c++")


def compiler_identity(cxx):
    """Resolved path, size and modification time of the compiler: changes when it is upgraded."""
    real = os.path.realpath(cxx)
    stat = os.stat(real)
    return "%s %d %d" % (real, stat.st_size, stat.st_mtime_ns)


def headers(folder):
    """The C++ headers in ``folder`` (sorted): part of every source's build key, since a source may include them."""
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".h"))


def library_path(source, cxx, flags, folder):
    """Path in ``folder`` of the library built from ``source`` by ``cxx`` with ``flags``."""
    code = b""
    for path in [source] + headers(os.path.dirname(source)):
        with open(path, "rb") as text:
            code += text.read()
    key = hashlib.sha1(b"\n".join([code, compiler_identity(cxx).encode(), " ".join(flags).encode(),
                                   cpu_fingerprint().encode()])).hexdigest()
    stem = os.path.splitext(os.path.basename(source))[0]
    return os.path.join(folder, "ssd_%s_%s.so" % (stem, key[:16]))


def loads(lib):
    """The error text when ``lib`` cannot be loaded as a shared library (a truncated or foreign file),
    else None."""
    try:
        ctypes.CDLL(lib)
    except OSError as exc:
        return str(exc)
    return None


def compile_library(source, cxx, flags, lib):
    """Compile ``source`` to ``lib`` through a temporary file in the same folder; the error text or None."""
    handle, tmp = tempfile.mkstemp(prefix=os.path.basename(lib) + ".", suffix=".tmp", dir=os.path.dirname(lib))
    os.close(handle)
    try:
        done = subprocess.run([cxx, *flags, source, "-o", tmp], capture_output=True, text=True, check=False,
                              timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
        os.chmod(tmp, 0o755)
        os.replace(tmp, lib)
        return None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build(source, flags=CXX_FLAGS, fallback="numpy"):
    """Path of the shared library built from ``source`` (compiled on first use), or None with one warning
    naming what the caller falls back to. A cached library is used only when it is private to this user
    and loads; otherwise it is built again."""
    name = os.path.basename(source)
    cxx = find_compiler()
    if cxx is None:
        LOGGER.warning("no C++ compiler found (set $CXX or install g++): %s falls back to %s", name, fallback)
        return None
    folder = cache_dir()
    if folder is None:
        LOGGER.warning("no private folder for compiled kernels (set $SSD_KERNEL_CACHE): %s falls back to %s",
                       name, fallback)
        return None
    try:
        lib = library_path(source, cxx, flags, folder)
        cached = os.path.isfile(lib) and private(lib) and loads(lib) is None
        error = None if cached else compile_library(source, cxx, flags, lib) or loads(lib)
    except (OSError, subprocess.SubprocessError) as exc:
        error = str(exc)
    if error is not None:
        LOGGER.warning("building %s failed, falling back to %s: %s", name, fallback, error)
        return None
    return lib


@functools.lru_cache(maxsize=None)
def load(name, flags=CXX_FLAGS):
    """ctypes.CDLL of the source ``name`` in this folder, built on first use; None (one warning) if it cannot be."""
    lib = build(source_path(name), flags)
    return None if lib is None else ctypes.CDLL(lib)
