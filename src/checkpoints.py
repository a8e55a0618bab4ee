"""Training checkpoints on disk: model-zoo names (``ssd-<epoch>_<steps>.ckpt``), atomic saves,
rotation to ``keep_checkpoint_max``, and finding the newest one to resume from."""
import glob
import os
import re

import mindspore as ms

from src.errors import UserError

PATTERN = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d+)_(?P<steps>\d+)\.ckpt$")


def checkpoint_file(directory, prefix, epoch, steps_per_epoch):
    return os.path.join(directory, "%s-%d_%d.ckpt" % (prefix, epoch, steps_per_epoch))


def save_atomic(cell, path, append=None):
    """Write a checkpoint under a temporary name, then rename: a killed save never looks finished."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), ".tmp-%d-%s" % (os.getpid(), os.path.basename(path)))
    ms.save_checkpoint(cell, tmp, append_dict=append)
    os.replace(tmp, path)
    return path


def list_checkpoints(directory, prefix):
    """[(epoch, path)] of finished checkpoints of ``prefix`` in ``directory``, oldest first."""
    found = []
    for path in glob.glob(os.path.join(directory, "%s-*_*.ckpt" % prefix)):
        match = PATTERN.match(os.path.basename(path))
        if match and match.group("prefix") == prefix:
            found.append((int(match.group("epoch")), path))
    return sorted(found)


def latest_checkpoint(directory, prefix):
    found = list_checkpoints(directory, prefix)
    return found[-1] if found else (0, None)


def prune(directory, prefix, keep):
    """Delete the oldest checkpoints beyond ``keep``."""
    found = list_checkpoints(directory, prefix)
    for _, path in found[:max(0, len(found) - int(keep))]:
        os.remove(path)


def load_network_checkpoint(network, path, drop=()):
    """Load a network checkpoint (names with or without ``network.``) for eval, export or fine-tuning.

    ``drop`` lists name parts to leave out (``filter_weight``: the heads, when num_classes differs);
    then missing parameters are allowed. Any problem becomes one UserError line naming the file and,
    for a shape mismatch, the parameter and both shapes. Returns (loaded, missing) name lists.
    """
    from src.models.checkpoint import load_checkpoint_into, read_checkpoint

    try:
        values = read_checkpoint(path)
        if drop:
            values = {k: v for k, v in values.items() if not any(part in k for part in drop)}
        loaded, missing, _ = load_checkpoint_into(network, values, strict=not drop)
    except (ValueError, FileNotFoundError) as err:
        raise UserError("%s: %s" % (path, err)) from None
    return loaded, missing


def checkpoint_to_load(cfg):
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
