"""Export and deployment: the exported MINDIR and ONNX equal the network, eval_onnx.py and the MINDIR
runner + postprocess.py give eval.py's figures, and the one-line errors (AIR off Ascend, no C++ runtime).

A 160x160 SSD300-MobileNetV2 (maps 10, 5, 3, 2, 1, 1; 540 default boxes) keeps the graphs small. The
checkpoint is a seeded, untrained network: its mAP is about 0, so the end-to-end tests also compare the
detections themselves (per image: count, sorted scores, and the boxes), which any pre-processing or
decoding difference would change.
"""
import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT

SMALL = {"img_shape": "[160,160]", "feature_size": "[10,5,3,2,1,1]", "steps": "[16,32,54,80,160,160]",
         "num_ssd_boxes": "540"}
SMALL_ARGS = ["--%s=%s" % item for item in SMALL.items()]


def run_python(args, timeout=600):
    """Run ``python ARGS`` from the repository root; returns the CompletedProcess."""
    return subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(done, *parts):
    """Exit status 1 and a single ``error: ...`` line on stderr holding every part."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    for part in parts:
        assert part in lines[0]


@pytest.fixture(scope="module")
def small_cfg():
    """The default config with the 160x160 network."""
    from src.config import load_config
    return load_config(SMALL_ARGS)


@pytest.fixture(scope="module")
def work(tmp_path_factory, small_cfg):
    """A folder with a seeded, untrained checkpoint of the small network."""
    import mindspore as ms

    from src.inference.export import exportable_config
    from src.models import build_ssd

    root = tmp_path_factory.mktemp("export")
    ms.set_seed(3)
    ms.save_checkpoint(build_ssd(exportable_config(small_cfg)), str(root / "untrained.ckpt"))
    return root


@pytest.fixture(scope="module")
def detector(small_cfg, work):
    """The exportable detector holding the untrained checkpoint."""
    from src.device import set_mode
    from src.inference.export import build_detector

    set_mode("GRAPH")
    return build_detector(small_cfg, str(work / "untrained.ckpt"))


@pytest.fixture(scope="module")
def images():
    """Three random normalised input images."""
    return np.random.default_rng(0).standard_normal((3, 3, 160, 160)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(detector, images):
    """The network's (boxes, scores) for each test image, one image at a time."""
    from src.inference.runtimes import mindspore_predictor

    predict = mindspore_predictor(detector)
    outputs = [predict(images[i:i + 1]) for i in range(len(images))]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


@pytest.fixture(scope="module")
def mindir(detector, small_cfg, work):
    """The detector exported as MINDIR (batch 1) in-process."""
    from src.inference.export import export_detector
    return export_detector(detector, small_cfg, str(work / "ssd"), "MINDIR")


@pytest.fixture(scope="module")
def onnx_path(work):
    """The ONNX file export.py writes for the untrained checkpoint (batch 1)."""
    done = run_python(["export.py", "--checkpoint_file_path=%s" % (work / "untrained.ckpt"),
                       "--file_name=%s" % (work / "cli" / "ssd"), "--file_format=ONNX"] + SMALL_ARGS)
    assert done.returncode == 0, done.stderr[-2000:]
    path = str(work / "cli" / "ssd.onnx")
    assert "exported %s (ONNX, input [batch, 3, 160, 160])" % path in done.stdout
    return path


def test_mindir_matches_the_network(mindir, images, reference):
    import mindspore as ms
    from mindspore import nn

    assert mindir.endswith("ssd.mindir") and os.path.isfile(mindir)
    graph = nn.GraphCell(ms.load(mindir))
    for i in range(len(images)):
        boxes, scores = (t.asnumpy() for t in graph(ms.Tensor(images[i:i + 1])))
        assert boxes.shape == (1, 540, 4) and scores.shape == (1, 540, 81)
        assert np.abs(boxes - reference[0][i:i + 1]).max() < 1e-5
        assert np.abs(scores - reference[1][i:i + 1]).max() < 1e-5


def test_onnx_from_export_py_matches_the_network(onnx_path, images, reference, small_cfg):
    from src.inference.runtimes import OnnxDetector

    detector = OnnxDetector(onnx_path)
    detector.check_config(small_cfg)
    assert detector.batch is None and detector.num_classes == 81
    for count in (1, 3, 8):
        batch = np.resize(images, (count,) + images.shape[1:])
        boxes, scores = detector(batch)
        assert boxes.shape == (count, 540, 4) and scores.shape == (count, 540, 81)
        assert np.abs(boxes - np.resize(reference[0], boxes.shape)).max() < 1e-4
        assert np.abs(scores - np.resize(reference[1], scores.shape)).max() < 1e-4


def test_boxes_are_clipped_to_the_image_in_every_graph(mindir, onnx_path, images, reference):
    """SsdDetector, the MINDIR and the ONNX file give boxes inside [0, 1]; some reach the border, so the clip
    is what keeps them there (about half of the default boxes extend outside the image)."""
    import mindspore as ms
    from mindspore import nn

    from src.inference.runtimes import OnnxDetector

    exported = [nn.GraphCell(ms.load(mindir))(ms.Tensor(images[:1]))[0].asnumpy(), OnnxDetector(onnx_path)(images)[0]]
    for boxes in [reference[0]] + exported:
        assert boxes.min() >= 0.0 and boxes.max() <= 1.0
    assert np.any(reference[0] == 0.0) and np.any(reference[0] == 1.0)


def test_every_export_is_described_beside_it(onnx_path, small_cfg):
    """ssd.json beside ssd.onnx: the model settings, input, outputs and thresholds; eval_onnx.py takes the
    model keys from it, and a disagreeing one is refused naming both values."""
    from src.config import load_config
    from src.errors import UserError
    from src.model_settings import config_for_export

    with open(onnx_path[:-len(".onnx")] + ".json", encoding="utf-8") as stream:
        described = json.load(stream)
    assert (described["file"], described["format"], described["batch_size"]) == ("ssd.onnx", "ONNX", -1)
    assert described["input"]["shape"] == ["batch", 3, 160, 160]
    assert described["model"]["img_shape"] == [160, 160] and described["model"]["num_ssd_boxes"] == 540
    assert [o["name"] for o in described["outputs"]] == ["boxes", "scores"]
    assert described["outputs"][1]["shape"] == ["batch", 540, 81] and described["postprocess"]["max_boxes"] == 100
    cfg = config_for_export(load_config([]), onnx_path)
    assert cfg.img_shape == [160, 160] and list(cfg.feature_size) == [10, 5, 3, 2, 1, 1]
    with pytest.raises(UserError, match=r"img_shape=\[160, 160\], but the configuration gives \[300, 300\]"):
        config_for_export(load_config(["--img_shape=[300,300]"]), onnx_path)


def test_onnxruntime_backend_of_a_checkpoint(small_cfg, work, images, reference):
    from src.inference.runtimes import checkpoint_predictor

    predict = checkpoint_predictor(small_cfg.replace(infer_backend="onnxruntime"), str(work / "untrained.ckpt"))
    boxes, scores = predict(images[:2])
    assert np.abs(boxes - reference[0][:2]).max() < 1e-4
    assert np.abs(scores - reference[1][:2]).max() < 1e-4


def test_onnx_file_for_another_config_is_one_line(onnx_path, small_cfg):
    from src.errors import UserError
    from src.inference.runtimes import OnnxDetector

    with pytest.raises(UserError, match=r"takes images \[160, 160\] but img_shape is \[300, 300\]"):
        OnnxDetector(onnx_path).check_config(small_cfg.replace(img_shape=[300, 300]))
    with pytest.raises(UserError, match="onnxruntime cannot load it"):
        OnnxDetector(os.path.join(ROOT, "README.md"))


def test_export_batch_size_only_from_the_command_line(small_cfg):
    import export
    assert export.batch_size_argument(small_cfg, []) == 1
    assert export.batch_size_argument(small_cfg.replace(file_format="ONNX"), []) == -1
    assert export.batch_size_argument(small_cfg.replace(batch_size=4), ["--batch_size=4"]) == 4


def test_air_off_ascend_is_one_line(work):
    done = run_python(["export.py", "--checkpoint_file_path=%s" % (work / "untrained.ckpt"), "--file_format=AIR",
                       "--file_name=%s" % (work / "air")] + SMALL_ARGS)
    assert_one_line_error(done, "AIR export needs an Ascend device", "device_target is CPU")
    assert not os.path.exists(str(work / "air.air"))


def test_raw_output_files_round_trip(tmp_path):
    from src.errors import UserError
    from src.inference.raw_outputs import output_file, read_outputs, write_outputs

    boxes = np.random.default_rng(1).random((1, 540, 4), dtype=np.float32)
    scores = np.random.default_rng(2).random((1, 540, 81), dtype=np.float32)
    write_outputs(str(tmp_path), "000007", [boxes, scores])
    assert os.path.getsize(output_file(str(tmp_path), "000007", 0)) == 540 * 4 * 4
    assert np.fromfile(output_file(str(tmp_path), "000007", 1), "<f4").reshape(1, 540, 81).tolist() == scores.tolist()
    got_boxes, got_scores = read_outputs(str(tmp_path), "000007", 81)
    assert np.array_equal(got_boxes, boxes[0]) and np.array_equal(got_scores, scores[0])
    assert read_outputs(str(tmp_path), "000008", 81) is None
    with pytest.raises(UserError, match="expected 540 boxes x num_classes 5"):
        read_outputs(str(tmp_path), "000007", 5)


def cpp_runtime_installed():
    """Whether the installed MindSpore package ships the C++ API headers (an Ascend install does)."""
    import importlib.util
    spec = importlib.util.find_spec("mindspore")
    folder = spec.submodule_search_locations[0] if spec else ""
    return os.path.isfile(os.path.join(folder, "include", "api", "model.h"))


@pytest.mark.skipif(cpp_runtime_installed(), reason="this MindSpore package has a C++ runtime: build.sh would build")
def test_cpp_build_without_runtime_is_one_line(tmp_path, work):
    env = {k: v for k, v in os.environ.items() if k not in ("MINDSPORE_PATH", "MS_LITE_HOME")}
    built = subprocess.run(["bash", os.path.join(ROOT, "ascend310_infer", "build.sh")], capture_output=True,
                           text=True, env=env, timeout=120)
    assert_one_line_error(built, "MINDSPORE_PATH", "MS_LITE_HOME")
    assert not os.path.exists(os.path.join(ROOT, "ascend310_infer", "out"))
    script = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_infer_cpp.sh"),
                             str(work / "untrained.ckpt"), str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120, cwd=str(tmp_path))
    assert script.returncode == 1 and built.stderr.strip() in script.stderr
    assert not os.path.exists(str(tmp_path / "result_Files"))


@pytest.fixture(scope="module")
def tiny(work):
    """The tiny shapes set and the arguments that evaluate on it with the small network."""
    from src.data.shapes import generate_shapes
    generate_shapes(str(work / "shapes"), num_train=8, num_val=4, seed=5)
    return ["--coco_root=%s" % (work / "shapes"), "--mindrecord_dir=%s" % (work / "mr")] + SMALL_ARGS


def evaluation(done, output_path):
    """(mAP printed, detections of predictions.json grouped by image) of a finished evaluation."""
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert sum("Average Precision" in line or "Average Recall" in line for line in lines) == 12
    mean_ap = float([line for line in lines if line.startswith("mAP: ")][-1].split()[1])
    with open(os.path.join(str(output_path), "predictions.json")) as stream:
        grouped = collections.defaultdict(list)
        for detection in json.load(stream):
            grouped[detection["image_id"]].append(detection)
    return mean_ap, grouped


def assert_same_evaluation(got, expected):
    """Same mAP within 1e-6 and, image by image, the same detections up to float rounding: each one has a
    counterpart of the same class whose box is within 0.01 px and whose score is within 1e-5."""
    assert abs(got[0] - expected[0]) < 1e-6
    assert sorted(got[1]) == sorted(expected[1]) and len(expected[1]) == 4
    for image_id, detections in expected[1].items():
        other = got[1][image_id]
        assert len(other) == len(detections) > 0
        for wanted in detections:
            assert any(d["category_id"] == wanted["category_id"] and abs(d["score"] - wanted["score"]) < 1e-5
                       and np.abs(np.subtract(d["bbox"], wanted["bbox"])).max() < 0.01 for d in other), wanted


@pytest.fixture(scope="module")
def eval_py(tiny, work):
    """eval.py on the tiny set with the untrained checkpoint (MindSpore, fast CPU formulation)."""
    done = run_python(["eval.py", "--checkpoint_file_path=%s" % (work / "untrained.ckpt"),
                       "--output_path=%s" % (work / "eval")] + tiny)
    return evaluation(done, work / "eval")


@pytest.mark.slow
def test_eval_onnx_matches_eval_py(tiny, work, onnx_path, eval_py):
    done = run_python(["eval_onnx.py", "--file_name=%s" % onnx_path, "--output_path=%s" % (work / "eval_onnx")]
                      + tiny)
    assert_same_evaluation(evaluation(done, work / "eval_onnx"), eval_py)


@pytest.mark.slow
def test_mindir_runner_and_postprocess_match_eval_py(tiny, work, mindir, eval_py):
    """The runner and postprocess.py take the model keys (the 160x160 layout) from ssd.json beside the MINDIR."""
    results = work / "result_Files"
    data = [arg for arg in tiny if not arg.startswith(tuple("--%s=" % key for key in SMALL))]
    ran = run_python(["-m", "tools.infer_mindir", "--file_name=%s" % mindir,
                      "--img_path=%s" % (work / "shapes" / "val2017"), "--result_path=%s" % results])
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.startswith("4 images: outputs in %s" % results)
    assert sorted(os.listdir(str(results))) == ["00000%d_%d.bin" % (i, k) for i in range(1, 5) for k in (0, 1)]
    assert os.path.getsize(str(results / "000001_1.bin")) == 540 * 81 * 4
    done = run_python(["postprocess.py", "--result_path=%s" % results, "--output_path=%s" % (work / "post"),
                       "--file_name=%s" % mindir] + data)
    assert_same_evaluation(evaluation(done, work / "post"), eval_py)


@pytest.mark.slow
def test_postprocess_without_outputs_is_one_line(tiny, work):
    os.makedirs(str(work / "empty"), exist_ok=True)
    done = run_python(["postprocess.py", "--result_path=%s" % (work / "empty")] + tiny)
    assert_one_line_error(done, "no output files in %s" % (work / "empty"), "000001_0.bin")


def test_export_py_quantizes_to_int8_and_eval_onnx_scores_it(tiny, work):
    """export.py --quantize=int8 writes <file_name>_int8.onnx with its description; eval_onnx.py runs it with
    no model keys (they come from the description); --quantize with another format is one line."""
    done = run_python(["export.py", "--checkpoint_file_path=%s" % (work / "untrained.ckpt"), "--file_format=ONNX",
                       "--file_name=%s" % (work / "q8" / "ssd"), "--quantize=int8", "--calibration_images=3"] + tiny)
    assert done.returncode == 0, done.stderr[-2000:]
    int8 = str(work / "q8" / "ssd_int8.onnx")
    assert "exported %s (INT8 ONNX, calibrated on 3 training image(s))" % int8 in done.stdout
    with open(int8[:-len(".onnx")] + ".json", encoding="utf-8") as stream:
        assert json.load(stream)["quantization"].startswith("int8")
    data = [arg for arg in tiny if not arg.startswith(tuple("--%s=" % key for key in SMALL))]
    scored = run_python(["eval_onnx.py", "--file_name=%s" % int8, "--output_path=%s" % (work / "q8" / "out")] + data)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert scored.stdout.splitlines()[-1].startswith("mAP: ")
    refused = run_python(["export.py", "--checkpoint_file_path=%s" % (work / "untrained.ckpt"), "--quantize=int8",
                          "--file_format=MINDIR"] + tiny)
    assert_one_line_error(refused, "--quantize=int8 needs --file_format=ONNX, got MINDIR")


def test_export_py_verify_reports_every_file_and_fails_a_broken_export(tiny, work, capsys):
    """--verify=2 compares the ONNX and INT8 files with the checkpoint (float32 within 1e-4, exit 0); an ONNX
    file whose first convolution weights were scaled by 1.1 fails verify_exports."""
    import onnx
    from onnx import numpy_helper

    from src.config import load_config
    from src.inference.verify import verify_exports

    done = run_python(["export.py", "--checkpoint_file_path=%s" % (work / "untrained.ckpt"), "--file_format=ONNX",
                       "--file_name=%s" % (work / "v" / "ssd"), "--quantize=int8", "--calibration_images=2",
                       "--verify=2"] + tiny)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(("verify:", "  "))]
    assert lines[0].startswith("verify: 2 evaluation image(s)") and len(lines) == 4
    assert "checkpoint (MindSpore)" in lines[1] and "ssd.onnx (onnxruntime)" in lines[2] and "FAILED" not in done.stdout
    assert "ssd_int8.onnx (onnxruntime)" in lines[3]
    model = onnx.load(str(work / "v" / "ssd.onnx"))
    weight = next(w for w in model.graph.initializer if numpy_helper.to_array(w).ndim == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.1, weight.name))
    broken = str(work / "v" / "broken.onnx")
    onnx.save(model, broken)
    cfg = load_config(tiny)
    lines, passed = verify_exports(cfg, str(work / "untrained.ckpt"), [broken], 2)
    assert not passed and lines[-1].endswith("FAILED")
