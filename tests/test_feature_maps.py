"""The anchor layout derived from img_shape (src/feature_maps.py): the pinned model-zoo layouts
reproduced, partly pinned layouts, a 512x512 ssd300, and non-square inputs for every model (maps of
[h, w] cells: outputs as many as the default boxes in both formulations, centres row-major, a non-square
ssd300 trained, evaluated and exported to ONNX).

Whole networks run in PYNATIVE mode at small inputs: [64, 96] (maps 4x6, 2x3, 1x2, 1, 1, 1; FPN 8x12 ..
1x1) and [257, 265] for ssd_vgg16, the smallest its unpadded last extras allow."""
import os

import mindspore as ms
import numpy as np
import pytest

from src.anchors import default_boxes_yxhw
from src.config import ConfigError, load_config
from src.feature_maps import count_boxes, derive_layout, feature_sizes, map_hw, step_yx
from tests.helpers import ROOT

MODELS = ["ssd300", "ssd_mobilenet_v1", "ssd_ghostnet", "ssd_vgg16", "ssd_mobilenet_v1_fpn", "ssd_resnet50_fpn"]
UNPINNED = ["--feature_size=[]", "--steps=[]", "--num_ssd_boxes=0"]
NON_SQUARE = {"ssd_vgg16": [257, 265]}


def config_args(model):
    return ["--config_path=%s" % os.path.join(ROOT, "config", model + ".yaml")] if model else []


def derived_cfg(model, img_shape=None, *more):
    """config/<model>.yaml (the defaults for None) with the layout derived, at ``img_shape`` if given."""
    shape = ["--img_shape=[%d,%d]" % tuple(img_shape)] if img_shape else []
    return load_config(config_args(model) + shape + UNPINNED + list(more))


def non_square_cfg(model, **keys):
    return derived_cfg(model, NON_SQUARE.get(model, [64, 96])).replace(**keys)


def map_slices(cfg):
    """(start, stop) of each feature map's default boxes."""
    counts = [map_hw(s)[0] * map_hw(s)[1] * d for s, d in zip(cfg.feature_size, cfg.num_default)]
    ends = np.cumsum([0] + counts)
    return list(zip(ends[:-1], ends[1:]))


def image(shape, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


# ---- derivation (no network) --------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS + [None], ids=MODELS + ["default_config"])
def test_derived_layout_reproduces_pinned_configs(model):
    """Same maps and box count as every shipped config; steps are image side / map side (300/19 = 15.8
    where the model zoo pins 16), so the default boxes agree on the maps where the steps agree."""
    pinned, derived = load_config(config_args(model)), derived_cfg(model)
    assert derived.feature_size == pinned.feature_size and derived.num_ssd_boxes == pinned.num_ssd_boxes
    assert len(derived.steps) == len(pinned.steps)
    same = [k for k, (a, b) in enumerate(zip(derived.steps, pinned.steps)) if np.isclose(a, b, rtol=1e-6, atol=0)]
    assert same, "no map where the derived steps equal the pinned ones: %s vs %s" % (derived.steps, pinned.steps)
    if model and "fpn" in model:
        assert same == list(range(len(pinned.steps)))
    boxes, expected = default_boxes_yxhw(derived), default_boxes_yxhw(pinned)
    assert boxes.shape == expected.shape == (pinned.num_ssd_boxes, 4)
    for k in same:
        start, stop = map_slices(pinned)[k]
        np.testing.assert_allclose(boxes[start:stop], expected[start:stop], atol=1e-6, rtol=0)


def test_ssd300_at_512_is_derived():
    cfg = derived_cfg("ssd300", [512, 512])
    assert cfg.feature_size == [32, 16, 8, 4, 2, 1] and cfg.steps == [16, 32, 64, 128, 256, 512]
    assert cfg.num_ssd_boxes == 32 * 32 * 3 + (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1) * 6 == 5118
    assert len(default_boxes_yxhw(cfg)) == 5118


def test_non_square_layout_entries():
    """Square maps stay plain ints, non-square ones are [h, w]; steps are pairs where the axes differ."""
    cfg = derived_cfg("ssd300", [64, 96])
    assert cfg.feature_size == [[4, 6], [2, 3], [1, 2], 1, 1, 1]
    assert cfg.steps == [16, 32, [64, 48], [64, 96], [64, 96], [64, 96]]
    assert cfg.num_ssd_boxes == 4 * 6 * 3 + (2 * 3 + 1 * 2 + 1 + 1 + 1) * 6 == 138
    values = cfg.to_dict()
    assert derive_layout(values) is values, "a pinned layout is left as it is"
    assert feature_sizes("ssd_vgg16", [257, 265], 6) == [[33, 34], 17, 9, 5, 3, 1]


def test_partly_pinned_layouts():
    """Empty steps are completed from the pinned maps; a pinned num_ssd_boxes that disagrees with derived
    maps, a too small input and a bad entry are one line naming the key."""
    cfg = load_config(config_args("ssd300") + ["--img_shape=[64,96]", "--feature_size=[[4,6],[2,3],[1,2],1,1,1]",
                                               "--steps=[]", "--num_ssd_boxes=0"])
    assert cfg.steps == derived_cfg("ssd300", [64, 96]).steps and cfg.num_ssd_boxes == 138
    cases = [(config_args("ssd300") + ["--img_shape=[512,512]", "--feature_size=[]", "--steps=[]"],
              "num_ssd_boxes is 1917 but the derived feature_size [32, 16, 8, 4, 2, 1] gives 5118"),
             (config_args("ssd_vgg16") + ["--img_shape=[64,96]"] + UNPINNED, "img_shape [64, 96] is too small for"),
             (["--feature_size=[10,[5,0],3,2,1,1]"], "feature_size must be a non-empty list of numbers greater than 0"),
             (["--num_ssd_boxes=-1"], "num_ssd_boxes must be a number greater than 0, or 0"),
             (["--feature_size=[]", "--steps=[8,16]"], "steps has 2 entries but num_default has 6")]
    for args, message in cases:
        with pytest.raises(ConfigError) as err:
            load_config(args)
        assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("model", MODELS)
def test_non_square_default_boxes_are_row_major(model):
    """Per map: h x w cells in row-major order, each cell's boxes together, centres evenly spread over
    [0, 1] on both axes ((i + 0.5) / cells) and the box count what the config says."""
    cfg = non_square_cfg(model)
    assert any(isinstance(entry, list) for entry in cfg.feature_size)
    boxes = default_boxes_yxhw(cfg)
    assert len(boxes) == cfg.num_ssd_boxes == count_boxes(cfg.feature_size, cfg.num_default)
    for (start, stop), entry, count in zip(map_slices(cfg), cfg.feature_size, cfg.num_default):
        rows, cols = map_hw(entry)
        cells = boxes[start:stop].reshape(rows, cols, count, 4)
        want_y = np.broadcast_to(((np.arange(rows) + 0.5) / rows)[:, None, None], (rows, cols, count))
        want_x = np.broadcast_to(((np.arange(cols) + 0.5) / cols)[None, :, None], (rows, cols, count))
        np.testing.assert_allclose(cells[..., 0], want_y, atol=1e-6)
        np.testing.assert_allclose(cells[..., 1], want_x, atol=1e-6)
        assert (cells[..., :2] > 0).all() and (cells[..., :2] < 1).all()
        assert (cells[..., 2:] == cells[:1, :1, :, 2:]).all()


def test_grid_anchors_are_square_in_pixels():
    """The FPN grid scheme's ratio-1 boxes stay square in pixels on a non-square input (their base size
    uses the geometric mean of a [step_y, step_x] pair)."""
    cfg = non_square_cfg("ssd_mobilenet_v1_fpn")
    boxes = default_boxes_yxhw(cfg)
    ratio_one = boxes[:, 2] * cfg.img_shape[0] - boxes[:, 3] * cfg.img_shape[1]
    per_cell = cfg.scales_per_octave * len(cfg.grid_aspect_ratios)
    first = ratio_one.reshape(-1, per_cell)[:, :cfg.scales_per_octave]  # aspect ratio 1.0 comes first
    np.testing.assert_allclose(first, 0, atol=1e-3)
    assert [step_yx(s)[0] != step_yx(s)[1] for s in cfg.steps].count(True) >= 1


# ---- networks -----------------------------------------------------------------------------------

@pytest.fixture
def pynative_mode():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def test_ssd300_at_512_forward(pynative_mode):
    """--img_shape=[512,512] with the layout unpinned: loads, builds, and gives num_ssd_boxes boxes."""
    from src.models import build_ssd

    cfg = derived_cfg("ssd300", [512, 512])
    net = build_ssd(cfg)
    net.set_train(False)
    loc, logits = net(image((1, 3, 512, 512)))
    assert loc.shape == (1, cfg.num_ssd_boxes, 4) and logits.shape == (1, cfg.num_ssd_boxes, cfg.num_classes)


def test_pinned_feature_size_is_checked_per_axis():
    from src.models import build_ssd
    from src.models.registry import check_feature_sizes

    cfg = non_square_cfg("ssd300")
    check_feature_sizes(cfg)
    check_feature_sizes(cfg.replace(feature_size=[[4, 6], [2, 3], [1, 2], [1, 1], 1, 1]))
    with pytest.raises(ValueError, match=r"feature_size .* does not match img_shape \[64, 96\]: ssd300 gives maps "
                                         r"\[\[4, 6\], \[2, 3\], \[1, 2\], 1, 1, 1\]"):
        build_ssd(cfg.replace(feature_size=[[6, 4], [3, 2], [2, 1], 1, 1, 1]))
    with pytest.raises(ValueError, match="num_ssd_boxes is 96 but feature_size and num_default give 138"):
        build_ssd(cfg.replace(num_ssd_boxes=96))
    with pytest.raises(ValueError, match="feature_size, steps and num_ssd_boxes must be set: load_config derives"):
        build_ssd(cfg.replace(feature_size=[], steps=[], num_ssd_boxes=0))
    check_feature_sizes(cfg, 16)  # a network registered elsewhere gives its first stride


FORMULATIONS = [pytest.param(model, fast, id="%s-%s" % (model, "fast" if fast else "plain"),
                             marks=[pytest.mark.slow] if (model, fast) == ("ssd_vgg16", False) else [])
                for model in MODELS for fast in (True, False)]


@pytest.mark.parametrize("model,fast", FORMULATIONS)
def test_non_square_outputs_match_default_boxes(model, fast, pynative_mode):
    """Every model on a non-square input gives one prediction per default box, in both formulations
    (ssd_vgg16's plain formulation takes about two minutes on a CPU: marked slow)."""
    from src.models import build_ssd
    from src.models.registry import use_fast_conv

    cfg = non_square_cfg(model, fast_conv=fast)
    if fast and not use_fast_conv(cfg):
        pytest.skip("no C++ compiler for the fast CPU kernels")
    net = build_ssd(cfg)
    net.set_train(False)
    loc, logits = net(image((1, 3) + tuple(cfg.img_shape)))
    count = len(default_boxes_yxhw(cfg))
    assert loc.shape == (1, count, 4) and logits.shape == (1, count, cfg.num_classes) and count == cfg.num_ssd_boxes
    assert np.isfinite(loc.asnumpy()).all() and np.isfinite(logits.asnumpy()).all()


def test_non_square_upsample_matches_resize_bilinear(pynative_mode):
    """The FPN's top-down resize of [h, w] maps is ResizeBilinear's (no corner alignment, no half pixels)."""
    from mindspore import ops

    from src.models.layers import Upsample

    x = image((2, 4, 2, 3))
    expected = ops.ResizeBilinearV2(align_corners=False, half_pixel_centers=False)(x, (4, 6)).asnumpy()
    np.testing.assert_allclose(Upsample([2, 3], [4, 6])(x).asnumpy(), expected, atol=1e-5)
    nhwc = Upsample([2, 3], [4, 6], True)(ops.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_allclose(ops.transpose(nhwc, (0, 3, 1, 2)).asnumpy(), expected, atol=1e-5)


def test_non_square_ssd300_trains_evaluates_and_exports(tmp_path):
    """Two training steps on real anchor targets, then the checkpoint evaluated as eval.py runs it
    (SsdDetector: boxes decoded against the non-square default boxes, clipped to the image) and through
    onnxruntime (exported in the plain formulation): the same boxes and scores."""
    from benchmarks.sections import fake_batch
    from src.box_coder import decode
    from src.inference.detector import SsdDetector
    from src.inference.postprocess import detect
    from src.inference.runtimes import checkpoint_predictor
    from src.models import build_ssd
    from src.training.loss import SsdWithLoss
    from src.training.train_step import TrainStep, make_optimizer, make_scaler

    cfg = derived_cfg("ssd300", [64, 96], "--num_classes=5")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        ms.set_seed(1)
        net = build_ssd(cfg)
        net_with_loss = SsdWithLoss(net, cfg.num_classes, cfg.gamma, cfg.alpha)
        optimizer = make_optimizer(net_with_loss, np.full(2, 0.01, np.float32), cfg.momentum, cfg.weight_decay)
        step = TrainStep(net_with_loss, optimizer, *make_scaler("CPU", cfg.loss_scale))
        net.set_train(True)
        before = net.trainable_params()[0].asnumpy().copy()
        batch = fake_batch(cfg, 2)
        assert batch[1].shape == (2, cfg.num_ssd_boxes, 4) and batch[3].min() > 0
        for _ in range(2):
            loss, finite = step(*[ms.Tensor(x) for x in batch])
            assert np.isfinite(float(loss.asnumpy())) and bool(finite.asnumpy())
        assert not np.array_equal(net.trainable_params()[0].asnumpy(), before)
        net.set_train(False)
        x = image((1, 3, 64, 96), seed=3)
        raw_loc = net(x)[0].asnumpy()[0]
        path = str(tmp_path / "non_square.ckpt")
        ms.save_checkpoint(SsdDetector(net, cfg), path)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    boxes, scores = checkpoint_predictor(cfg, path)(x.asnumpy())
    assert boxes.shape == (1, cfg.num_ssd_boxes, 4) and scores.shape == (1, cfg.num_ssd_boxes, cfg.num_classes)
    decoded = np.clip(decode(raw_loc, default_boxes_yxhw(cfg), cfg.prior_scaling), 0.0, 1.0)
    np.testing.assert_allclose(boxes[0], decoded, atol=1e-5)
    kept, kept_scores, labels = detect(boxes[0], scores[0], 0.0, cfg.nms_threshold, cfg.max_boxes)
    assert len(kept) == len(kept_scores) == len(labels) > 0 and labels.min() >= 1
    onnx_boxes, onnx_scores = checkpoint_predictor(cfg.replace(infer_backend="onnxruntime"), path)(x.asnumpy())
    np.testing.assert_allclose(onnx_boxes, boxes, atol=1e-4)
    np.testing.assert_allclose(onnx_scores, scores, atol=1e-4)
