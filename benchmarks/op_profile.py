"""Where the time of one training step goes, for any model: MindSpore's profiler over a few steps, summed
by operator type and by layer (forward and backward apart).

    python -m benchmarks.op_profile --models ssd_vgg16 --batch 8
    python -m benchmarks.op_profile --models ssd_mobilenet_v1_fpn --batch 8 --top 40

The step is the benchmark's (benchmarks/sections.py: forward, loss, backward, Momentum update, GRAPH
mode); compilation and two warm-up steps are excluded. The fast formulation's compiled kernels show as
operator type "Custom". MindSpore names a gradient operator after the layer whose backward pass it
belongs to, though it sometimes files several layers' gradients under one of them: read the backward
rows per layer as approximate, the per-type totals as exact.
"""
import argparse
import collections
import csv
import glob
import os
import sys
import tempfile

import mindspore as ms

from benchmarks.run import model_config
from benchmarks.sections import training_step


def layer_of(full_name):
    """("forward" | "backward", layer path) of a profiled operator's full name."""
    parts = full_name.split("/")[:-1]
    direction = "backward" if parts and parts[0] == "Gradients" else "forward"
    parts = [p for p in parts if p not in ("Gradients", "Default") and not p.startswith("Grad_")]
    return direction, "/".join(p.split("-")[0] for p in parts[2:]) or "/".join(parts) or "(top)"


def read_ops(folder):
    """[(op_type, full_name, total ms)] from the profiler's CPU operator table in ``folder``."""
    found = glob.glob(os.path.join(folder, "**", "cpu_op_detail_info_*.csv"), recursive=True)
    if not found:
        raise SystemExit("op_profile: MindSpore's profiler wrote no cpu_op_detail_info_*.csv under %s" % folder)
    with open(found[0], newline="", encoding="utf-8") as stream:
        return [(r["op_type"], r["full_op_name"], float(r["op_total_time(ms)"])) for r in csv.DictReader(stream)]


def profile(cfg, batch, steps, folder):
    step, inputs, _ = training_step(cfg, batch)
    for _ in range(2):
        step(*inputs)[0].asnumpy()
    profiler = ms.Profiler(output_path=folder)
    for _ in range(steps):
        step(*inputs)[0].asnumpy()
    profiler.stop()
    profiler.analyse()
    return read_ops(folder)


def report(ops, steps, top):
    total = sum(ms_ for _, _, ms_ in ops) / steps
    print("operator time per step: %.0f ms (the step also spends time between operators)" % total)
    by_type = collections.Counter()
    by_layer = collections.Counter()
    for op_type, name, ms_ in ops:
        by_type[op_type] += ms_ / steps
        direction, layer = layer_of(name)
        by_layer["%-8s %s" % (direction, layer)] += ms_ / steps
    print("\n%10s %6s  operator type" % ("ms/step", "share"))
    for op_type, value in by_type.most_common(top):
        print("%10.1f %5.1f%%  %s" % (value, 100 * value / total, op_type))
    print("\n%10s %6s  direction, layer" % ("ms/step", "share"))
    for layer, value in by_layer.most_common(top):
        print("%10.1f %5.1f%%  %s" % (value, 100 * value / total, layer))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ssd300", help="one model config name (config/<name>.yaml)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    args = parser.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    with tempfile.TemporaryDirectory() as folder:
        report(profile(model_config(args.models, False), args.batch, args.steps, folder), args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
