"""The benchmark command runs end to end (a smoke run at tiny sizes: it checks that every section works
and reports, not how fast anything is)."""
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SECTIONS = {
    ("models", "ssd300", "train"): ["images_per_s", "step_s", "gflops", "share_of_peak"],
    ("models", "ssd300", "inference"): ["network_b1_images_per_s", "end_to_end_b8_images_per_s"],
    ("models", "ssd300", "deploy"): ["mindspore_mindir_b1_ms", "onnxruntime_b1_ms", "onnxruntime_speedup"],
    ("data",): ["pipeline_images_per_s", "encode_1917_anchors_us", "encode_1917_numpy_us",
                "encode_51150_per_box_loop_us", "postprocess_ms_per_image", "coco_eval_s"],
}


@pytest.mark.slow
def test_benchmark_smoke_run_reports_every_section(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "machine: " in done.stdout and "models / ssd300 / train / images_per_s" in done.stdout
    results = json.loads(out.read_text())
    assert results["machine"]["peak_fp32_gflops"] > 0
    for path, keys in SECTIONS.items():
        section = results
        for part in path:
            section = section[part]
        for key in keys:
            assert section[key]["value"] > 0, (path, key)


def test_postprocess_benchmark_returns_milliseconds():
    from benchmarks.postprocess import benchmark_postprocess

    assert benchmark_postprocess(repeats=2) > 0.0
