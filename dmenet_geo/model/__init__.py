"""DMENet in PyTorch: architecture, losses, metrics and the named weights."""

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import STRIDE, CompressedLatents, DMENet, ForwardResult
from dmenet_geo.model.zoo import ModelInfo, WeightsError, available_models, get_model, load_model, model_info

__all__ = [
    "DMENet",
    "DMENetConfig",
    "CompressedLatents",
    "ForwardResult",
    "STRIDE",
    "ModelInfo",
    "WeightsError",
    "available_models",
    "get_model",
    "load_model",
    "model_info",
]
