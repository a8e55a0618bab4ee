"""Train an SSD detector: python train.py [--config_path=FILE] [--key=value ...]

With no arguments it trains SSD300-MobileNetV2 on the built-in shapes set (made on first use), then
evaluates it and prints the COCO mAP. ``--only_create_dataset=True`` converts the dataset and stops.
"""
import sys

from src.config import load_config_or_exit


def create_datasets(cfg):
    from src.data.prepare import prepare_split
    for is_training in (True, False):
        prepare_split(cfg, is_training)


def main(argv=None):
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    from src.data.sources import DatasetError
    from src.errors import UserError
    try:
        if cfg.only_create_dataset:
            create_datasets(cfg)
            return 0
        return train(cfg)
    except (DatasetError, UserError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 1


def train(cfg):
    from src.device import init_distributed, setup_device
    from src.inference.evaluation import print_evaluation
    from src.training.trainer import Trainer, TrainingStopped

    setup_device(cfg)
    rank, group_size = init_distributed() if cfg.run_distribute else (0, 1)
    trainer = Trainer(cfg, rank, group_size)
    try:
        trainer.run()
    except TrainingStopped as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    if cfg.final_eval and rank == 0:
        mean_ap, _, summary = trainer.evaluate(progress=True, analysis=True)
        print_evaluation(summary, mean_ap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
