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


def local_device_id(cfg):
    """The device of this process: DEVICE_ID (set by msrun and the rank-table script), else the local rank
    mpirun gives (OMPI_COMM_WORLD_LOCAL_RANK), else ``cfg.device_id``."""
    return int(os.environ.get("DEVICE_ID", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", cfg.device_id)))


def setup_device(cfg):
    """Choose device and mode from the config; one line error for a target this build lacks. A process whose
    runtime already runs on that target (a second detector in one Python session) keeps it."""
    target = cfg.device_target
    if target not in DEVICES:
        raise UserError("device_target must be one of %s, got '%s'" % (", ".join(DEVICES), target))
    device_id = local_device_id(cfg)
    try:
        if hasattr(ms, "set_device"):
            ms.set_device(target, device_id) if target != "CPU" else ms.set_device(target)
        else:
            ms.set_context(device_target=target, device_id=device_id)
    except (RuntimeError, ValueError) as err:
        if ms.get_context("device_target") != target:
            raise UserError("device_target=%s is not usable with MindSpore %s here (%s); use --device_target=CPU"
                            % (target, ms.__version__, str(err).splitlines()[0])) from None
    set_mode(cfg.mode)
    ms.set_seed(int(cfg.seed))


def init_distributed():
    """Initialise communication once and set data parallelism with mean gradients.

    Returns (rank, group_size). Works under msrun, mpirun and an HCCL rank table alike; the backend
    (HCCL, NCCL, or MindSpore's own 'mccl' on CPU) follows the device target. Without a launcher, or
    with one the device cannot use (mpirun on CPU), the error is one line.
    """
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.context import ParallelMode

    try:
        init()
    except RuntimeError as err:
        first = next((line for line in str(err).splitlines() if line.strip()), "unknown error")
        raise UserError("run_distribute=True: communication init failed (%s); start train.py with msrun, "
                        "mpirun (GPU) or a rank table, see README 'Distributed training'" % first.strip()) from None
    rank, group_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return rank, group_size


def square_conv_kernel_attrs(net):
    """Give every Conv2D primitive of ``net`` a (k, k) ``kernel_size`` attribute where it holds a plain k.

    ``ops.Conv2D(out, k)`` keeps the int k as its attribute, and MindSpore 2.10's ONNX exporter stops
    on it ("Cast value from type Int64Imm to ValueTuple failed"); the pair means the same convolution.
    Returns the number of primitives changed.
    """
    from mindspore import ops

    changed = 0
    for _, cell in net.cells_and_names():
        for prim in getattr(cell, "_primitives", {}).values():
            if isinstance(prim, ops.Conv2D) and isinstance(prim.attrs.get("kernel_size"), int):
                size = prim.attrs["kernel_size"]
                prim.add_prim_attr("kernel_size", (size, size))
                changed += 1
    return changed


def export_onnx(net, inputs, file_name, input_names=None, output_names=None, dynamic_axes=None) -> bool:
    """Export to ONNX through whichever entry point this MindSpore release offers (names and dynamic axes
    where it takes them). Returns whether ``dynamic_axes`` were applied (not by releases without
    ``mindspore.onnx.export``, e.g. 2.3, whose file then has the inputs' fixed shapes)."""
    square_conv_kernel_attrs(net)
    onnx_module = getattr(ms, "onnx", None)
    if onnx_module is not None and hasattr(onnx_module, "export"):
        onnx_module.export(net, inputs, file_name=file_name, input_names=input_names, output_names=output_names,
                           dynamic_axes=dynamic_axes)
        return bool(dynamic_axes)
    ms.export(net, inputs, file_name=file_name, file_format="ONNX")
    return False
