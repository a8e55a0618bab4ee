import os

import pytest

from src.config import ConfigError, load_config
from tests.helpers import ROOT


def test_defaults_and_overrides():
    cfg = load_config(["--img_shape=[320,320]", "--run_eval=True", "--lr=0.1", "--batch_size", "4"])
    assert cfg.img_shape == [320, 320]
    assert cfg.run_eval is True
    assert cfg.lr == 0.1
    assert cfg.batch_size == 4
    assert len(cfg.classes) == cfg.num_classes == 81


@pytest.mark.parametrize("argv, message", [
    (["--batchsize=4"], "did you mean --batch_size"),
    (["--batch_size=four"], "--batch_size expects a number"),
    (["--batch_size=2.5"], "expects a whole number"),
    (["--run_eval=maybe"], "expects True or False"),
    (["--img_shape=300"], "expects a list"),
    (["--dataset=imagenet"], "must be one of coco, voc, other"),
    (["--config_path=/nonexistent.yaml"], "config file not found"),
])
def test_bad_values_name_the_key(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv)


def test_config_file_overrides_and_is_checked(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("batch_size: 3\nimg_shape: [64, 64]\n---\nbatch_size: 'images per step'\n")
    cfg = load_config(["--config_path=%s" % good, "--batch_size=5"])
    assert cfg.batch_size == 5 and cfg.img_shape == [64, 64]
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.*did you mean --batch_size"):
        load_config(["--config_path=%s" % bad])
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("img_shape: 300\n")
    with pytest.raises(ConfigError, match="img_shape' expects list"):
        load_config(["--config_path", str(wrong_type)])


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit):
        load_config(["-h"])
    out = capsys.readouterr().out
    cfg = load_config([])
    for key in cfg.settings():
        if key != "config_path":
            assert "--" + key in out
    assert "Focal loss focusing parameter" in out


def test_replace_rejects_unknown(cfg):
    assert cfg.replace(batch_size=2).batch_size == 2
    with pytest.raises(ConfigError):
        cfg.replace(batchsize=2)


@pytest.mark.parametrize("arg,message", [
    ("--lr=-1", "lr must be a number greater than 0, got -1.0"),
    ("--batch_size=0", "batch_size must be a number greater than 0, got 0"),
    ("--epoch_size=0", "epoch_size must be a number greater than 0, got 0"),
    ("--warmup_epochs=-0.5", "warmup_epochs must be a number of at least 0, got -0.5"),
    ("--match_threshold=1.5", "match_threshold must be a number from 0 to 1, got 1.5"),
    ("--num_classes=1", "num_classes must be at least 2 (the background class counts), got 1"),
    ("--img_shape=[300]", "img_shape must be two numbers greater than 0, e.g. [300,300], got [300]"),
    ("--feature_size=[10,0,3,2,1,1]", "feature_size must be a non-empty list of numbers greater than 0"),
    ("--steps=[8,16]", "steps has 2 entries but feature_size has 6 (one per feature map)"),
    ("--min_scale=0.9 --max_scale=0.5", "min_scale must not exceed max_scale, got 0.9 > 0.5"),
])
def test_values_out_of_range_are_one_line(arg, message):
    with pytest.raises(ConfigError) as err:
        load_config(arg.split())
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_every_shipped_config_is_in_range():
    for name in sorted(os.listdir(os.path.join(ROOT, "config"))):
        load_config(["--config_path=%s" % os.path.join(ROOT, "config", name)])
