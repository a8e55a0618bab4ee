"""Export a checkpoint: python export.py --checkpoint_file_path=CKPT [--file_name=ssd] [--file_format=MINDIR|AIR|ONNX] [--batch_size=N]

The exported graph is the network plus box decoding (boxes [ymin, xmin, ymax, xmax] in [0, 1] and
sigmoid scores); NMS stays outside. ONNX files have a dynamic batch axis, other formats batch 1, unless
``--batch_size`` is given on this command line (the training batch_size of a config file is not used;
-1: dynamic, ONNX only). AIR needs an
Ascend device. ``--file_format=ONNX --quantize=int8 [--calibration_images=N]`` also writes
``<file_name>_int8.onnx``, statically quantised (src/inference/quantize.py) on N training images.
``--verify=N`` then runs N evaluation images through the checkpoint and every file written, prints the
largest box and score difference and the mAP of each, and exits 1 when a float32 export differs by more
than 1e-4 (src/inference/verify.py).
"""
import sys

from src.config import load_config_or_exit
from src.errors import UserError


def batch_size_argument(cfg, argv):
    """cfg.batch_size when --batch_size was given on the command line; else -1 (a dynamic batch) for ONNX
    and 1 for the other formats."""
    given = any(arg == "--batch_size" or arg.startswith("--batch_size=") for arg in argv)
    if given:
        return int(cfg.batch_size)
    return -1 if cfg.file_format == "ONNX" else 1


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
        print("exported %s (%s, input [%s, 3, %d, %d]) from %s" % (
            written, cfg.file_format, "batch" if batch < 1 else batch, cfg.img_shape[0], cfg.img_shape[1], path))
        exported = [written]
        if cfg.quantize:
            exported.append(quantize_export(cfg, written, batch))
            print("exported %s (INT8 ONNX, calibrated on %d training image(s))" % (exported[-1], cfg.calibration_images))
        if cfg.verify > 0:
            return verify(cfg, path, exported)
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    return 0


def verify(cfg, checkpoint_path, exported):
    """--verify=N: print how far each export is from the checkpoint; 1 when a float32 one is too far."""
    from src.inference.verify import FLOAT_TOLERANCE, verify_exports

    lines, passed = verify_exports(cfg, checkpoint_path, exported, int(cfg.verify))
    print("\n".join(lines))
    if not passed:
        print("error: a float32 export differs from the checkpoint by more than %g" % FLOAT_TOLERANCE,
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
