"""The benchmark's sections: one function per group of figures, each returning
``{name: {"value": number, "noise": spread/median, ...}}``."""
import os
import time

import numpy as np

from benchmarks.encode import run as encode_run
from benchmarks.flops import conv_flops
from benchmarks.timing import measure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def figure(value, noise=0.0, unit="", what=""):
    """One figure; ``value`` None means not measurable here (e.g. no C++ compiler); ``what`` says exactly
    what was timed or counted, and is printed and written beside the value."""
    return {"value": None if value is None else float(value), "noise": float(noise), "unit": unit, "what": what}


def fake_batch(cfg, batch):
    """Random images with real anchor targets for a few random boxes per image."""
    from src.anchors import default_boxes_yxhw, default_boxes_yxyx
    from src.box_coder import SsdTargetEncoder
    rng = np.random.default_rng(0)
    encoder = SsdTargetEncoder(default_boxes_yxhw(cfg), default_boxes_yxyx(cfg), cfg.match_threshold,
                               cfg.prior_scaling)
    images = rng.standard_normal((batch, 3) + tuple(cfg.img_shape)).astype(np.float32)
    targets = []
    for _ in range(batch):
        corner = rng.uniform(0, 0.6, (4, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(0.1, 0.4, (4, 2))], 1).astype(np.float32)
        targets.append(encoder(boxes, rng.integers(1, cfg.num_classes, 4)))
    loc, label, num = (np.stack(t) for t in zip(*targets))
    return images, loc, label, num.astype(np.int32)


def training_step(cfg, batch):
    """(step, inputs, network): one compiled training step of the model of ``cfg`` (forward, loss, backward,
    Momentum update) and a random batch of ``batch`` images with real anchor targets."""
    import mindspore as ms

    from src.models import build_ssd
    from src.training.loss import SsdWithLoss
    from src.training.train_step import TrainStep, make_optimizer, make_scaler

    network = build_ssd(cfg)
    net_with_loss = SsdWithLoss(network, cfg.num_classes, cfg.gamma, cfg.alpha)
    optimizer = make_optimizer(net_with_loss, np.full(1000, 0.01, np.float32), cfg.momentum, cfg.weight_decay)
    scaler, dynamic = make_scaler(cfg.device_target, cfg.loss_scale, cfg.get("use_float16", False))
    step = TrainStep(net_with_loss, optimizer, scaler, dynamic)
    network.set_train(True)
    return step, [ms.Tensor(x) for x in fake_batch(cfg, batch)], network


def train_figures(cfg, batch, repeats):
    step, inputs, network = training_step(cfg, batch)
    timing = measure(lambda: step(*inputs)[0].asnumpy(), repeats=repeats, warmup=2)
    flops = conv_flops(network, (3,) + tuple(cfg.img_shape))
    seconds = timing["median"]
    step_what = "one training step at batch %d: forward, loss, backward, optimizer update" % batch
    return {"images_per_s": figure(batch / seconds, timing["noise"], "img/s", step_what),
            "step_s": figure(seconds, timing["noise"], "s", step_what),
            "gflops": figure(3 * flops * batch / seconds / 1e9, timing["noise"], "GFLOP/s",
                             "assumed 3 x the forward convolution FLOPs per image (forward, input gradient, "
                             "weight gradient), divided by the step time"),
            "forward_gflop_per_image": figure(flops / 1e9, 0.0, "GFLOP", "convolution FLOPs (2 x multiply-adds) "
                                                                         "of one forward pass of one image")}, network


def inference_figures(cfg, network, repeats, batches=(1, 8)):
    """Images/s at each batch size of three nested stages: the network alone (raw box offsets and class
    logits), the detector (the network, box decoding and the sigmoid, in one graph: SsdDetector), and end
    to end (the detector, then score threshold, per-class NMS and top ``max_boxes`` for each image on the
    host)."""
    import mindspore as ms

    from src.inference.detector import SsdDetector
    from src.inference.postprocess import detect

    network.set_train(False)
    detector = SsdDetector(network, cfg)
    out = {}
    for batch in batches:
        shape = (batch, 3) + tuple(cfg.img_shape)
        image = ms.Tensor(np.random.default_rng(1).standard_normal(shape).astype(np.float32))

        def end_to_end():
            boxes, scores = detector(image)
            boxes, scores = boxes.asnumpy(), scores.asnumpy()
            for i in range(batch):
                detect(boxes[i], scores[i], cfg.min_score, cfg.nms_threshold, cfg.max_boxes)
        stages = [("network", lambda: [o.asnumpy() for o in network(image)],
                   "the network alone (box offsets and class logits, no decoding)"),
                  ("detector", lambda: [o.asnumpy() for o in detector(image)],
                   "the network + box decoding + sigmoid (SsdDetector, one graph)"),
                  ("end_to_end", end_to_end,
                   "the detector + score threshold, per-class NMS and top max_boxes per image (numpy)")]
        for name, run, what in stages:
            timing = measure(run, repeats=repeats, warmup=2)
            out["%s_b%d_images_per_s" % (name, batch)] = figure(batch / timing["median"], timing["noise"], "img/s",
                                                                "%s, batch %d" % (what, batch))
    return out


def deploy_figures(cfg, repeats):
    """Milliseconds per image at batch 1 of the exported detector (plain formulation, untrained weights)
    run by MindSpore from the MINDIR (``nn.GraphCell``) and by onnxruntime from the ONNX file (CPU),
    and the seconds each export takes (one run, compilation included)."""
    import tempfile

    import mindspore as ms

    from src.inference.detector import SsdDetector
    from src.inference.export import export_detector, exportable_config
    from src.inference.quantize import quantize_onnx
    from src.inference.runtimes import OnnxDetector, load_mindir
    from src.models import build_ssd

    network = build_ssd(exportable_config(cfg))
    network.set_train(False)
    detector = SsdDetector(network, cfg)
    image = np.random.default_rng(2).standard_normal((1, 3) + tuple(cfg.img_shape)).astype(np.float32)
    out, paths = {}, {}
    with tempfile.TemporaryDirectory(prefix="ssd_deploy_") as tmp:
        for file_format in ("MINDIR", "ONNX"):
            start = time.perf_counter()
            paths[file_format] = export_detector(detector, cfg, os.path.join(tmp, "ssd"), file_format)
            out["export_%s_s" % file_format.lower()] = figure(time.perf_counter() - start, 0.0, "s",
                                                              "one export, compilation included")
        graph, tensor = load_mindir(paths["MINDIR"]), ms.Tensor(image)
        mindspore_run = measure(lambda: [t.asnumpy() for t in graph(tensor)], repeats=repeats, warmup=2)
        session = OnnxDetector(paths["ONNX"])
        onnx_run = measure(lambda: session(image), repeats=max(repeats, 3), warmup=2)
        calibration = np.random.default_rng(3).standard_normal((8, 1, 3) + tuple(cfg.img_shape)).astype(np.float32)
        int8 = OnnxDetector(quantize_onnx(paths["ONNX"], os.path.join(tmp, "ssd_int8.onnx"), list(calibration)))
        int8_run = measure(lambda: int8(image), repeats=max(repeats, 3), warmup=2)
    what = "the exported detector (network + decoding + sigmoid, plain formulation), batch 1, no NMS: "
    out["mindspore_mindir_b1_ms"] = figure(1000 * mindspore_run["median"], mindspore_run["noise"], "ms",
                                           what + "MindSpore from the MINDIR (nn.GraphCell)")
    out["onnxruntime_b1_ms"] = figure(1000 * onnx_run["median"], onnx_run["noise"], "ms",
                                      what + "onnxruntime from the ONNX file (CPU)")
    out["onnxruntime_speedup"] = figure(mindspore_run["median"] / onnx_run["median"], 0.0, "x",
                                        "mindspore_mindir_b1_ms / onnxruntime_b1_ms")
    out["onnxruntime_int8_b1_ms"] = figure(1000 * int8_run["median"], int8_run["noise"], "ms",
                                           what + "onnxruntime from the INT8 file of export.py --quantize=int8 "
                                           "(static, QDQ, U8S8; calibrated on 8 random inputs: speed only)")
    out["int8_speedup"] = figure(onnx_run["median"] / int8_run["median"], 0.0, "x",
                                 "onnxruntime_b1_ms / onnxruntime_int8_b1_ms, the same run")
    return out


def model_figures(cfg, batch, mode, repeats, infer_batches=(1, 8), train=True):
    """Training (unless ``train`` is False) and inference figures of one model."""
    from src.device import set_mode
    from src.models import build_ssd
    set_mode(mode)
    result = {"input": "%dx%d" % tuple(cfg.img_shape), "batch": batch, "mode": mode}
    if train:
        reset = reset_peak_rss()
        result["train"], network = train_figures(cfg, batch, repeats)
        result["peak_rss_train_gib"] = figure(peak_rss_gib(), 0.0, "GiB", (
            "high-water mark of the process's resident memory while this model was built and trained (reset "
            "before it through /proc/self/clear_refs)" if reset else
            "high-water mark of the process's resident memory after this model's training figures (this "
            "system cannot reset it: includes what ran before)"))
    else:
        network = build_ssd(cfg)
    result["inference"] = inference_figures(cfg, network, repeats, infer_batches)
    return result


def reset_peak_rss():
    """Sets the process's resident-memory high-water mark to its current size (Linux: ``5`` written to
    /proc/self/clear_refs); False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_gib():
    """The process's resident-memory high-water mark in GiB: VmHWM of /proc/self/status (which
    :func:`reset_peak_rss` resets), else getrusage's ru_maxrss."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def data_figures(cfg, tmp, repeats, smoke=False):
    """Pipeline images/s on a generated shapes set, anchor encoding, post-processing, COCO evaluation."""
    from benchmarks.postprocess import benchmark_postprocess
    from src.data.convert import ensure_mindrecord
    from src.data.shapes import generate_shapes

    count = 16 if smoke else 64
    generate_shapes(os.path.join(tmp, "shapes"), num_train=count, num_val=count // 4, seed=0)
    local = cfg.replace(coco_root=os.path.join(tmp, "shapes"), mindrecord_dir=os.path.join(tmp, "mr"))
    files = ensure_mindrecord(local, True)["files"]
    encode = encode_run(cfg, repeats=max(3, repeats), number=20 if smoke else 200)
    post = [benchmark_postprocess(repeats=5 if smoke else 50) for _ in range(max(1, repeats))]
    return {**pipeline_figures(local, files, count, repeats),
            **tree_pipeline_figures(tmp, repeats),
            **encode_figures(encode),
            "nms_ms_per_image": figure(np.median(post), (max(post) - min(post)) / np.median(post), "ms",
                                       "score threshold, per-class NMS and top max_boxes of one image's decoded "
                                       "boxes and scores (1917 boxes x 81 classes; decoding and the sigmoid run "
                                       "in the network's graph and are not included)"),
            **coco_eval_figures(local, tmp, repeats)}


def tree_pipeline_figures(tmp, repeats):
    """The same pipeline figures on real photographs: the tree set's 64 training tiles (src/data/trees.py)
    through config/custom.yaml's pipeline (384x384, fitted-size layout, augmentation with the overhead
    symmetries). Figures of None, with the reason, when the deepforest data files are not installed."""
    from src.config import load_config
    from src.data.convert import ensure_mindrecord
    from src.data.trees import build_trees
    from src.errors import UserError

    try:
        root = build_trees(os.path.join(tmp, "trees"))
    except UserError as err:
        missing = figure(None, 0.0, "img/s", "not measured: %s" % err)
        return {"pipeline_trees_epoch_images_per_s": missing, "pipeline_trees_steady_images_per_s": missing}
    cfg = load_config(["--config_path=%s" % os.path.join(ROOT, "config", "custom.yaml"),
                       "--voc_root=%s" % os.path.join(tmp, "trees"), "--classes=[background,tree]", "--num_classes=2",
                       "--mindrecord_dir=%s" % os.path.join(tmp, "mr_trees"), "--overhead=True"])
    files = ensure_mindrecord(cfg, True)["files"]
    count = root["splits"]["train"]["images"]
    figures = pipeline_figures(cfg, files, count, repeats, images="real aerial tree tiles (320x320 JPEG) at 384x384")
    return {key.replace("pipeline_", "pipeline_trees_"): value for key, value in figures.items()}


def pipeline_figures(cfg, files, count, repeats, batch=8, images="shapes images"):
    """The training pipeline (read, decode, augment, resize, match and encode, batch) over ``count``
    images. The trainer makes a fresh dataset, and so fresh workers, for every epoch (its shuffle and
    augmentation depend on the epoch); so does each timed epoch here. Two figures: the whole epoch, worker
    start included, and the images/s after its first batch arrived (the pipeline once running)."""
    from src.data.pipeline import create_ssd_dataset

    epochs, steady = [], []
    for run in range(repeats + 1):
        start = time.perf_counter()
        first = None
        for _ in create_ssd_dataset(cfg, files, True, batch).create_tuple_iterator(num_epochs=1, output_numpy=True):
            first = first or time.perf_counter()
        end = time.perf_counter()
        if run:  # the first run is the warm-up
            epochs.append(count / (end - start))
            steady.append((count - batch) / (end - first))
    workers = max(1, min(int(cfg.num_parallel_workers), os.cpu_count() or 1))
    what = "the training pipeline (read, decode, augment, resize, match + encode, batch %d; %d workers) over %d " \
           "%s" % (batch, workers, count, images)
    return {"pipeline_epoch_images_per_s": figure(np.median(epochs), spread(epochs), "img/s",
                                                  what + ", one epoch from a fresh dataset as the trainer runs "
                                                         "it (worker start included)"),
            "pipeline_steady_images_per_s": figure(np.median(steady), spread(steady), "img/s",
                                                   what + ", from the first batch to the last (worker start "
                                                          "excluded)")}


def spread(values):
    """(max - min) / median of a list of figures."""
    return float((max(values) - min(values)) / np.median(values))


def encode_figures(encode):
    """Matching + encoding per image for each anchor count measured: the compiled path the pipeline runs
    (None without a C++ compiler), numpy, and a per-box loop."""
    out = {}
    for key, row in encode.items():
        anchors = key.split()[0]
        compiled = row.get("compiled_us")
        what = "matching + encoding one image's 5 boxes against %s anchors: " % anchors
        out["encode_%s_anchors_us" % anchors] = figure(compiled, row.get("compiled_noise", 0.0), "us",
                                                       what + "the compiled matcher the pipeline runs")
        out["encode_%s_numpy_us" % anchors] = figure(row["vectorised_us"], row["vectorised_noise"], "us",
                                                     what + "the numpy matcher")
        out["encode_%s_per_box_loop_us" % anchors] = figure(row["per_box_loop_us"], row["per_box_loop_noise"], "us",
                                                            what + "a per-box Python loop (the model zoo's way)")
    return out


def detector_like_detections(gt, rng, per_image=100):
    """``per_image`` detections per image, as a detector at ``max_boxes: 100`` gives them: the ground truth
    slightly shifted, then random boxes of random classes with lower scores."""
    categories = [c["id"] for c in gt["categories"]]
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random()),
                   "bbox": [v + float(rng.normal()) for v in a["bbox"]]} for a in gt["annotations"]]
    for image in gt["images"]:
        count = per_image - sum(1 for d in detections if d["image_id"] == image["id"])
        corner = rng.random((count, 2)) * [image["width"], image["height"]]
        size = rng.random((count, 2)) * 0.3 * [image["width"], image["height"]] + 2
        detections += [{"image_id": image["id"], "category_id": int(rng.choice(categories)),
                        "score": float(score), "bbox": [x, y, w, h]}
                       for (x, y), (w, h), score in zip(corner.tolist(), size.tolist(), 0.5 * rng.random(count))]
    return detections


def coco_eval_figures(cfg, tmp, repeats):
    """Seconds pycocotools takes for 100 shapes validation images with 100 detections each (see
    :func:`detector_like_detections`), and the extra seconds of the full report eval.py writes (per-class
    table and CSV, confusion matrix, error breakdown, the three pictures)."""
    import json

    from src.data.convert import ensure_mindrecord
    from src.data.shapes import generate_shapes
    from src.inference.coco_eval import evaluate_detections
    from src.inference.evaluation import report_evaluation

    generate_shapes(os.path.join(tmp, "shapes_eval"), num_train=1, num_val=100, seed=1)
    local = cfg.replace(coco_root=os.path.join(tmp, "shapes_eval"), mindrecord_dir=os.path.join(tmp, "mr_eval"),
                        plots=True, metric="coco", protocol="standard")
    gt_json = ensure_mindrecord(local, False)["gt_json"]
    with open(gt_json) as stream:
        gt = json.load(stream)
    detections = detector_like_detections(gt, np.random.default_rng(0))
    out = os.path.join(tmp, "eval")
    plain = measure(lambda: evaluate_detections(gt_json, detections, out), repeats, warmup=1)
    full = measure(lambda: report_evaluation(local, gt_json, detections, out, analysis=True), repeats, warmup=1)
    what = "%d images with %d detections, after one warm-up run" % (len(gt["images"]), len(detections))
    return {"coco_eval_s": figure(plain["median"], plain["noise"], "s",
                                  "pycocotools' evaluation (load, evaluate, accumulate, summarise) of " + what),
            "eval_report_extra_s": figure(full["median"] - plain["median"], full["noise"], "s",
                                          "what eval.py adds to that evaluation (per-class table and CSV, "
                                          "confusion matrix, error breakdown with its AP50 gains, PR curves, "
                                          "confusion and error pictures), for " + what)}
