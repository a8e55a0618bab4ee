"""The training loop behind train.py: data, network, optimizer, checkpoints, evaluation, logging.

Log lines follow the model zoo (``epoch: 1 step: 458, loss is 3.17`` and
``epoch time: ..., per step time: ...``). Checkpoints hold the network and the optimizer state
(moments, global step), so a run killed at any moment resumes from its newest checkpoint with the
same learning rate, data order and augmentation it would have had.
"""
import itertools
import json
import math
import os
import sys
import time

import mindspore as ms
import numpy as np

from src.checkpoint import (
    FolderLock,
    checkpoint_file,
    latest_checkpoint,
    list_checkpoints,
    load_network_checkpoint,
    load_training_state,
    prune,
    save_atomic,
    save_best,
    saved_best_map,
)
from src.data.pipeline import create_ssd_dataset
from src.data.prepare import prepare_split
from src.errors import UserError
from src.inference.coco_eval import write_json_atomic
from src.inference.evaluation import evaluate_network
from src.model_settings import settings_entry
from src.models import build_ssd
from src.models.pretrained import freeze_scope, load_backbone_weights
from src.training.batch_norm_stats import recompute_batch_norm_statistics
from src.training.log import TrainingLog, log_path, read_rows
from src.training.loss import SsdWithLoss
from src.training.lr_schedule import learning_rates_from_config
from src.training.recipe import derive_schedule, fitted_anchors, recipe_notice
from src.training.train_step import TrainStep, make_optimizer, make_scaler

PREFIX = "ssd"


class TrainingStopped(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where and what was kept."""


def rank_dir(cfg, rank, group_size):
    """Checkpoints go to checkpoint_path, or checkpoint_path/ckpt_<rank> for every rank when distributed."""
    return cfg.checkpoint_path if group_size == 1 else os.path.join(cfg.checkpoint_path, "ckpt_%d" % rank)


def load_pretrained(network, cfg):
    """Start from ``pre_trained``; ``filter_weight`` drops the heads (e.g. for another num_classes)."""
    drop = cfg.checkpoint_filter_list if cfg.filter_weight else ()
    loaded, missing = load_network_checkpoint(network, cfg.pre_trained, drop)
    print("loaded %d parameters from %s%s" % (len(loaded), cfg.pre_trained,
                                             ", left %d at their initial values" % len(missing) if missing else ""))


def freeze(network, part):
    if part in ("", "None", None):
        return
    for param in network.trainable_params():
        if param.name.startswith(part + ".") or ("." + part + ".") in param.name:
            param.requires_grad = False


def previous_best_map(ckpt_dir, log_file, start_epoch):
    """The best mAP a resumed run has to beat: the one ``best_map.ckpt`` records, else (a file written
    before it recorded one) the best evaluation in the training log up to ``start_epoch``, else -1."""
    saved = saved_best_map(ckpt_dir)
    if saved is not None:
        return saved
    logged = [float(row[6]) for row in read_rows(log_file) if row[6] and int(row[0]) <= start_epoch]
    return max(logged, default=-1.0)


class Trainer:
    """Holds what one training run needs; ``run()`` trains from the right epoch to ``epoch_size``."""

    def __init__(self, cfg, rank=0, group_size=1):
        self.cfg, self.rank, self.group_size = cfg, rank, group_size
        self.files = prepare_split(cfg, True)["files"]
        notice = recipe_notice(cfg) if rank == 0 else ""
        if notice:
            print(notice, file=sys.stderr, flush=True)
        cfg = fitted_anchors(cfg, announce=rank == 0)
        self.steps_per_epoch = create_ssd_dataset(cfg, self.files, True, cfg.batch_size, rank, group_size,
                                                  num_workers=1).get_dataset_size()
        if self.steps_per_epoch == 0:
            raise UserError("the training set has fewer images than batch_size=%d (times %d devices)"
                             % (cfg.batch_size, group_size))
        self.cfg = cfg = self.derived_settings(cfg)
        self.network = build_ssd(cfg)
        load_backbone_weights(self.network, cfg)
        if cfg.pre_trained:
            load_pretrained(self.network, cfg)
        freeze(self.network, freeze_scope(self.network, cfg.freeze_layer))
        self.net_with_loss = SsdWithLoss(self.network, cfg.num_classes, cfg.gamma, cfg.alpha)
        self.learning_rates = learning_rates_from_config(cfg, self.steps_per_epoch)
        self.optimizer = make_optimizer(self.net_with_loss, self.learning_rates, cfg.momentum, cfg.weight_decay)
        scaler, self.dynamic = make_scaler(cfg.device_target, cfg.loss_scale, cfg.get("use_float16", False))
        clip_norm = cfg.global_norm if cfg.use_global_norm else None
        self.step = TrainStep(self.net_with_loss, self.optimizer, scaler, self.dynamic, group_size > 1, clip_norm)
        self.ckpt_dir = rank_dir(cfg, rank, group_size)
        self.lock = FolderLock(self.ckpt_dir)
        self.best_map = -1.0
        self.start_epoch = self.restore()
        self.log = TrainingLog(log_path(cfg) if rank == 0 else None, self.start_epoch, self.steps_per_epoch,
                               self.learning_rates)

    def derived_settings(self, cfg):
        """``cfg`` with the epochs, warm-up and learning rate the run derives from its data
        (src/training/recipe.py), each change printed once (rank 0)."""
        cfg, lines = derive_schedule(cfg, self.steps_per_epoch, self.group_size)
        for line in lines if self.rank == 0 else []:
            print(line, flush=True)
        return cfg

    def restore(self):
        """Epoch to start after: the newest readable checkpoint when resuming (one that cannot be read, e.g.
        truncated by a power loss, is named in a warning and the one before it is used), else
        pre_trained_epoch_size."""
        for epoch, path in reversed(list_checkpoints(self.ckpt_dir, PREFIX) if self.cfg.resume else []):
            try:
                load_training_state(self.step, path)
            except ValueError as err:
                print("warning: %s; resuming from the checkpoint before it" % err, file=sys.stderr, flush=True)
                continue
            self.best_map = previous_best_map(self.ckpt_dir, log_path(self.cfg), epoch)
            print("resuming from %s (epoch %d)" % (path, epoch))
            return epoch
        epoch = int(self.cfg.pre_trained_epoch_size) if self.cfg.pre_trained else 0
        self.optimizer.global_step.set_data(ms.Tensor([epoch * self.steps_per_epoch], ms.int32))
        return epoch

    def save(self, epoch):
        path = save_atomic(self.step, checkpoint_file(self.ckpt_dir, PREFIX, epoch, self.steps_per_epoch),
                           append=settings_entry(self.cfg))
        prune(self.ckpt_dir, PREFIX, self.cfg.keep_checkpoint_max)
        return path

    def train_epoch(self, epoch):
        cfg = self.cfg
        seen = [] if cfg.record_img_ids else None
        dataset = create_ssd_dataset(cfg, self.files, True, cfg.batch_size, self.rank, self.group_size, epoch,
                                     seen=seen)
        start, loss_value = time.time(), float("nan")
        self.log.begin_epoch()
        for index, (image, box, label, num_match) in enumerate(dataset.create_tuple_iterator(num_epochs=1)):
            loss, finite = self.step(image, box, label, num_match)
            loss_value = float(loss.asnumpy())
            if not math.isfinite(loss_value) or (not self.dynamic and not bool(finite.asnumpy())):
                last = latest_checkpoint(self.ckpt_dir, PREFIX)[1]
                raise TrainingStopped("loss is %s at epoch %d step %d: training stopped; the last good checkpoint "
                                      "is %s" % (loss_value, epoch, index + 1, last or "none (none was saved yet)"))
            if (index + 1) % cfg.log_interval == 0 or index + 1 == self.steps_per_epoch:
                print("epoch: %d step: %d, loss is %s" % (epoch, index + 1, loss_value), flush=True)
                self.log.step(epoch, index + 1, loss_value)
        elapsed = (time.time() - start) * 1000
        print("epoch time: %s, per step time: %s" % (elapsed, elapsed / self.steps_per_epoch), flush=True)
        if seen is not None:
            self.write_img_ids(epoch, seen)
        return loss_value

    def write_img_ids(self, epoch, seen):
        """record_img_ids: add this epoch's image ids to output_path/img_ids_<rank>.json (a file left by a
        run with another number of devices is started afresh)."""
        path = os.path.join(self.cfg.output_path, "img_ids_%d.json" % self.rank)
        record = {"rank": self.rank, "group_size": self.group_size, "epochs": {}}
        if os.path.isfile(path):
            with open(path) as stream:
                earlier = json.load(stream)
            record = earlier if earlier.get("group_size") == self.group_size else record
        record["epochs"][str(epoch)] = sorted(seen)
        write_json_atomic(path, record)

    def evaluate(self, progress=False, analysis=False):
        """Evaluate the network on the evaluation split: (mAP, stats, text). ``analysis`` (the final
        evaluation) also writes output_path/eval; in-training evaluations write per_class.csv only."""
        info = prepare_split(self.cfg, False)
        dataset = create_ssd_dataset(self.cfg, info["files"], False, self.cfg.eval_batch_size)
        self.network.set_train(False)
        result = evaluate_network(self.network, self.cfg, dataset, info["gt_json"], self.cfg.output_path, progress,
                                  analysis)
        self.network.set_train(True)
        return result

    def evaluation_due(self, epoch):
        cfg = self.cfg
        return (bool(cfg.run_eval) and self.rank == 0 and epoch >= cfg.eval_start_epoch
                and (epoch - cfg.eval_start_epoch) % cfg.eval_interval == 0)

    def maybe_evaluate(self, epoch):
        cfg = self.cfg
        if not self.evaluation_due(epoch):
            return
        mean_ap = self.evaluate()[0]
        print("epoch: %d, mAP: %s" % (epoch, mean_ap), flush=True)
        self.log.evaluation(epoch, mean_ap)
        if cfg.save_best_ckpt and mean_ap > self.best_map:
            self.best_map = mean_ap
            save_best(self.network, self.ckpt_dir, mean_ap, epoch, settings_entry(cfg))

    def refresh_batch_norm(self, epoch):
        """BatchNorm statistics for the current weights (src/training/batch_norm_stats.py), from the first
        ``bn_stat_batches`` batches of this epoch's training data, so a resumed run gets the same."""
        count = int(self.cfg.bn_stat_batches)
        if count <= 0:
            return
        cfg = self.cfg
        dataset = create_ssd_dataset(cfg, self.files, True, cfg.batch_size, self.rank, self.group_size, epoch)
        batches = itertools.islice(dataset.create_tuple_iterator(num_epochs=1), count)
        recompute_batch_norm_statistics(self.network, (batch[0] for batch in batches))

    def run(self):
        cfg = self.cfg
        self.network.set_train(True)
        for epoch in range(self.start_epoch + 1, cfg.epoch_size + 1):
            self.train_epoch(epoch)
            saving = epoch % cfg.save_checkpoint_epochs == 0 or epoch == cfg.epoch_size
            if saving or self.evaluation_due(epoch):
                self.refresh_batch_norm(epoch)
            if saving:
                self.save(epoch)
            self.maybe_evaluate(epoch)
        return np.float32(self.best_map)
