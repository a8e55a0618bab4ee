"""Loading model-zoo style checkpoints into an SSD network.

Names are compared without a leading ``network.``: the model zoo's training and eval checkpoints hold
the detector under the wrapper attribute ``network`` while some (ssd_ghostnet's eval) do not, and the
target may be the bare detector or a wrapper. Entries that are not network parameters (optimizer
state ``moments.*``, ``learning_rate``, ``global_step``...) come back as unexpected.
"""
import os

import mindspore as ms
from mindspore import Tensor

PREFIX = "network."


def canonical_name(name):
    """A parameter name without the wrapper prefix ``network.``."""
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def read_checkpoint(ckpt):
    """``{name: value}`` from a checkpoint path or from a dict of Parameters, Tensors or arrays."""
    if isinstance(ckpt, dict):
        return ckpt
    path = os.fspath(ckpt)
    if not os.path.isfile(path):
        raise FileNotFoundError("checkpoint file not found: %s" % path)
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError) as err:
        raise ValueError("cannot read checkpoint %s: %s" % (path, str(err).strip().splitlines()[0])) from None


def explain_missing(net, missing):
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


def load_checkpoint_into(net, ckpt, strict=True):
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
