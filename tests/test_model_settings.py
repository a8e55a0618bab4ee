"""Self-describing checkpoints (src/model_settings.py): what is stored, how entry scripts use it, and that
MindSpore's own loading and the model zoo's checkpoints are unaffected."""
import mindspore as ms
import pytest
from mindspore import nn

from src.checkpoint import save_atomic
from src.config import load_config
from src.errors import UserError
from src.model_settings import (
    PROJECT_VERSION,
    SETTINGS_KEY,
    config_for_checkpoint,
    model_settings,
    read_settings,
    settings_entry,
)
from tests.helpers import ROOT

TRAINED = ["--img_shape=[96,96]", "--feature_size=[6,3,2,1,1,1]", "--classes=[background,tree,car]",
           "--num_classes=3", "--min_scale=0.1", "--max_scale=0.8"]


@pytest.fixture()
def checkpoint(tmp_path):
    """A checkpoint (of a small stand-in cell) written with the settings of a 96x96, 2-class model."""
    path = str(tmp_path / "ssd-1_1.ckpt")
    save_atomic(nn.Dense(2, 3), path, append=settings_entry(load_config(TRAINED)))
    return path


def test_the_settings_round_trip_and_mindspore_skips_them(checkpoint):
    stored = read_settings(checkpoint)
    assert stored == model_settings(load_config(TRAINED))
    assert stored["img_shape"] == [96, 96] and stored["classes"] == ["background", "tree", "car"]
    assert stored["project_version"] == PROJECT_VERSION and len(stored["normalisation"]["mean_rgb"]) == 3
    entries = ms.load_checkpoint(checkpoint)
    assert SETTINGS_KEY in entries
    not_loaded, unused = ms.load_param_into_net(nn.Dense(2, 3), entries)
    assert not_loaded == [] and unused == [SETTINGS_KEY]


def test_project_version_is_pyproject_s():
    with open(ROOT + "/pyproject.toml", encoding="utf-8") as stream:
        assert 'version = "%s"' % PROJECT_VERSION in stream.read()


def test_a_checkpoint_alone_brings_its_settings(checkpoint):
    cfg = config_for_checkpoint(load_config([]), checkpoint)
    assert (cfg.img_shape, cfg.num_classes, cfg.min_scale) == ([96, 96], 3, 0.1)
    assert list(cfg.classes) == ["background", "tree", "car"] and list(cfg.feature_size) == [6, 3, 2, 1, 1, 1]


def test_agreeing_keys_are_fine_and_disagreeing_ones_are_named(checkpoint):
    assert config_for_checkpoint(load_config(["--img_shape=[96,96]"]), checkpoint).img_shape == [96, 96]
    with pytest.raises(UserError, match=r"trained with img_shape=\[96, 96\], but the configuration gives "
                                        r"\[128, 128\] \(1 key\(s\) disagree"):
        config_for_checkpoint(load_config(["--img_shape=[128,128]"]), checkpoint)
    with pytest.raises(UserError, match=r'classes=\["background", "tree", "car"\], but the configuration gives '
                                        r'\["background", "car", "tree"\]'):
        config_for_checkpoint(load_config(["--classes=[background,car,tree]", "--num_classes=3"]), checkpoint)


def test_force_config_keeps_the_users_keys(checkpoint, capsys):
    cfg = config_for_checkpoint(load_config(["--img_shape=[128,128]", "--feature_size=[8,4,2,1,1,1]",
                                             "--force_config=True"]), checkpoint)
    assert cfg.img_shape == [128, 128] and list(cfg.feature_size) == [8, 4, 2, 1, 1, 1]
    assert cfg.num_classes == 3 and cfg.min_scale == 0.1
    assert "using the configured img_shape, feature_size instead of the stored settings of" in capsys.readouterr().out


def test_a_model_zoo_checkpoint_keeps_the_configuration(tmp_path):
    path = str(tmp_path / "zoo.ckpt")
    ms.save_checkpoint(nn.Dense(2, 3), path)
    cfg = load_config(["--img_shape=[128,128]"])
    assert read_settings(path) is None and config_for_checkpoint(cfg, path) is cfg


def test_checkpoint_path_follows_output_path():
    assert load_config(["--output_path=runs/exp2"]).checkpoint_path == "runs/exp2/checkpoint"
    assert load_config(["--output_path=runs/exp2", "--checkpoint_path=ck"]).checkpoint_path == "ck"
    assert "checkpoint_path" not in load_config([]).given_keys()


def test_fitted_anchor_keys_of_the_checkpoint_win_under_fit_anchors(checkpoint):
    """config/custom.yaml sets min_scale 0.2 as the fit's start; the checkpoint holds the fitted 0.1."""
    cfg = config_for_checkpoint(load_config(["--min_scale=0.2", "--fit_anchors=True"]), checkpoint)
    assert cfg.min_scale == 0.1
    with pytest.raises(UserError, match="min_scale=0.1, but the configuration gives 0.2"):
        config_for_checkpoint(load_config(["--min_scale=0.2"]), checkpoint)
