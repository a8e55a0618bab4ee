"""The compiled-library cache: private to the user (mode 0700, nothing another user could plant is
loaded), rebuilt when a cached file does not load, and an empty SSD_KERNEL_CACHE meaning unset."""
import logging
import os
import tempfile

import pytest

from src import native

needs_compiler = pytest.mark.skipif(native.find_compiler() is None, reason="no C++ compiler")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home and temp folder, and no SSD_KERNEL_CACHE."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSD_KERNEL_CACHE", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(str(tmp_path / "tmp"))
    return tmp_path


def mode(path):
    return os.stat(path).st_mode & 0o777


def test_default_cache_is_private_and_empty_variable_means_unset(home, monkeypatch):
    monkeypatch.setenv("SSD_KERNEL_CACHE", "")
    folder = native.cache_dir()
    assert folder == os.path.join(str(home / "home"), ".cache", "ssd_mindspore") and mode(folder) == 0o700


def test_folder_others_may_write_is_not_used(home, monkeypatch, caplog):
    shared = home / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    monkeypatch.setenv("SSD_KERNEL_CACHE", str(shared))
    with caplog.at_level(logging.WARNING):
        folder = native.cache_dir()
    assert folder == os.path.join(str(home / "tmp"), "ssd_mindspore-%d" % os.getuid()) and mode(folder) == 0o700
    assert "not private" in caplog.text


def test_no_private_folder_means_no_library(home, monkeypatch, caplog):
    monkeypatch.setattr(native, "cache_dir", lambda: None)
    with caplog.at_level(logging.WARNING):
        assert native.build(native.source_path("box_match.cc"), fallback="the plain formulation") is None
    assert "falls back to the plain formulation" in caplog.text


@needs_compiler
def test_cached_library_that_does_not_load_or_others_may_write_is_rebuilt(home):
    source = native.source_path("box_match.cc")
    lib = native.build(source)
    assert lib is not None and mode(lib) == 0o755
    # A damaged file replaces the library (writing into the loaded file itself would corrupt this
    # process's own mapping of it).
    with open(lib + ".bad", "wb") as stream:
        stream.write(b"not a library")
    os.replace(lib + ".bad", lib)
    assert native.build(source) == lib and native.loads(lib) is None
    os.chmod(lib, 0o777)
    stamp = os.stat(lib).st_mtime_ns
    assert native.build(source) == lib and mode(lib) == 0o755 and os.stat(lib).st_mtime_ns != stamp
