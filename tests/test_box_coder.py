import os

import numpy as np
import pytest

from src.anchors import default_boxes_yxhw, default_boxes_yxyx
from src.box_coder import SsdTargetEncoder, decode, encode, iou, match


def random_boxes(rng, count):
    corner = rng.uniform(0, 0.7, (count, 2))
    return np.concatenate([corner, corner + rng.uniform(0.02, 0.3, (count, 2))], 1).astype(np.float32)


def brute_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            h = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            w = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - h * w
            out[i, j] = h * w / union
    return out


def brute_match(gt, anchors, threshold):
    """The model zoo's ssd_bboxes_encode, box by box: each ground truth's best anchor scores 2, and an
    anchor goes to a later ground truth only for a strictly higher score, so ties (a shared best anchor
    included) stay with the earlier one."""
    overlaps = brute_iou(gt, anchors)
    matched = np.full(len(anchors), -1)
    pre_scores = np.zeros(len(anchors))
    for k in range(len(gt)):
        scores = overlaps[k].copy()
        scores[int(np.argmax(scores))] = 2.0
        mask = (scores > threshold) & (scores > pre_scores)
        pre_scores = np.where(mask, scores, pre_scores)
        matched[mask] = k
    return matched


def test_iou_against_brute_force():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 11)
    np.testing.assert_allclose(iou(a, b), brute_iou(a, b), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_match_against_brute_force(cfg, seed):
    rng = np.random.default_rng(seed)
    gt = random_boxes(rng, int(rng.integers(1, 8)))
    anchors = default_boxes_yxyx(cfg)
    np.testing.assert_array_equal(match(gt, anchors, 0.5), brute_match(gt, anchors, 0.5))


def test_every_ground_truth_keeps_its_best_anchor(cfg):
    anchors = default_boxes_yxyx(cfg)
    tiny = np.array([[0.40, 0.40, 0.41, 0.41], [0.70, 0.10, 0.705, 0.12]], np.float32)
    matched = match(tiny, anchors, 0.5)
    assert set(matched[matched >= 0]) == {0, 1}
    best = iou(tiny, anchors).argmax(axis=1)
    assert list(matched[best]) == [0, 1]


def test_encode_decode_round_trip(cfg):
    rng = np.random.default_rng(1)
    anchors = default_boxes_yxhw(cfg)
    gt = random_boxes(rng, len(anchors))
    loc = encode(gt, anchors, cfg.prior_scaling)
    np.testing.assert_allclose(decode(loc, anchors, cfg.prior_scaling), gt, atol=1e-5)


def test_targets_for_boxes_and_for_empty_image(cfg):
    encoder = SsdTargetEncoder(default_boxes_yxhw(cfg), default_boxes_yxyx(cfg), 0.5, cfg.prior_scaling)
    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95]], np.float32)
    loc, label, num = encoder(boxes, np.array([3, 7]))
    assert loc.shape == (1917, 4) and label.shape == (1917,) and label.dtype == np.int32
    assert num == (label > 0).sum() > 2 and set(np.unique(label)) == {0, 3, 7}
    decoded = decode(loc[label == 3], default_boxes_yxhw(cfg)[label == 3], cfg.prior_scaling)
    np.testing.assert_allclose(decoded, np.repeat(boxes[:1], len(decoded), 0), atol=1e-5)
    assert not loc[label == 0].any()
    loc, label, num = encoder(np.zeros((0, 4), np.float32), np.zeros(0, np.int32))
    assert num == 0 and not label.any() and not loc.any()


FPN_ANCHORS = {"anchor_type": "grid", "img_shape": [640, 640], "steps": [8, 16, 32, 64, 128],
               "feature_size": [80, 40, 20, 10, 5], "num_default": [6, 6, 6, 6, 6]}


def encoder_pair(cfg, **settings):
    """The compiled encoder and the numpy one for the same anchors (skips without a C++ compiler)."""
    anchor_cfg = cfg.replace(**settings)
    args = (default_boxes_yxhw(anchor_cfg), default_boxes_yxyx(anchor_cfg), cfg.match_threshold, cfg.prior_scaling)
    compiled = SsdTargetEncoder(*args)
    if compiled.native is None:
        pytest.skip("no C++ compiler: the compiled matcher is not available")
    return compiled, SsdTargetEncoder(*args, use_native=False)


def assert_same_targets(compiled, reference):
    """Same matches, labels and centre targets bit for bit; size targets within a few float32 ulps
    (numpy's SIMD float32 log is not correctly rounded, the compiled one is)."""
    loc, label, num = compiled
    ref_loc, ref_label, ref_num = reference
    assert loc.dtype == np.float32 and label.dtype == np.int32 and isinstance(num, np.int32)
    assert num == ref_num
    np.testing.assert_array_equal(label, ref_label)
    np.testing.assert_array_equal(loc[:, :2], ref_loc[:, :2])
    np.testing.assert_allclose(loc[:, 2:], ref_loc[:, 2:], rtol=2e-6, atol=1e-6)


def awkward_boxes(rng, count):
    """Random boxes with some duplicated, some of zero height, width or both, some copying anchors."""
    boxes = random_boxes(rng, count)
    kind = rng.integers(0, 6, count)
    boxes[kind == 1, 2] = boxes[kind == 1, 0]
    boxes[kind == 2, 3] = boxes[kind == 2, 1]
    boxes[kind == 3, 2:] = boxes[kind == 3, :2]
    if count > 1:
        boxes[kind == 4] = boxes[0]
    return boxes


@pytest.mark.parametrize("count", [0, 1, 2, 5, 30])
def test_compiled_matches_numpy_on_random_images(cfg, count):
    compiled, reference = encoder_pair(cfg)
    rng = np.random.default_rng(count)
    for _ in range(60):
        boxes = awkward_boxes(rng, count)
        labels = rng.integers(1, cfg.num_classes, count).astype(np.int32)
        assert_same_targets(compiled(boxes, labels), reference(boxes, labels))


def test_compiled_matches_numpy_on_ties(cfg):
    """Boxes equal to anchors, halves of anchors (IoU 0.5, the threshold) and on a coarse grid: many
    exact ties, between ground truths and between anchors."""
    compiled, reference = encoder_pair(cfg)
    anchors = default_boxes_yxyx(cfg)
    rng = np.random.default_rng(7)
    for _ in range(40):
        picked = anchors[rng.integers(0, len(anchors), 4)]
        half = picked.copy()
        half[:, 2] = (picked[:, 0] + picked[:, 2]) / 2
        grid = np.sort(rng.integers(0, 9, (4, 2, 2)) / 8, axis=1).transpose(0, 2, 1).reshape(4, 4)
        boxes = np.concatenate([picked, half, picked[:2], grid]).astype(np.float32)
        labels = rng.integers(1, cfg.num_classes, len(boxes)).astype(np.int32)
        assert_same_targets(compiled(boxes, labels), reference(boxes, labels))


def test_shared_best_anchor_stays_with_the_earlier_ground_truth(cfg):
    """Two ground truths sharing their best anchor: the earlier one keeps it, as in the model zoo."""
    compiled, reference = encoder_pair(cfg)
    box = np.array([[0.3, 0.3, 0.5, 0.45]], np.float32)
    far = np.array([[0.7, 0.1, 0.9, 0.3]], np.float32)
    boxes, labels = np.concatenate([box, box, far]), np.array([4, 9, 2], np.int32)
    loc, label, num = compiled(boxes, labels)
    best = iou(boxes[:1], default_boxes_yxyx(cfg)).argmax()
    assert label[best] == 4
    assert_same_targets((loc, label, num), reference(boxes, labels))


def test_compiled_matches_numpy_on_inverted_and_nan_boxes(cfg):
    compiled, reference = encoder_pair(cfg)
    rng = np.random.default_rng(3)
    for _ in range(20):
        boxes = random_boxes(rng, 6)
        boxes[1] = boxes[1, [2, 3, 0, 1]]
        boxes[2, 0] = np.nan
        boxes[3] = [0.5, 0.5, 0.5, 0.2]
        rng.shuffle(boxes)
        labels = rng.integers(1, cfg.num_classes, 6).astype(np.int32)
        with np.errstate(invalid="ignore", divide="ignore"):
            assert_same_targets(compiled(boxes, labels), reference(boxes, labels))


def test_compiled_matches_numpy_with_zero_area_anchors(cfg):
    """A zero-area box against a zero-area anchor has IoU 0/0 = NaN, which numpy's argmax takes as the maximum."""
    yxhw, yxyx = default_boxes_yxhw(cfg).copy(), default_boxes_yxyx(cfg).copy()
    flat = [5, 700, 1500]
    yxyx[flat, 2] = yxyx[flat, 0]
    yxhw[flat, 2] = 0
    args = (yxhw, yxyx, cfg.match_threshold, cfg.prior_scaling)
    compiled, reference = SsdTargetEncoder(*args), SsdTargetEncoder(*args, use_native=False)
    if compiled.native is None:
        pytest.skip("no C++ compiler: the compiled matcher is not available")
    boxes = np.concatenate([yxyx[[700]], random_boxes(np.random.default_rng(8), 3), yxyx[[1500, 5]]])
    boxes[3, 2] = boxes[3, 0]
    labels = np.arange(1, len(boxes) + 1, dtype=np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = reference(boxes, labels)
        assert_same_targets(compiled(boxes, labels), expected)
    # Every zero-area box peaks (NaN) first at anchor 5, the first of them (label 1) keeps it; NaN columns
    # never pass the threshold.
    assert expected[1][5] == 1 and not expected[1][[700, 1500]].any()


def test_compiled_matches_numpy_with_fpn_anchors(cfg):
    compiled, reference = encoder_pair(cfg, **FPN_ANCHORS)
    assert len(compiled.anchors_yxhw) == 51150
    rng = np.random.default_rng(11)
    for count in (0, 1, 5, 30):
        boxes = awkward_boxes(rng, count)
        labels = rng.integers(1, cfg.num_classes, count).astype(np.int32)
        assert_same_targets(compiled(boxes, labels), reference(boxes, labels))


def test_compiled_converts_inputs_like_numpy(cfg):
    """float64 boxes, float labels, a non-contiguous array, an empty list and too few labels."""
    compiled, reference = encoder_pair(cfg)
    boxes = random_boxes(np.random.default_rng(5), 4)
    wide = np.zeros((4, 8), np.float32)
    wide[:, ::2] = boxes
    for args in ((boxes.astype(np.float64), [1.0, 2.0, 3.7, 4.0]), (wide[:, ::2], np.arange(1, 5)), ([], [])):
        assert_same_targets(compiled(*args), reference(*args))
    with pytest.raises(IndexError):
        compiled(boxes, np.array([1, 2]))


def test_compiled_encoder_is_thread_safe(cfg):
    """Per-thread work space: threads encoding at once get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor
    compiled, _ = encoder_pair(cfg, **FPN_ANCHORS)
    rng = np.random.default_rng(2)
    images = [(random_boxes(rng, int(rng.integers(1, 20))), np.arange(1, 20, dtype=np.int32)) for _ in range(24)]
    serial = [compiled(boxes, labels[:len(boxes)]) for boxes, labels in images]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda image: compiled(image[0], image[1][:len(image[0])]), images))
    for one, other in zip(parallel, serial):
        np.testing.assert_array_equal(one[0], other[0])
        np.testing.assert_array_equal(one[1], other[1])


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """A process in which the compiled matcher cannot be built: $CXX names no compiler, empty cache."""
    from src import box_coder, native
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SSD_KERNEL_CACHE", str(tmp_path / "cache"))
    native.load.cache_clear()
    box_coder.native_match_encode.cache_clear()
    yield
    native.load.cache_clear()
    box_coder.native_match_encode.cache_clear()


def test_numpy_fallback_without_compiler(cfg, no_compiler, caplog):
    args = (default_boxes_yxhw(cfg), default_boxes_yxyx(cfg), cfg.match_threshold, cfg.prior_scaling)
    with caplog.at_level("WARNING"):
        encoders = [SsdTargetEncoder(*args) for _ in range(3)]
    assert all(encoder.native is None for encoder in encoders)
    assert len([r for r in caplog.records if "compiler" in r.getMessage()]) == 1
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 5)
    loc, label, num = encoders[0](boxes, np.arange(1, 6))
    expected = brute_match(boxes, default_boxes_yxyx(cfg), cfg.match_threshold)
    np.testing.assert_array_equal(label, np.where(expected >= 0, expected + 1, 0))
    assert num == (expected >= 0).sum()


def test_native_library_is_cached_by_source_and_flags(tmp_path, monkeypatch):
    from src import native
    if native.find_compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("SSD_KERNEL_CACHE", str(tmp_path))
    source = native.source_path("box_match.cc")
    first = native.build(source)
    assert first is not None and os.path.dirname(first) == str(tmp_path)
    stamp = os.stat(first).st_mtime_ns
    assert native.build(source) == first and os.stat(first).st_mtime_ns == stamp
    other = native.build(source, native.CXX_FLAGS + ("-DSSD_UNUSED=1",))
    assert other not in (None, first)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(path) for path in (first, other))


def test_encoder_survives_pickling(cfg):
    import copy
    import pickle
    encoder = SsdTargetEncoder(default_boxes_yxhw(cfg), default_boxes_yxyx(cfg), 0.5, cfg.prior_scaling)
    boxes = random_boxes(np.random.default_rng(6), 3)
    expected = encoder(boxes, np.arange(1, 4))
    for other in (pickle.loads(pickle.dumps(encoder)), copy.deepcopy(encoder)):
        assert (other.native is None) == (encoder.native is None)
        for got, want in zip(other(boxes, np.arange(1, 4)), expected):
            np.testing.assert_array_equal(got, want)
