"""Everything that differs between MindSpore releases or devices, in one place.

MindSpore 2.10 (PyPI, CPU and Ascend) and 2.3.x (the last release with a GPU backend) differ in how a
device is chosen (``set_device`` vs ``set_context(device_target=...)``), in the ONNX export entry
point, and in a few communication details. Other modules call these helpers and nothing newer.
"""
import os

import mindspore as ms

from src.errors import UserError

DEVICES = ("Ascend", "GPU", "CPU")


def set_mode(mode):
    """GRAPH (compiled) or PYNATIVE (eager)."""
    ms.set_context(mode=ms.GRAPH_MODE if str(mode).upper() == "GRAPH" else ms.PYNATIVE_MODE)


def setup_device(cfg):
    """Choose device and mode from the config; one line error for a target this build lacks."""
    target = cfg.device_target
    if target not in DEVICES:
        raise UserError("device_target must be one of %s, got '%s'" % (", ".join(DEVICES), target))
    device_id = int(os.environ.get("DEVICE_ID", cfg.device_id))
    try:
        if hasattr(ms, "set_device"):
            ms.set_device(target, device_id) if target != "CPU" else ms.set_device(target)
        else:
            ms.set_context(device_target=target, device_id=device_id)
    except (RuntimeError, ValueError) as err:
        raise UserError("device_target=%s is not usable with MindSpore %s here (%s); use --device_target=CPU"
                         % (target, ms.__version__, str(err).splitlines()[0])) from None
    set_mode(cfg.mode)
    ms.set_seed(int(cfg.seed))


def init_distributed():
    """Initialise communication once and set data parallelism with mean gradients.

    Returns (rank, group_size). Works under msrun, mpirun and an HCCL rank table alike.
    """
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.context import ParallelMode

    init()
    rank, group_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return rank, group_size


def export_onnx(net, inputs, file_name):
    """Export to ONNX through whichever entry point this MindSpore release offers."""
    onnx_module = getattr(ms, "onnx", None)
    if onnx_module is not None and hasattr(onnx_module, "export"):
        onnx_module.export(net, inputs, file_name=file_name)
    else:
        ms.export(net, inputs, file_name=file_name, file_format="ONNX")
