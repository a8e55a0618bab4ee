"""The settings a run derives from its data: the number of epochs from a step budget, the warm-up in
steps, and the learning rate scaled with the batch size.

Why: a recipe written as "N epochs" gives a 60-image set and a 6000-image set a hundred times different
number of updates. ``step_budget`` (when > 0) states the run's length in optimizer steps instead, and the
epochs follow from the dataset's size: ceil(step_budget / steps per epoch); ``warmup_steps`` (when > 0)
does the same for the warm-up. ``lr_reference_batch`` (when
> 0) says for which total batch ``lr`` was written; the run then uses the linear scaling rule (Goyal et
al. 2017, "Accurate, Large Minibatch SGD"): lr x (batch_size x devices) / lr_reference_batch. Both are
off (0) in the model zoo's configs, whose epochs and learning rates are used as written.
"""
import math
import os

from src.anchor_fit import fit_anchors, fit_lines, flags_text, training_boxes
from src.config import DEFAULT_CONFIG
from src.data.prepare import uses_builtin_shapes


def epochs_for_budget(step_budget, steps_per_epoch):
    """Whole epochs that give at least ``step_budget`` optimizer steps (at least one)."""
    return max(1, math.ceil(step_budget / max(1, steps_per_epoch)))


def scaled_lr(lr, batch_size, group_size, reference_batch):
    """``lr`` for a total batch of batch_size x group_size, written for ``reference_batch`` (0: as is)."""
    if reference_batch <= 0:
        return lr
    return lr * batch_size * group_size / reference_batch


def derive_schedule(cfg, steps_per_epoch, group_size=1):
    """(cfg with ``epoch_size`` and ``lr`` as the run uses them, lines saying how they were derived)."""
    changes, lines = {}, []
    budget = int(cfg.get("step_budget", 0) or 0)
    if budget > 0:
        changes["epoch_size"] = epochs_for_budget(budget, steps_per_epoch)
        lines.append("schedule: step_budget %d at %d steps per epoch -> %d epochs (%d steps)"
                     % (budget, steps_per_epoch, changes["epoch_size"], changes["epoch_size"] * steps_per_epoch))
    warmup = int(cfg.get("warmup_steps", 0) or 0)
    if warmup > 0:
        changes["warmup_epochs"] = warmup / max(1, steps_per_epoch)
        lines.append("warm-up: %d steps (%.3g epochs)" % (warmup, changes["warmup_epochs"]))
    reference = int(cfg.get("lr_reference_batch", 0) or 0)
    if reference > 0:
        changes["lr"] = scaled_lr(cfg.lr, cfg.batch_size, group_size, reference)
        lines.append("learning rate: lr %g for batch %d, scaled to the batch of %d x %d device(s) -> %g"
                     % (cfg.lr, reference, cfg.batch_size, group_size, changes["lr"]))
    return (cfg.replace(**changes) if changes else cfg), lines


def recipe_notice(cfg):
    """One line when default_config.yaml, the built-in shapes set's recipe, is about to train other data:
    its settings (160x160, no augmentation, 5 epochs of batch 32 at lr 0.4) were chosen for 8000 drawn
    images and would quietly give a user's 60 photographs ten updates. '' otherwise."""
    if os.path.abspath(cfg.config_path) != os.path.abspath(DEFAULT_CONFIG) or uses_builtin_shapes(cfg):
        return ""
    return ("note: default_config.yaml is the recipe of the built-in shapes set (%dx%d input, augment %s, %d epochs "
            "of batch %d, lr %g); for your own data start from --config_path=config/custom.yaml "
            "(docs/training.md#training-on-your-own-data)"
            % (cfg.img_shape[0], cfg.img_shape[1], cfg.augment, cfg.epoch_size, cfg.batch_size, cfg.lr))


def fitted_anchors(cfg, announce=True):
    """``cfg`` with default boxes fitted to its training boxes when ``fit_anchors`` is on
    (src/anchor_fit.py), else ``cfg`` itself. The fit is a function of the data and the config alone, so
    a resumed run, every device of a distributed run and a rerun of the command get the same boxes. With
    ``announce``, prints the before/after table and the flags that evaluation and export need, and writes
    those flags to ``<output_path>/fitted_anchors.txt``."""
    if not cfg.get("fit_anchors", False):
        return cfg
    fit = fit_anchors(cfg, *training_boxes(cfg))
    fitted = cfg.replace(**fit["changes"])
    if announce:
        flags = flags_text(fit["changes"])
        os.makedirs(cfg.output_path, exist_ok=True)
        path = os.path.join(cfg.output_path, "fitted_anchors.txt")
        with open(path + ".tmp", "w", encoding="utf-8") as stream:
            stream.write(flags + "\n")
        os.replace(path + ".tmp", path)
        print("\n".join(fit_lines(cfg, fit)), flush=True)
        print("eval.py, infer.py and export.py need the same default boxes: add %s (saved in %s)"
              % (flags, path), flush=True)
    return fitted
