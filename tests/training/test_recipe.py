"""The settings a run derives from its data (src/training/recipe.py): epochs from a step budget, warm-up in
steps, the learning rate scaled with the batch, and the note when the shapes recipe meets other data."""
import os

import pytest

from src.config import DEFAULT_CONFIG, load_config
from src.training.recipe import derive_schedule, epochs_for_budget, recipe_notice, scaled_lr
from tests.helpers import ROOT


@pytest.mark.parametrize("budget,steps_per_epoch,epochs", [(1500, 8, 188), (1500, 750, 2), (1500, 1500, 1),
                                                          (1500, 4000, 1), (10, 3, 4)])
def test_epochs_cover_the_budget_with_whole_epochs(budget, steps_per_epoch, epochs):
    """A 64-image set (8 steps at batch 8) and a 6000-image set (750) get the same number of updates,
    rounded up to whole epochs."""
    assert epochs_for_budget(budget, steps_per_epoch) == epochs
    assert epochs * steps_per_epoch >= budget > (epochs - 1) * steps_per_epoch or epochs == 1


def test_linear_scaling_rule():
    assert scaled_lr(0.2, 8, 1, 32) == pytest.approx(0.05)
    assert scaled_lr(0.2, 8, 4, 32) == pytest.approx(0.2)
    assert scaled_lr(0.2, 8, 1, 0) == 0.2


def test_derive_schedule_changes_only_what_is_asked(cfg):
    same, lines = derive_schedule(cfg, 250)
    assert lines == [] and same is cfg
    changed, lines = derive_schedule(cfg.replace(step_budget=1000, warmup_steps=50, lr_reference_batch=32, lr=0.2,
                                                 batch_size=8), 16)
    assert (changed.epoch_size, changed.warmup_epochs, changed.lr) == (63, 50 / 16, pytest.approx(0.05))
    assert len(lines) == 3 and "63 epochs (1008 steps)" in lines[0]


def test_custom_recipe_is_for_real_data():
    """config/custom.yaml, the README's own-data recipe: augmentation on, a step budget, lr scaled."""
    custom = load_config(["--config_path=%s" % os.path.join(ROOT, "config", "custom.yaml")])
    assert custom.augment and custom.step_budget > 0 and custom.lr_reference_batch > 0 and custom.warmup_steps > 0
    assert recipe_notice(custom.replace(dataset="voc", voc_root="/data/mine")) == ""


def test_the_shapes_recipe_names_itself_when_it_meets_other_data():
    default = load_config([])
    assert default.config_path == DEFAULT_CONFIG and recipe_notice(default) == ""
    notice = recipe_notice(default.replace(dataset="voc", voc_root="/data/mine"))
    assert notice.startswith("note: default_config.yaml is the recipe of the built-in shapes set")
    assert "--config_path=config/custom.yaml" in notice and "\n" not in notice
