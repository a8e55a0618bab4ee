"""SSD networks: ``build_ssd(cfg)`` builds the network ``cfg.model_name`` names.

* :mod:`~src.models.layers`: every layer, in the plain and the fast CPU formulation (layer factories);
* :mod:`~src.models.backbones`, :mod:`~src.models.necks` (extra layers, feature pyramids),
  :mod:`~src.models.heads` (box predictors), :mod:`~src.models.detectors` (their assemblies);
* :mod:`~src.models.registry` (``build_ssd``, ``register_model``) and :mod:`~src.models.zoo` (every
  registered network); :mod:`~src.models.pretrained`: ImageNet backbones.
"""
from src.models import zoo  # noqa: F401  (registers the networks)
from src.models.registry import build_ssd, register_model, registered_models

__all__ = ["build_ssd", "register_model", "registered_models"]
