import numpy as np
import pytest

from src.data.convert import ensure_mindrecord
from src.data.pipeline import create_ssd_dataset, split_annotation
from src.data.shapes import generate_shapes
from tests.helpers import SSD300_ARGS


@pytest.fixture(scope="module")
def shapes_cfg(tmp_path_factory):
    from src.config import load_config
    root = tmp_path_factory.mktemp("pipeline")
    generate_shapes(str(root / "shapes"), num_train=12, num_val=5, seed=3)
    return load_config(["--coco_root=%s" % (root / "shapes"), "--mindrecord_dir=%s" % (root / "mr"),
                        "--num_parallel_workers=2", "--augment=True"] + SSD300_ARGS)


def rows(dataset):
    return list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))


def test_training_batches_shapes_and_dtypes(shapes_cfg):
    files = ensure_mindrecord(shapes_cfg, True)["files"]
    batches = rows(create_ssd_dataset(shapes_cfg, files, True, batch_size=4))
    assert len(batches) == 3
    image, box, label, num_match = batches[0]
    assert image.shape == (4, 3, 300, 300) and image.dtype == np.float32
    assert box.shape == (4, 1917, 4) and box.dtype == np.float32
    assert label.shape == (4, 1917) and label.dtype == np.int32
    assert num_match.shape == (4,) and num_match.dtype == np.int32
    np.testing.assert_array_equal(num_match, (label > 0).sum(axis=1))
    assert set(np.unique(label)) <= {0, 33, 34, 63}
    assert abs(float(image.mean())) < 1.5


def test_same_epoch_same_data_and_other_epoch_differs(shapes_cfg):
    files = ensure_mindrecord(shapes_cfg, True)["files"]
    first = rows(create_ssd_dataset(shapes_cfg, files, True, 4, epoch=1))
    again = rows(create_ssd_dataset(shapes_cfg, files, True, 4, epoch=1))
    other = rows(create_ssd_dataset(shapes_cfg, files, True, 4, epoch=2))
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0][0], other[0][0])


def test_sharding_splits_the_data(shapes_cfg):
    files = ensure_mindrecord(shapes_cfg, True)["files"]
    counts = [create_ssd_dataset(shapes_cfg, files, True, 2, rank=r, group_size=2).get_dataset_size()
              for r in (0, 1)]
    assert counts == [3, 3]


def test_eval_rows_keep_id_and_original_size(shapes_cfg):
    info = ensure_mindrecord(shapes_cfg, False)
    batches = rows(create_ssd_dataset(shapes_cfg, info["files"], False, batch_size=2))
    ids = np.concatenate([b[0] for b in batches])
    assert sorted(ids.tolist()) == list(range(1, 6))
    img_id, image, shape = batches[0]
    assert image.shape[1:] == (3, 300, 300) and image.dtype == np.float32
    assert shape.shape == (2, 2) and (shape >= 150).all()


def test_image_without_boxes_reads_back_empty():
    boxes, labels = split_annotation(np.array(0.0, np.float32))
    assert boxes.shape == (0, 4) and labels.shape == (0,)
    boxes, labels = split_annotation(np.array([[0.1, 0.2, 0.3, 0.4, 5]], np.float32))
    assert boxes.shape == (1, 4) and labels.tolist() == [5]
