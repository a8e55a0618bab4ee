"""Export a checkpoint: python export.py --checkpoint_file_path=CKPT [--file_name=ssd] [--file_format=MINDIR|AIR|ONNX] [--batch_size=N]

The exported graph is the network plus box decoding (boxes [ymin, xmin, ymax, xmax] in [0, 1] and
sigmoid scores); NMS stays outside. The batch size of the graph is fixed: 1 unless ``--batch_size``
is given on this command line (the training batch_size of a config file is not used). AIR needs an
Ascend device. ``--file_format=ONNX --quantize=int8 [--calibration_images=N]`` also writes
``<file_name>_int8.onnx``, statically quantised (src/inference/quantize.py) on N training images.
"""
import sys

from src.config import load_config_or_exit
from src.errors import UserError


def batch_size_argument(cfg, argv):
    """1, or cfg.batch_size when --batch_size was given on the command line."""
    given = any(arg == "--batch_size" or arg.startswith("--batch_size=") for arg in argv)
    return int(cfg.batch_size) if given else 1


def main(argv=None):
    """Entry point: export, print the file written; a user error is one line and status 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config_or_exit(argv, description=__doc__.splitlines()[0])
    from src.checkpoint import checkpoint_to_load
    from src.device import setup_device
    from src.inference.export import check_format, export_checkpoint, quantize_export
    from src.model_settings import config_for_checkpoint

    try:
        check_format(cfg, cfg.file_format)
        if cfg.quantize and cfg.file_format != "ONNX":
            raise UserError("--quantize=%s needs --file_format=ONNX, got %s" % (cfg.quantize, cfg.file_format))
        path = checkpoint_to_load(cfg)
        cfg = config_for_checkpoint(cfg, path)
        setup_device(cfg)
        batch = batch_size_argument(cfg, argv)
        written = export_checkpoint(cfg, path, cfg.file_name, cfg.file_format, batch)
        print("exported %s (%s, input [%d, 3, %d, %d]) from %s"
              % (written, cfg.file_format, batch, cfg.img_shape[0], cfg.img_shape[1], path))
        if cfg.quantize:
            print("exported %s (INT8 ONNX, calibrated on %d training image(s))"
                  % (quantize_export(cfg, written, batch), cfg.calibration_images))
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
