"""MC-JEPA: one ConvNeXt-T encoder for self-supervised optical flow and content features."""

from mcjepa.architecture import ModelConfig, model_config
from mcjepa.encoder import ConvNeXtPyramid
from mcjepa.expander import Expander
from mcjepa.flow_head import FlowHead, FlowHeadOutput
from mcjepa.model import MCJEPA, build_model
from mcjepa.registry import create_model, list_models
from mcjepa.release.onnx import export_onnx

__version__ = "0.1.0"

__all__ = [
    "MCJEPA",
    "ConvNeXtPyramid",
    "Expander",
    "FlowHead",
    "FlowHeadOutput",
    "ModelConfig",
    "build_model",
    "create_model",
    "list_models",
    "export_onnx",
    "model_config",
    "__version__",
]
