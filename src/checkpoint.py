"""Every way a checkpoint is named, saved, read and loaded, in one module.

* Names and rotation: training writes ``<prefix>-<epoch>_<steps>.ckpt`` (the model zoo's names) under a
  temporary name and renames it, so a killed save never looks finished; the oldest beyond
  ``keep_checkpoint_max`` are deleted.
* Reading: ``{name: value}`` from a file (or a dict). Names are compared without a leading
  ``network.``: the model zoo's training and eval checkpoints hold the detector under the wrapper
  attribute ``network`` while some (ssd_ghostnet's eval) do not, and the target may be the bare
  network or a wrapper. Entries that are not network parameters (optimizer state ``moments.*``,
  ``learning_rate``, ``global_step``...) come back as unexpected.
* Loading: strict (every network parameter present), or with parts dropped (``filter_weight``);
  a shape mismatch names the parameter and both shapes; a network that knows why a checkpoint cannot
  be used (``explain_missing``) says so in one line.
* Resuming: the training state (network, optimizer, step) from the newest checkpoint of a folder,
  refused with one line when another model or setting wrote it; ``best_map.ckpt`` keeps the mAP that
  made it the best, so a resumed run does not replace it with a worse network.
* Locking: one training run at a time per checkpoint folder (:class:`FolderLock`).
* The command line: the checkpoint eval, export and inference load (``checkpoint_file_path``, or the
  model zoo's ``checkpoint_path`` naming a file).
"""
import fcntl
import glob
import os
import re
import socket
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor

from src.errors import UserError

PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d+)_(?P<steps>\d+)\.ckpt$")
WRAPPER = "network."
BEST_FILE = "best_map.ckpt"
BEST_MAP_KEY = "best_map"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"


def checkpoint_file(directory: str, prefix: str, epoch: int, steps_per_epoch: int) -> str:
    """``directory/<prefix>-<epoch>_<steps_per_epoch>.ckpt``."""
    return os.path.join(directory, "%s-%d_%d.ckpt" % (prefix, epoch, steps_per_epoch))


def temporary_prefix(pid: int) -> str:
    """How the files a process ``pid`` is still writing into a checkpoint folder begin."""
    return "%s%d-" % (TMP_PREFIX, pid)


def save_atomic(cell, path: str, append=None) -> str:
    """Write a checkpoint under a temporary name, then rename: a killed save never looks finished. A save
    that fails (a full disk, a file size limit) removes what it wrote and is one UserError line; the
    checkpoints written before it are untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem = temporary_prefix(os.getpid()) + os.path.splitext(os.path.basename(path))[0]
    try:
        ms.save_checkpoint(cell, os.path.join(folder, stem + ".ckpt"), append_dict=append)
        os.replace(os.path.join(folder, stem + ".ckpt"), path)
    except (OSError, RuntimeError, ValueError) as err:
        for leftover in glob.glob(os.path.join(folder, glob.escape(stem) + ".*")):
            os.remove(leftover)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError("cannot write checkpoint %s (%s); the checkpoints written before it are intact"
                        % (path, reason)) from None
    return path


def list_checkpoints(directory: str, prefix: str) -> list:
    """[(epoch, path)] of finished checkpoints of ``prefix`` in ``directory``, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, "%s-*_*.ckpt" % prefix)):
        match = PATTERN.match(os.path.basename(path))
        if match and match.group("prefix") == prefix:
            found.append((int(match.group("epoch")), path))
    return sorted(found)


def latest_checkpoint(directory: str, prefix: str) -> tuple:
    """(epoch, path) of the newest finished checkpoint, or (0, None)."""
    found = list_checkpoints(directory, prefix)
    return found[-1] if found else (0, None)


def prune(directory: str, prefix: str, keep: int) -> None:
    """Delete the oldest checkpoints beyond ``keep``."""
    found = list_checkpoints(directory, prefix)
    for _, path in found[:max(0, len(found) - int(keep))]:
        os.remove(path)


def canonical_name(name: str) -> str:
    """A parameter name without the wrapper prefix ``network.``."""
    return name[len(WRAPPER):] if name.startswith(WRAPPER) else name


def read_checkpoint(ckpt) -> dict:
    """``{name: value}`` from a checkpoint path or from a dict of Parameters, Tensors or arrays.
    A missing file is FileNotFoundError, an unreadable one ValueError, each naming the file."""
    if isinstance(ckpt, dict):
        return ckpt
    path = os.fspath(ckpt)
    if not os.path.isfile(path):
        raise FileNotFoundError("checkpoint file not found: %s" % path)
    if os.path.getsize(path) == 0:
        raise ValueError("cannot read checkpoint %s: the file is empty (0 bytes)" % path)
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as err:
        raise ValueError("cannot read checkpoint %s: %s" % (path, str(err).strip().splitlines()[0])) from None


def explain_missing(net, missing: list) -> str:
    """Why a checkpoint lacking ``missing`` cannot be used, from the first cell of ``net`` that can tell
    (a method ``explain_missing(missing) -> str``; e.g. ssd_vgg16 for the model zoo's checkpoints)."""
    if not missing:
        return ""
    for _, cell in net.cells_and_names():
        explain = getattr(cell, "explain_missing", None)
        if callable(explain) and explain(missing):
            return explain(missing)
    return ""


def _shape(value):
    return tuple(value.shape)


def load_checkpoint_into(net, ckpt, strict: bool = True) -> tuple:
    """Copy checkpoint values into ``net``'s parameters; returns (loaded, missing, unexpected) name lists.

    ``loaded``/``missing`` use the network's own names, ``unexpected`` the checkpoint's. A shape
    mismatch raises ValueError naming the first such parameter and both shapes (nothing is changed
    then); with ``strict``, so does any network parameter missing from the checkpoint, and whatever the
    setting, a checkpoint the network declares incompatible (``explain_missing``, one line why).
    """
    values = {canonical_name(name): (name, value) for name, value in read_checkpoint(ckpt).items()}
    params = {canonical_name(name): (name, param) for name, param in net.parameters_and_names()}
    for key, (name, param) in params.items():
        if key in values and _shape(values[key][1]) != _shape(param):
            raise ValueError("checkpoint shape mismatch for %s: checkpoint %s, network %s"
                             % (name, list(_shape(values[key][1])), list(_shape(param))))
    missing = [name for key, (name, _) in params.items() if key not in values]
    hint = explain_missing(net, missing)
    if hint:
        raise ValueError(hint)
    if strict and missing:
        raise ValueError("checkpoint lacks %d network parameters, first: %s" % (len(missing), missing[0]))
    loaded = []
    for key, (name, param) in params.items():
        if key in values:
            value = values[key][1]
            value = value if isinstance(value, Tensor) else Tensor(value)
            param.set_data(ms.ops.cast(value, param.dtype))
            loaded.append(name)
    unexpected = [name for key, (name, _) in values.items() if key not in params]
    return loaded, missing, unexpected


def load_network_checkpoint(network, path: str, drop=()) -> tuple:
    """Load a network checkpoint (names with or without ``network.``) for eval, export or fine-tuning.

    ``drop`` lists name parts to leave out (``filter_weight``: the heads, when num_classes differs);
    then missing parameters are allowed. Any problem becomes one UserError line naming the file and,
    for a shape mismatch, the parameter and both shapes. Returns (loaded, missing) name lists.
    """
    try:
        values = read_checkpoint(path)
        if drop:
            values = {k: v for k, v in values.items() if not any(part in k for part in drop)}
        loaded, missing, _ = load_checkpoint_into(network, values, strict=not drop)
    except (ValueError, FileNotFoundError) as err:
        raise UserError("%s: %s" % (path, err)) from None
    return loaded, missing


def check_resumable(path: str, saved: dict, expected: dict) -> None:
    """A UserError naming the first parameter whose shape in the checkpoint ``path`` differs from this run's
    (a checkpoint folder left by another model, input size or class count)."""
    for name, param in expected.items():
        if name in saved and tuple(saved[name].shape) != tuple(param.shape):
            raise UserError("cannot resume from %s: %s has shape %s there but %s in this run (another model or "
                            "settings wrote it); pass another --checkpoint_path or --resume=False"
                            % (path, name, list(saved[name].shape), list(param.shape)))


def load_training_state(train_cell, path: str) -> None:
    """Resume: load the whole training state (network, optimizer moments, global step) saved from
    ``train_cell`` into it, after checking every shape fits this run. A file that cannot be read is a
    ValueError naming it (nothing is loaded then); shapes of another run are a UserError."""
    saved = read_checkpoint(path)
    check_resumable(path, saved, train_cell.parameters_dict())
    ms.load_param_into_net(train_cell, saved, strict_load=False)


def save_best(network, directory: str, mean_ap: float, epoch: int, append=None) -> str:
    """``directory/best_map.ckpt``: the network with the mAP that made it the best (float64) and its epoch,
    as extra entries that MindSpore's ``load_param_into_net`` and the model zoo's tools skip (and
    ``append``'s entries, e.g. the model settings)."""
    extra = {BEST_MAP_KEY: ms.Tensor(np.array(mean_ap, np.float64)), "best_map_epoch": int(epoch), **(append or {})}
    return save_atomic(network, os.path.join(directory, BEST_FILE), append=extra)


def saved_best_map(directory: str):
    """The mAP stored in ``directory/best_map.ckpt``, or None when there is no such file or entry (a file
    written before the entry existed) or it cannot be read."""
    path = os.path.join(directory, BEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        value = read_checkpoint(path).get(BEST_MAP_KEY)
    except ValueError:
        return None
    return None if value is None else float(value.asnumpy())


class FolderLock:
    """An exclusive lock on a checkpoint folder for the lifetime of a training run, so that a second run
    started into the same folder stops at once instead of writing the same checkpoints and log rows.

    It is an ``flock`` on ``<folder>/.lock``: the system releases it when the process ends in any way
    (a kill -9 included), so a lock left by a dead run is never in the way. The file names the holder
    (pid, host, start time) for the message the second run prints. Holding the lock, it removes the
    temporary files of saves that a killed run left behind."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, LOCK_FILE)
        self.stream = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self.stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.stream.seek(0)
            holder = self.stream.read().strip() or "another process"
            self.stream.close()
            raise UserError("%s is in use by another training run (%s); wait for it to finish, or pass another "
                            "--checkpoint_path (and --output_path)" % (folder, holder)) from None
        for leftover in glob.glob(os.path.join(glob.escape(folder), TMP_PREFIX + "*")):
            os.remove(leftover)
        self.stream.seek(0)
        self.stream.truncate()
        self.stream.write("pid %d on %s, started %s" % (os.getpid(), socket.gethostname(),
                                                          time.strftime("%Y-%m-%d %H:%M:%S")))
        self.stream.flush()

    def release(self) -> None:
        """Give the lock up (it also goes when the process ends)."""
        if not self.stream.closed:
            self.stream.close()


def checkpoint_to_load(cfg) -> str:
    """The checkpoint eval, export and inference load: ``checkpoint_file_path``, or a ``.ckpt`` file given
    as the model zoo's ``checkpoint_path``; a missing or absent one is a one-line UserError."""
    path = cfg.checkpoint_file_path
    if not path and str(cfg.checkpoint_path).endswith(".ckpt"):
        path = cfg.checkpoint_path
    if not path:
        raise UserError("no checkpoint given: pass --checkpoint_file_path=PATH/TO/ssd-60_50.ckpt")
    if not os.path.isfile(path):
        raise UserError("checkpoint not found: %s" % path)
    return path
