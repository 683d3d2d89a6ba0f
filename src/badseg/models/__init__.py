"""Segmentation models behind one interface (``SegModel``) and one factory (``build_model``).

See ``factory.py`` for the list of models, which layer ``features()`` returns and its stride.
"""

from badseg.models.effl0_weights import LoadReport, load_effl0_imagenet
from badseg.models.factory import MODELS, PretrainedUnavailableError, build_model, load_weights
from badseg.models.segmodel import IMAGENET_MEAN, IMAGENET_STD, SegModel

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "LoadReport",
    "PretrainedUnavailableError",
    "SegModel",
    "build_model",
    "load_effl0_imagenet",
    "load_weights",
]
