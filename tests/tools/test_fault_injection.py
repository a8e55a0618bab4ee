"""The fault-injection command at a tiny size: four SIGKILLs (during a step, a BatchNorm recompute, a
checkpoint write and the final evaluation), each followed by the same command, end in the same weights
and the same training log as an uninterrupted run."""
import json

import pytest

from tools import fault_injection


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, capsys):
    status = fault_injection.main(["--kills", "4", "--images", "8", "--epochs", "2", "--batch_size", "4",
                                   "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "fault_injection.json").read_text())
    assert status == 0, summary
    assert summary["kills"] == 4 and summary["identical_weights"] and summary["identical_log"]
    assert summary["kills_by_phase"] == {"step": 1, "batch_norm": 1, "checkpoint_write": 1, "final_eval": 1}
    assert summary["kills_during_checkpoint_write"] >= 1 and summary["log_rows"] == [4, 4]
    assert "final weights identical, training log identical" in capsys.readouterr().out
