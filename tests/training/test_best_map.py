"""best_map.ckpt across resumes: the best checkpoint records the mAP that made it the best, and a
resumed run starts from that figure (else from the training log), not from -1, so it cannot replace
the best network with a worse one."""
import mindspore as ms
from mindspore import nn

from src.checkpoint import BEST_FILE, load_network_checkpoint, save_atomic, save_best, saved_best_map
from src.training.log import TrainingLog
from src.training.trainer import previous_best_map


def test_best_checkpoint_records_its_map_and_still_loads(tmp_path):
    net = nn.Dense(3, 2)
    save_best(net, str(tmp_path), 0.5583262934322599, 4)
    assert saved_best_map(str(tmp_path)) == 0.5583262934322599
    loaded, missing = load_network_checkpoint(nn.Dense(3, 2), str(tmp_path / BEST_FILE))
    assert sorted(loaded) == ["bias", "weight"] and not missing
    # MindSpore's own loader (what the model zoo's scripts call) skips the extra entries.
    params_not_loaded, ckpt_not_loaded = ms.load_param_into_net(nn.Dense(3, 2), ms.load_checkpoint(
        str(tmp_path / BEST_FILE)))
    assert not params_not_loaded and sorted(ckpt_not_loaded) == ["best_map", "best_map_epoch"]


def test_resumed_run_starts_from_the_recorded_best(tmp_path):
    log_file = str(tmp_path / "train_log.csv")
    log = TrainingLog(log_file, 0, 10, [0.1] * 50)
    for epoch, mean_ap in ((1, 0.2), (2, 0.35), (3, 0.3), (4, 0.5)):
        log.evaluation(epoch, mean_ap)
    assert previous_best_map(str(tmp_path / "none"), str(tmp_path / "missing.csv"), 3) == -1.0
    # A best checkpoint from before it recorded its mAP: the log's best up to the resumed epoch.
    save_atomic(nn.Dense(3, 2), str(tmp_path / BEST_FILE))
    assert saved_best_map(str(tmp_path)) is None
    assert previous_best_map(str(tmp_path), log_file, 3) == 0.35
    save_best(nn.Dense(3, 2), str(tmp_path), 0.35, 2)
    assert previous_best_map(str(tmp_path), log_file, 3) == 0.35
