"""SSD networks: ``build_ssd(cfg)``, the inference wrapper and the checkpoint loader."""
from src.models.checkpoint import load_checkpoint_into
from src.models.ssd import SSD, SsdInferWrapper, build_ssd, register_model
from src.models import detectors  # noqa: F401  (registers the further model-zoo networks)

__all__ = ["SSD", "SsdInferWrapper", "build_ssd", "load_checkpoint_into", "register_model"]
