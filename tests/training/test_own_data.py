"""End-to-end: the README's own-data command (config/custom.yaml) on real photographs, the tree set made by
tools.make_trees, at a small size (marked slow): the recipe derives its layout, fits its default boxes,
derives its schedule and learning rate, trains, evaluates, and eval.py given the saved flags, or none (the
checkpoint holds the fitted anchors), gives the same mAP."""
import os
import subprocess
import sys

import pytest

from src.data.trees import build_trees
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def run(script, args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script)] + args, cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


def test_custom_recipe_on_the_tree_set(tmp_path):
    root = tmp_path / "trees"
    build_trees(str(root))
    common = ["--config_path=config/custom.yaml", "--voc_root=%s" % root, "--classes=[background,tree]",
              "--num_classes=2", "--mindrecord_dir=%s" % (tmp_path / "mr"), "--output_path=%s" % (tmp_path / "out"),
              "--checkpoint_path=%s" % (tmp_path / "ckpt"), "--img_shape=[128,160]", "--batch_size=16"]
    done = run("train.py", common + ["--step_budget=6", "--warmup_steps=2", "--overhead=True", "--bn_stat_batches=1"])
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "anchor fit on 656 training boxes" in out and "flags: --min_scale=" in out
    assert "schedule: step_budget 6 at 4 steps per epoch -> 2 epochs (8 steps)" in out
    assert "learning rate: lr 0.4 for batch 32, scaled to the batch of 16 x 1 device(s) -> 0.2" in out
    assert "note: default_config.yaml" not in done.stderr
    printed = [line for line in out.splitlines() if line.startswith("mAP: ")]
    assert len(printed) == 1
    flags = (tmp_path / "out" / "fitted_anchors.txt").read_text().split()
    checkpoint = tmp_path / "ckpt" / "ssd-2_4.ckpt"
    evaluated = run("eval.py", common + flags + ["--checkpoint_file_path=%s" % checkpoint])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert [line for line in evaluated.stdout.splitlines() if line.startswith("mAP: ")] == printed
    alone = run("eval.py", common + ["--checkpoint_file_path=%s" % checkpoint])
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert [line for line in alone.stdout.splitlines() if line.startswith("mAP: ")] == printed
