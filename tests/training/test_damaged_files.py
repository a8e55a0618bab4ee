"""Files that are damaged or cannot be written: a checkpoint save that hits a file size limit (a full
disk) stops with one line and leaves the earlier checkpoints intact; a truncated newest checkpoint
makes resume fall back to the one before it (tests/training/test_train.py runs that end to end)."""
import os
import subprocess
import sys

from tests.helpers import ROOT

SAVE_UNDER_LIMIT = """
import resource, sys
from mindspore import nn
from src.checkpoint import save_atomic
from src.errors import UserError
save_atomic(nn.Dense(4, 4), sys.argv[1] + "/ssd-1_2.ckpt")
resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
try:
    save_atomic(nn.Dense(2000, 2000), sys.argv[1] + "/ssd-2_2.ckpt")
except UserError as err:
    print("error: %s" % err)
"""


def test_full_disk_during_a_save_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path):
    done = subprocess.run([sys.executable, "-c", SAVE_UNDER_LIMIT, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT, GLOG_v="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write checkpoint %s/ssd-2_2.ckpt (" % tmp_path)
    assert "File too large" in lines[0] and lines[0].endswith("the checkpoints written before it are intact")
    assert sorted(os.listdir(str(tmp_path))) == ["ssd-1_2.ckpt"]
    import mindspore as ms
    assert sorted(ms.load_checkpoint(str(tmp_path / "ssd-1_2.ckpt"))) == ["bias", "weight"]
