"""Kill training on purpose and check what survives: python -m tools.fault_injection [--kills 10] [--out DIR]

Trains the built-in model on a small shapes set twice with one command: once without interruption,
and once while killing the process with SIGKILL at chosen moments (during a step, during the BatchNorm
recompute before a save, while a checkpoint file is being written, during the final evaluation) and
starting the same command again after every kill. Then it compares the two runs: the final checkpoint
(network, optimizer state, step) must be identical bit for bit and the training log must hold the
same rows (only the step times differ), with no row doubled or lost. Prints one line per kill and a
summary; writes it all to ``DIR/fault_injection.json``; exit status 1 when the runs differ.
"""
import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

from src.checkpoint import read_checkpoint, temporary_prefix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("step", "batch_norm", "checkpoint_write", "final_eval")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs to deliver (default %(default)s)")
    parser.add_argument("--images", type=int, default=96, help="training images (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default %(default)s)")
    parser.add_argument("--batch_size", type=int, default=4, help="batch size (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (default %(default)s)")
    parser.add_argument("--out", default=os.path.join("output", "fault_injection"),
                        help="working folder (default %(default)s)")
    return parser.parse_args(argv)


def train_args(out, run, args):
    """The one command both runs use; only the output folders differ."""
    return ["--coco_root=%s" % os.path.join(out, "shapes"), "--mindrecord_dir=%s" % os.path.join(out, "mr"),
            "--output_path=%s" % os.path.join(out, run, "out"),
            "--checkpoint_path=%s" % os.path.join(out, run, "ckpt"), "--batch_size=%d" % args.batch_size,
            "--epoch_size=%d" % args.epochs, "--log_interval=1", "--bn_stat_batches=4", "--warmup_epochs=1",
            "--lr=0.05", "--final_eval=True", "--keep_checkpoint_max=100"]


def start(command):
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)


def writing_checkpoint(folder, pid):
    """True while process ``pid`` writes a checkpoint (its temporary file exists)."""
    try:
        return any(name.startswith(temporary_prefix(pid)) for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def wait_for_phase(process, phase, ckpt, rng, args):
    """Read the child's output until the moment ``phase`` names (a step: one of the next epoch's worth),
    then return True (kill now); False when the process ended first."""
    epochs = args.epochs
    steps_left, last_epoch = rng.randint(1, max(1, args.images // args.batch_size)), False
    for line in process.stdout:
        last_epoch = last_epoch or line.startswith("epoch: %d step" % epochs) or \
            line.startswith("resuming from") and line.rstrip().endswith("(epoch %d)" % epochs)
        if phase == "step" and line.startswith("epoch: ") and " step: " in line:
            steps_left -= 1
            if steps_left == 0:
                return True
        elif phase == "batch_norm" and line.startswith("epoch time: "):
            time.sleep(rng.uniform(0.0, 0.05))
            return True
        elif phase == "checkpoint_write" and line.startswith("epoch time: "):
            deadline = time.time() + 120
            while not writing_checkpoint(ckpt, process.pid) and process.poll() is None and time.time() < deadline:
                time.sleep(0.0002)
            return process.poll() is None
        elif phase == "final_eval" and last_epoch and (line.startswith(("epoch time: ", "resuming from"))):
            while not last_epoch_saved(ckpt, epochs) and process.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.3, 1.0))
            return process.poll() is None
    return False


def last_epoch_saved(ckpt, epochs):
    """True once the checkpoint of the last epoch exists."""
    return any(name.startswith("ssd-%d_" % epochs) and name.endswith(".ckpt") for name in os.listdir(ckpt))


def kill_schedule(count):
    """The phase of each kill: steps, BatchNorm recomputes and checkpoint writes in turn, the final
    evaluation last."""
    cycle = [PHASES[i % 3] for i in range(max(count - 1, 0))]
    return cycle + ["final_eval"] if count else []


def faulted_run(out, args):
    """Run the command, killing it at the scheduled moments and starting it again after each kill, until
    it finishes; returns the record of every kill."""
    command = [sys.executable, "train.py"] + train_args(out, "faulted", args)
    ckpt = os.path.join(out, "faulted", "ckpt")
    rng = random.Random(args.seed)
    kills = []
    for phase in kill_schedule(args.kills) + [None]:
        process = start(command)
        hit = phase is not None and wait_for_phase(process, phase, ckpt, rng, args)
        if not hit:
            for _ in process.stdout:
                pass
            if process.wait() != 0:
                raise RuntimeError("the run ended with status %d" % process.returncode)
            return kills
        in_write = writing_checkpoint(ckpt, process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills.append({"phase": phase, "during_checkpoint_write": in_write})
        print("kill %d: SIGKILL during %s%s" % (len(kills), phase.replace("_", " "),
                                                " (a checkpoint file was being written)" if in_write else ""),
              flush=True)
    return kills


def log_rows(path):
    """The training log without its step times (the one column that differs between runs)."""
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    column = rows[0].index("step_time_ms")
    return [row[:column] + row[column + 1:] for row in rows]


def final_state(out, run, args):
    names = [n for n in os.listdir(os.path.join(out, run, "ckpt")) if n.startswith("ssd-%d_" % args.epochs)]
    state = read_checkpoint(os.path.join(out, run, "ckpt", names[0]))
    return {name: value.asnumpy() for name, value in state.items()}


def compare(out, args):
    """(weights identical, differing entries, log identical, rows of each log)."""
    import numpy as np

    reference, faulted = final_state(out, "reference", args), final_state(out, "faulted", args)
    differing = sorted(name for name in set(reference) | set(faulted)
                       if name not in reference or name not in faulted
                       or not np.array_equal(reference[name], faulted[name]))
    logs = [log_rows(os.path.join(out, run, "out", "train_log.csv")) for run in ("reference", "faulted")]
    return not differing, differing, logs[0] == logs[1], [len(rows) - 1 for rows in logs]


def prepare(out, args):
    """A fresh working folder with the shapes set."""
    import shutil

    from src.data.shapes import generate_shapes

    for run in ("reference", "faulted", "mr"):
        shutil.rmtree(os.path.join(out, run), ignore_errors=True)
    if not os.path.isfile(os.path.join(out, "shapes", "SHAPES.json")):
        generate_shapes(os.path.join(out, "shapes"), num_train=args.images, num_val=16, seed=args.seed)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    prepare(out, args)
    started = time.time()
    reference = subprocess.run([sys.executable, "train.py"] + train_args(out, "reference", args), cwd=ROOT,
                               capture_output=True, text=True)
    if reference.returncode != 0:
        print(reference.stdout[-2000:] + reference.stderr[-2000:], file=sys.stderr)
        return 1
    kills = faulted_run(out, args)
    same_weights, differing, same_log, rows = compare(out, args)
    summary = {"command": "python -m tools.fault_injection " + " ".join(argv if argv is not None else sys.argv[1:]),
               "kills": len(kills), "kills_during_checkpoint_write": sum(k["during_checkpoint_write"] for k in kills),
               "kills_by_phase": {p: sum(k["phase"] == p for k in kills) for p in PHASES},
               "steps": rows[0], "identical_weights": same_weights, "differing_entries": differing[:10],
               "identical_log": same_log, "log_rows": rows, "seconds": round(time.time() - started, 1)}
    with open(os.path.join(out, "fault_injection.json"), "w", encoding="utf-8") as stream:
        json.dump(summary, stream, indent=1)
    print("fault injection: %d kills (%d during a checkpoint write; by phase %s); final weights %s, training "
          "log %s (%d rows)" % (summary["kills"], summary["kills_during_checkpoint_write"],
                                 summary["kills_by_phase"], "identical" if same_weights else "DIFFERENT",
                                 "identical" if same_log else "DIFFERENT", rows[1]))
    return 0 if same_weights and same_log else 1


if __name__ == "__main__":
    sys.exit(main())
