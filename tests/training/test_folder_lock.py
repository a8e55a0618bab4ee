"""One training run per checkpoint folder: a second one stops at once with one line naming the first,
and a lock whose holder was killed is no obstacle."""
import os
import signal
import subprocess
import sys

import pytest

from src.checkpoint import FolderLock
from src.errors import UserError
from tests.helpers import ROOT

HOLD = ("import sys, time\nfrom src.checkpoint import FolderLock\n"
        "lock = FolderLock(sys.argv[1])\nprint('locked', flush=True)\ntime.sleep(60)")


def test_second_run_stops_and_a_killed_holder_leaves_no_lock(tmp_path):
    folder = str(tmp_path / "ckpt")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, folder], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError) as err:
            FolderLock(folder)
        message = str(err.value)
        assert "in use by another training run (pid %d on " % holder.pid in message and "\n" not in message
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lock = FolderLock(folder)
    assert "pid %d " % os.getpid() in open(os.path.join(folder, ".lock")).read()
    lock.release()
    FolderLock(folder).release()
