"""Where the time of SSD300-MobileNetV2 goes on CPU, layer by layer and for whole training/inference steps.

    python -m benchmarks.layer_timing                      # per-layer table (fast formulation) + steps
    python -m benchmarks.layer_timing --plain              # also the plain formulation (slow: minutes)
    python -m benchmarks.layer_timing --what blocks --plain --blocks features_1.1 features_1.2
    python -m benchmarks.layer_timing --what steps --batch 8
    python -m benchmarks.layer_timing --what depthwise     # one depthwise layer, three formulations

All runs are GRAPH mode; compilation and two warm-up calls are excluded, times are medians. The
training step is forward + backward + nn.Momentum update on a dummy loss (sum of both outputs). Per
block, "f+b" also computes the input gradient and includes the dummy loss and returning the gradients,
so blocks do not add up to the step: compare them with each other and between formulations.
"""
import argparse
import time

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, load_config
from src.inference.detector import SsdDetector
from src.models import build_ssd
from src.models.layers import Conv


def sync(out):
    """Wait for a result (MindSpore runs asynchronously) by reading one tensor back."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    out.asnumpy()


def median_time(fn, args, repeats, warmup=2):
    for _ in range(warmup):
        sync(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class SumLoss(nn.Cell):
    """Dummy scalar loss over everything a cell returns."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        out = self.net(x)
        if isinstance(out, tuple):
            return out[0].sum() + out[1].sum()
        return out.sum()


def grad_step(net, optimizer=None):
    """Forward + backward (+ optimizer update) as one compiled graph. Without an optimizer (a single
    layer or block) the gradient of the input is computed too, as inside a network."""
    weights = optimizer.parameters if optimizer is not None else net.trainable_params()
    grad_fn = ms.value_and_grad(SumLoss(net), None if optimizer is not None else 0, weights)

    @ms.jit
    def step(x):
        loss, grads = grad_fn(x)
        if optimizer is None:
            return loss, grads  # returned, or the compiler drops the unused backward pass
        optimizer(grads)
        return loss

    return step


def forward_fn(net):
    @ms.jit
    def forward(x):
        return net(x)
    return forward


def run_blocks(net, x):
    """(name, cell, input) of every block in execution order, running the network block by block."""
    backbone, out = net.backbone, []
    for i, cell in enumerate(backbone.features_1):
        out.append(("features_1.%d" % i, cell, x))
        x = cell(x)
    out.append(("expand_layer_conv_13", backbone.expand_layer_conv_13, x))
    features = [backbone.expand_layer_conv_13(x)]
    for i, cell in enumerate(backbone.features_2):
        out.append(("features_2.%d" % i, cell, x))
        x = cell(x)
    features.append(x)
    for i, cell in enumerate(net.multi_residual):
        out.append(("multi_residual.%d" % i, cell, x))
        x = cell(x)
        features.append(x)
    for i, feature in enumerate(features):
        out.append(("loc.%d" % i, net.multi_box.multi_loc_layers[i], feature))
        out.append(("cls.%d" % i, net.multi_box.multi_cls_layers[i], feature))
    return out


def block_input_shapes(cfg, batch):
    """NCHW input shape of every block (one PyNative pass at batch 1 in the plain formulation)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = build_ssd(with_fast_conv(cfg, False))
    net.set_train(False)
    image = ms.Tensor(np.zeros((1, 3) + tuple(cfg.img_shape), np.float32))
    shapes = [(name, (batch,) + tuple(x.shape[1:])) for name, _, x in run_blocks(net, image)]
    ms.set_context(mode=ms.GRAPH_MODE)
    return shapes


def block_cells(net):
    backbone = net.backbone
    cells = [("features_1.%d" % i, c) for i, c in enumerate(backbone.features_1)]
    cells.append(("expand_layer_conv_13", backbone.expand_layer_conv_13))
    cells += [("features_2.%d" % i, c) for i, c in enumerate(backbone.features_2)]
    cells += [("multi_residual.%d" % i, c) for i, c in enumerate(net.multi_residual)]
    for i in range(len(net.multi_box.multi_loc_layers)):
        cells += [("loc.%d" % i, net.multi_box.multi_loc_layers[i]), ("cls.%d" % i, net.multi_box.multi_cls_layers[i])]
    return cells


def with_fast_conv(cfg, flag):
    values = cfg.to_dict()
    values["fast_conv"] = flag
    return Config(values)


def time_blocks(cfg, batch, repeats, plain, only):
    shapes = [(name, shape) for name, shape in block_input_shapes(cfg, batch) if not only or name in only]
    variants = [("fast", True)] + ([("plain", False)] if plain else [])
    cells = {label: dict(block_cells(build_ssd(with_fast_conv(cfg, flag)))) for label, flag in variants}
    header = "%-22s %-18s" % ("block", "input (CHW)") + "".join(" %10s %10s" % (v + " fwd", v + " f+b")
                                                     for v, _ in variants)
    print(header + "   (ms, batch %d)" % batch)
    totals = {label: [0.0, 0.0] for label, _ in variants}
    for name, shape in shapes:
        x_nchw = np.random.rand(*shape).astype(np.float32)
        row = "%-22s %-18s" % (name, "x".join(map(str, shape[1:])))
        for label, flag in variants:
            x = ms.Tensor(x_nchw.transpose(0, 2, 3, 1).copy() if flag else x_nchw)
            cell = cells[label][name]
            cell.set_train(True)
            fwd = median_time(forward_fn(cell), (x,), repeats)
            both = median_time(grad_step(cell), (x,), repeats)
            totals[label][0] += fwd
            totals[label][1] += both
            row += " %10.1f %10.1f" % (fwd * 1e3, both * 1e3)
        print(row, flush=True)
    print("%-41s" % "sum" + "".join(" %10.1f %10.1f" % (t[0] * 1e3, t[1] * 1e3) for t in totals.values()))


def time_steps(cfg, batch, repeats):
    """Training step at ``batch`` and inference at batch 1 and ``batch`` (the inference wrapper)."""
    net = build_ssd(cfg)
    net.set_train(True)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9)
    x = ms.Tensor(np.random.rand(batch, 3, *cfg.img_shape).astype(np.float32))
    step = grad_step(net, optimizer)
    start = time.perf_counter()
    sync(step(x))
    print("train step: compile %.1f s" % (time.perf_counter() - start))
    seconds = median_time(step, (x,), repeats)
    print("train step, batch %d: %.3f s -> %.2f images/s" % (batch, seconds, batch / seconds), flush=True)
    infer = SsdDetector(build_ssd(cfg), decode=False)
    for size in sorted({1, batch}):
        image = ms.Tensor(np.random.rand(size, 3, *cfg.img_shape).astype(np.float32))
        seconds = median_time(forward_fn(infer), (image,), max(repeats, 10))
        print("inference, batch %d: %.4f s -> %.1f images/s" % (size, seconds, size / seconds), flush=True)


def pad1(x):
    """Zero padding by one on H and W through concatenation (MindSpore 2.10's CPU Pad is slower)."""
    b, c, h, w = x.shape
    rows = ops.zeros((b, c, 1, w), x.dtype)
    x = ops.concat((rows, x, rows), 2)
    cols = ops.zeros((b, c, h + 2, 1), x.dtype)
    return ops.concat((cols, x, cols), 3)


def nine_slice_depthwise(x, weight):
    """Depthwise 3x3, stride 1, "same": nine shifted slices of a padded input times per-channel taps."""
    b, c, h, w = x.shape
    padded = pad1(x)
    taps = ops.reshape(weight, (1, c, 9))
    out = None
    for t in range(9):
        term = ops.slice(padded, (0, 0, t // 3, t % 3), (b, c, h, w)) * ops.reshape(taps[:, :, t], (1, c, 1, 1))
        out = term if out is None else out + term
    return out


class NineSlice(nn.Cell):
    def __init__(self, reference):
        super().__init__()
        self.weight = reference.weight

    def construct(self, x):
        return nine_slice_depthwise(x, self.weight)


def time_depthwise(batch, repeats, channels=96, side=150):
    """One depthwise layer (the size of the backbone's largest) in three formulations."""
    x = ms.Tensor(np.random.rand(batch, channels, side, side).astype(np.float32))
    x_nhwc = ms.Tensor(x.asnumpy().transpose(0, 2, 3, 1).copy())
    fast = Conv(channels, channels, 3, groups=channels, fast=True)
    cells = [("plain Conv2D", Conv(channels, channels, 3, groups=channels), x), ("nine slices", NineSlice(fast), x),
             ("compiled (NHWC)", fast, x_nhwc)]
    print("depthwise 3x3, %d channels, %dx%d, batch %d (ms)" % (channels, side, side, batch))
    for label, cell, inputs in cells:
        fwd = median_time(forward_fn(cell), (inputs,), repeats)
        both = median_time(grad_step(cell), (inputs,), repeats)
        print("%-16s fwd %8.1f   fwd+bwd %8.1f" % (label, fwd * 1e3, both * 1e3), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--what", choices=["all", "blocks", "steps", "depthwise"], default="all")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plain", action="store_true", help="also time the plain formulation (slow)")
    parser.add_argument("--blocks", nargs="*", default=[], help="only these blocks, e.g. features_1.2 cls.0")
    parser.add_argument("--plain_steps", action="store_true", help="time the steps in the plain formulation")
    args, rest = parser.parse_known_args()
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_config(rest)
    if args.plain_steps:
        cfg = with_fast_conv(cfg, False)
    if args.what in ("all", "blocks"):
        time_blocks(cfg, args.batch, args.repeats, args.plain, args.blocks)
    if args.what in ("all", "steps"):
        time_steps(cfg, args.batch, args.repeats)
    if args.what == "depthwise":
        time_depthwise(args.batch, args.repeats)


if __name__ == "__main__":
    main()
