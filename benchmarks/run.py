"""The project's benchmark: python -m benchmarks.run [--models ssd300] [--batch 8] [--smoke]

Prints a table and writes JSON (``--out``, default benchmarks/results/latest.json) with training
images/s, inference images/s (the network alone; with decoding and sigmoid; end to end with NMS), data
pipeline images/s, anchor encoding µs per image, NMS ms per image, COCO evaluation seconds, the
exported detector's ms per image at batch 1 (MindSpore from the MINDIR vs onnxruntime from the ONNX file), peak
memory, and achieved GFLOP/s against the machine's measured fp32 peak. Compilation and warm-up runs
are excluded; every figure is the median of several runs, with its spread ("noise") beside it, and
says what it timed (its ``what``, printed after the table and written to the JSON).
``--smoke`` runs every section once with tiny sizes (what CI does); its figures mean nothing.
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time

from benchmarks import sections
from benchmarks.flops import measured_peak_gflops
from benchmarks.report import flatten
from src.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ssd300",
                        help="comma-separated model config names: config/<name>.yaml, or default_config.yaml "
                             "for a name without such a file (e.g. default)")
    parser.add_argument("--batch", type=int, default=8, help="training batch size")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--mode", default="GRAPH", choices=["GRAPH", "PYNATIVE"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run each (CI)")
    parser.add_argument("--infer_batches", default="1,8", help="comma-separated inference batch sizes")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: train, deploy, data "
                                                   "(e.g. for the 640x640 FPN models on a small machine)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "latest.json"))
    return parser.parse_args(argv)


def model_config(name, smoke):
    path = os.path.join(ROOT, "config", "%s.yaml" % name)
    argv = ["--config_path=%s" % path] if os.path.isfile(path) else []
    return load_config(argv + (["--img_shape=[300,300]"] if smoke and not argv else []))


def machine():
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "peak_fp32_gflops": measured_peak_gflops()}


def table(results):
    """The figures, one per line, then what each one timed."""
    lines = ["%-56s %12s %-8s %6s" % ("figure", "value", "unit", "noise")]
    legend = ["", "what each figure is:"]
    for key, entry in flatten(results):
        value = "n/a" if entry["value"] is None else "%.4g" % entry["value"]
        lines.append("%-56s %12s %-8s %5.0f%%" % (key, value, entry.get("unit", ""), 100 * entry.get("noise", 0.0)))
        if entry.get("what"):
            legend.append("  %s: %s" % (key, entry["what"]))
    return "\n".join(lines + legend)


def model_sections(name, smoke, batch, mode, repeats, infer_batches, train, deploy):
    """The training, inference and (``deploy``) export figures of model ``name``."""
    cfg = model_config(name, smoke)
    figures = sections.model_figures(cfg, batch, mode, repeats, infer_batches, train)
    if deploy:
        figures["deploy"] = sections.deploy_figures(cfg, repeats)
    return figures


def in_own_process(function, *args):
    """``function(*args)`` in a fresh Python process: each model's peak memory is then its own, not what
    the models before it left behind (MindSpore keeps compiled graphs and its memory pool)."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main(argv=None):
    args = parse_args(argv)
    command = " ".join(["python -m benchmarks.run"] + list(sys.argv[1:] if argv is None else argv))
    repeats = 1 if args.smoke else args.repeats
    results = {"machine": {}, "models": {}}
    skip = set(filter(None, args.skip.split(",")))
    infer_batches = tuple(int(b) for b in args.infer_batches.split(","))
    batch = 2 if args.smoke else args.batch
    for name in args.models.split(","):
        results["models"][name] = in_own_process(model_sections, name, args.smoke, batch, args.mode, repeats,
                                                 infer_batches, "train" not in skip, "deploy" not in skip)
    results["peak_rss_gib"] = sections.figure(
        max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 2 ** 20,
        0.0, "GiB", "high-water mark of the resident memory of the largest process of the run (each model's "
                    "sections run in a process of their own)")
    cfg = model_config(args.models.split(",")[0], args.smoke)
    with tempfile.TemporaryDirectory() as tmp:
        if "data" not in skip:
            results["data"] = sections.data_figures(cfg, tmp, repeats, smoke=args.smoke)
    results["machine"] = machine()
    results["run"] = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    peak = results["machine"]["peak_fp32_gflops"]
    for figures in results["models"].values():
        if "train" in figures:
            figures["train"]["share_of_peak"] = sections.figure(
                figures["train"]["gflops"]["value"] / peak, figures["train"]["gflops"]["noise"], "",
                "train / gflops divided by the machine's measured fp32 peak")
    print(table({k: v for k, v in results.items() if k not in ("machine", "run")}))
    print("machine: %d cores, measured fp32 peak %.0f GFLOP/s (numpy/MindSpore matmul 4096^3)"
          % (results["machine"]["cpu_count"], peak))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(results, stream, indent=1, default=float)
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
