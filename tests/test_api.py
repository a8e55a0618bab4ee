"""The Python API (src/api.py): keyword overrides as command-line arguments, Detector over a checkpoint and
over its ONNX export, and the Detections result.

The checkpoint is a seeded, untrained network of the default config with three classes, saved with its
model settings as training saves them; at ``score_threshold=0.0`` it gives plenty of (meaningless)
detections, which is all these tests need.
"""
import cv2
import numpy as np
import pytest
import yaml

from src.api import Detection, Detections, Detector, argument_text, build_config, config_arguments
from src.config import load_config
from src.errors import UserError

CLASSES = ["background", "circle", "square"]


def save_untrained_checkpoint(path, seed=3):
    """Save a seeded, untrained default-config network with ``CLASSES`` and its model settings at ``path``."""
    import mindspore as ms

    from src.inference.export import exportable_config
    from src.model_settings import settings_entry
    from src.models import build_ssd

    cfg = load_config(["--classes=[%s]" % ",".join(CLASSES), "--num_classes=%d" % len(CLASSES)])
    ms.set_seed(seed)
    ms.save_checkpoint(build_ssd(exportable_config(cfg)), str(path), append_dict=settings_entry(cfg))
    return str(path)


def random_image(height=48, width=64, seed=0):
    """A small random BGR image."""
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_untrained_checkpoint(tmp_path_factory.mktemp("api") / "untrained.ckpt")


@pytest.fixture(scope="module")
def detector(checkpoint):
    return Detector.from_checkpoint(checkpoint, score_threshold=0.0)


# ------------------------------------------------------------------------------- configuration
def test_overrides_become_the_arguments_load_config_reads_back():
    overrides = {"checkpoint_filter_list": ["big tree", "a,b", "yes", "x: y"], "img_shape": (320, 320),
                 "score_threshold": 0.25, "max_boxes": 3, "verbose": True, "output": "out dir"}
    argv = config_arguments("", overrides)
    assert argv[1] == "--img_shape=[320, 320]" and argv[3] == "--max_boxes=3" and argv[4] == "--verbose=True"
    cfg = load_config(argv)
    assert cfg.checkpoint_filter_list == ["big tree", "a,b", "yes", "x: y"] and cfg.img_shape == [320, 320]
    assert (cfg.score_threshold, cfg.max_boxes, cfg.verbose, cfg.output) == (0.25, 3, True, "out dir")
    assert yaml.safe_load(argument_text("k", [1e-05, [2, 3], (0.5,)])) == [1e-05, [2, 3], [0.5]]


def test_config_path_and_bad_values_are_one_line_value_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("max_boxes: 7\nnms_threshold: 0.5\n")
    cfg = build_config(str(path), {"max_boxes": 9})
    assert (cfg.max_boxes, cfg.nms_threshold) == (9, 0.5)
    cases = [({"max_boxse": 3}, "unknown config key 'max_boxse'; did you mean --max_boxes"),
             ({"max_boxes": "many"}, "--max_boxes expects a number, got 'many'"),
             ({"max_boxes": {"a": 1}}, "max_boxes: a str, int, float, bool or list is expected, got dict")]
    for overrides, message in cases:
        with pytest.raises(ValueError) as err:
            Detector.from_checkpoint(str(tmp_path / "never_read.ckpt"), **overrides)
        assert type(err.value) is ValueError and message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="config file not found"):
        build_config(str(tmp_path / "none.yaml"))


# ---------------------------------------------------------------------------------- checkpoint
def test_checkpoint_settings_and_overrides_reach_the_config(detector):
    assert detector.classes == CLASSES and detector.cfg.num_classes == 3
    assert detector.cfg.score_threshold == 0.0 and detector.cfg.max_boxes == 100


def test_detections_are_infer_py_detections_for_an_array_and_a_path(detector, tmp_path):
    from src.inference.images import detect_image

    image = random_image()
    path = tmp_path / "photo.png"
    assert cv2.imwrite(str(path), image)
    expected = detect_image(detector.predict, image, detector.cfg, 1)
    assert 3 < len(expected) <= 100
    for result in (detector(image), detector(str(path)), detector(path)):
        assert isinstance(result, Detections) and len(result) == len(expected)
        coco = result.to_coco(1)
        assert [(d["category_id"], d["score"]) for d in coco] == [(e["category_id"], e["score"]) for e in expected]
        assert np.allclose([d["bbox"] for d in coco], [e["bbox"] for e in expected], rtol=0, atol=1e-9)


def test_result_attributes_iteration_and_coco_layout(detector):
    result = detector(random_image())
    count = len(result)
    assert result.boxes.shape == (count, 4) and result.labels.shape == result.scores.shape == (count,)
    assert (result.boxes[:, 2:] >= result.boxes[:, :2]).all() and result.boxes.min() >= 0
    assert result.boxes[:, 2].max() <= 64 and result.boxes[:, 3].max() <= 48
    assert set(result.labels.tolist()) <= {1, 2} and result.class_names == [CLASSES[k] for k in result.labels]
    assert (np.diff(result.scores) <= 0).all()
    first = next(iter(result))
    assert isinstance(first, Detection) and first == (tuple(result.boxes[0]), result.class_names[0], result.scores[0])
    box, name, score = first
    coco = result.to_coco(image_id=7)
    assert set(coco[0]) == {"image_id", "category_id", "bbox", "score"} and len(coco) == count
    assert coco[0]["image_id"] == 7 and coco[0]["category_id"] == result.labels[0] and coco[0]["score"] == score
    assert coco[0]["bbox"] == pytest.approx([box[0], box[1], box[2] - box[0], box[3] - box[1]])
    assert repr(result).startswith("Detections(%d: %s %.2f" % (count, name, score))


def test_draw_returns_a_drawn_copy_and_leaves_the_image_alone(detector):
    image = random_image()
    before = image.copy()
    result = detector(image)
    drawn = result.draw(image)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8 and drawn is not image
    assert (image == before).all() and (drawn != image).any()


def test_a_list_gives_a_list(detector, tmp_path):
    path = tmp_path / "b.png"
    cv2.imwrite(str(path), random_image(seed=1))
    results = detector([random_image(), str(path)])
    assert isinstance(results, list) and len(results) == 2
    assert results[0].to_coco() == detector(random_image()).to_coco()
    assert results[1].to_coco() == detector(random_image(seed=1)).to_coco()
    assert detector([]) == []


def test_bad_inputs_are_one_line_errors(detector, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    cases = [(lambda: Detector.from_checkpoint(str(tmp_path / "nowhere.ckpt")), UserError,
              "checkpoint not found: %s" % (tmp_path / "nowhere.ckpt")),
             (lambda: detector(str(tmp_path / "nowhere.jpg")), UserError, "image not found: "),
             (lambda: detector(str(tmp_path / "broken.jpg")), UserError, "broken.jpg: not a readable image"),
             (lambda: detector(np.zeros((8, 8), np.float32)), ValueError, "got float32 [8, 8]"),
             (lambda: Detector.from_onnx(str(tmp_path / "none.onnx")), UserError, "ONNX file not found")]
    for call, kind, message in cases:
        with pytest.raises(kind) as err:
            call()
        assert message in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------- ONNX
def test_onnx_export_agrees_with_the_checkpoint(detector, checkpoint, tmp_path):
    """The export's description brings the three classes; max_boxes=3 caps the result; the scores are the
    checkpoint's within 1e-4."""
    from src.inference.export import export_checkpoint

    path = export_checkpoint(detector.cfg, checkpoint, str(tmp_path / "ssd"), "ONNX", 1)
    onnx = Detector.from_onnx(path, score_threshold=0.0, max_boxes=3)
    assert onnx.classes == CLASSES and onnx.cfg.max_boxes == 3
    for seed in (0, 1):
        image = random_image(seed=seed)
        expected, result = detector(image), onnx(image)
        assert len(result) == 3
        assert np.abs(result.scores - expected.scores[:3]).max() < 1e-4
        assert np.abs(result.boxes - expected.boxes[:3]).max() < 1e-2
