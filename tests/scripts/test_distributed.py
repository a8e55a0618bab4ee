"""Distributed training: the launch scripts' argument checks, and a real msrun run with two CPU workers.

The msrun test (slow) trains one step per rank on a tiny shapes set with a 160x160 network and asks the
trainer to record the image ids each rank read (``record_img_ids``): the two ranks must have read the
two disjoint halves of the training set and must end with identical trainable weights.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT

SCRIPTS = os.path.join(ROOT, "scripts")
TINY_NETWORK = {"img_shape": "[160,160]", "feature_size": "[10,5,3,2,1,1]",
                "steps": "[16,32,53.333333,80,160,160]", "num_ssd_boxes": 540}


def run_script(name, args, cwd, timeout=60, **env):
    """``bash scripts/<name> args`` from ``cwd`` (not the repository: scripts must find it themselves),
    with this test's python (and its msrun) first on PATH, as msrun requires."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(["bash", os.path.join(SCRIPTS, name)] + [str(a) for a in args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PATH=path, **env))


@pytest.fixture
def rank_table(tmp_path):
    """A version 1.0 HCCL rank table listing two devices of one server."""
    devices = [{"device_id": str(i), "device_ip": "192.98.92.%d" % (100 + i), "rank_id": str(i)} for i in range(2)]
    table = {"version": "1.0", "server_count": "1", "status": "completed",
             "server_list": [{"server_id": "10.0.0.1", "device": devices, "host_nic_ip": "reserve"}]}
    path = tmp_path / "hccl_2p.json"
    path.write_text(json.dumps(table))
    return str(path)


TRAIN = ["500", "0.2", "coco"]
BAD_ARGUMENTS = [
    ("run_distribute_train.sh", ["8", "500"], {}, "expected 6 or 8 arguments"),
    ("run_distribute_train.sh", ["eight"] + TRAIN + ["TABLE", "default_config.yaml"], {},
     "DEVICE_NUM must be an integer from 1 to 8, got 'eight'"),
    ("run_distribute_train.sh", ["8"] + TRAIN + ["/nonexistent/hccl_8p.json", "default_config.yaml"], {},
     "RANK_TABLE_FILE not found: '/nonexistent/hccl_8p.json'"),
    ("run_distribute_train.sh", ["8"] + TRAIN + ["TABLE", "default_config.yaml"], {},
     "RANK_TABLE_FILE lists 2 devices but DEVICE_NUM is 8"),
    ("run_distribute_train.sh", ["2"] + TRAIN + ["TABLE", "default_config.yaml", "/nonexistent.ckpt", "10"], {},
     "PRE_TRAINED not found"),
    ("run_distribute_train_gpu.sh", ["8"] + TRAIN, {}, "expected 5 or 7 arguments"),
    ("run_distribute_train_gpu.sh", ["8x"] + TRAIN + ["default_config.yaml"], {}, "DEVICE_NUM must be an integer"),
    ("run_distribute_train_gpu.sh", ["8"] + TRAIN + ["nonexistent.yaml"], {}, "CONFIG_PATH not found"),
    ("run_distribute_train_msrun.sh", ["2", "1", "fast", "coco", "default_config.yaml"], {}, "LR must be a positive"),
    ("run_distribute_train_msrun.sh", ["2", "1", "0.1", "kitti", "default_config.yaml"], {},
     "DATASET must be coco, voc or other"),
    ("run_distribute_train_msrun.sh", ["2", "0", "0.1", "coco", "default_config.yaml"], {}, "EPOCH_SIZE must be"),
    ("run_distribute_train_msrun.sh", ["2", "1", "0.1", "coco", "default_config.yaml"], {"DEVICE_TARGET": "TPU"},
     "DEVICE_TARGET must be Ascend, GPU or CPU"),
    ("run_standalone_train.sh", ["0", "1", "0.1", "coco"], {}, "expected 5 or 7 arguments"),
    ("run_eval.sh", ["coco", "/nonexistent/ssd.ckpt", "0", "default_config.yaml"], {},
     "CHECKPOINT_PATH not found: '/nonexistent/ssd.ckpt'"),
]


@pytest.mark.parametrize("script, args, env, message", BAD_ARGUMENTS)
def test_bad_arguments_are_one_line(tmp_path, rank_table, script, args, env, message):
    args = [rank_table if a == "TABLE" else a for a in args]
    done = run_script(script, args, tmp_path, **env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and done.stdout == ""
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert ("usage: bash %s [" % script) in lines[0]


def test_help_prints_usage(tmp_path):
    done = run_script("run_distribute_train_msrun.sh", ["--help"], tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: bash run_distribute_train_msrun.sh [DEVICE_NUM]")


def free_port():
    """A TCP port nobody listens on now, for msrun's scheduler."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def trainable_names():
    """Names of the trainable parameters of the tiny network, as they appear in a checkpoint."""
    from src.config import load_config
    from src.models import build_ssd
    network = build_ssd(load_config(["--%s=%s" % kv for kv in TINY_NETWORK.items()]))
    return ["network." + p.name for p in network.trainable_params()]


@pytest.mark.slow
def test_msrun_two_cpu_workers_average_gradients_over_disjoint_halves(tmp_path):
    import mindspore as ms

    from src.data.shapes import generate_shapes

    generate_shapes(str(tmp_path / "shapes"), num_train=8, num_val=4, seed=5)
    values = dict(TINY_NETWORK, coco_root=tmp_path / "shapes", mindrecord_dir=tmp_path / "mr",
                  output_path=tmp_path / "out", checkpoint_path=tmp_path / "ckpt", batch_size=4, log_interval=1,
                  warmup_epochs=1, final_eval=False, mode="PYNATIVE", record_img_ids=True)
    args = ["2", "1", "0.01", "coco", "default_config.yaml"] + ["--%s=%s" % kv for kv in values.items()]
    done = run_script("run_distribute_train_msrun.sh", args, tmp_path, timeout=600, DEVICE_TARGET="CPU",
                      MASTER_PORT=str(free_port()), LOG_DIR=str(tmp_path / "logs"))
    logs = [(tmp_path / "logs" / ("worker_%d.log" % rank)).read_text() for rank in (0, 1)]
    assert done.returncode == 0, done.stderr[-2000:] + "".join(log[-2000:] for log in logs)
    assert all("epoch: 1 step: 1, loss is " in log and "step: 2," not in log for log in logs)

    with open(str(tmp_path / "shapes" / "annotations" / "instances_train2017.json")) as stream:
        all_ids = {image["id"] for image in json.load(stream)["images"]}
    read = []
    for rank in (0, 1):
        with open(str(tmp_path / "out" / ("img_ids_%d.json" % rank))) as stream:
            record = json.load(stream)
        assert (record["rank"], record["group_size"]) == (rank, 2)
        read.append(set(record["epochs"]["1"]))
    assert len(read[0]) == len(read[1]) == 4 and not read[0] & read[1] and read[0] | read[1] == all_ids

    states = [ms.load_checkpoint(str(tmp_path / "ckpt" / ("ckpt_%d" % rank) / "ssd-1_1.ckpt")) for rank in (0, 1)]
    names = trainable_names()
    assert names and all(name in states[0] for name in names)
    for name in names:
        np.testing.assert_array_equal(states[0][name].asnumpy(), states[1][name].asnumpy(), err_msg=name)
    moments = [v.asnumpy() for k, v in states[0].items() if k.startswith("moments.")]
    assert moments and any(np.any(m != 0) for m in moments), "no update was applied"
