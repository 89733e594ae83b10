"""MC-JEPA: one ConvNeXt-T encoder for self-supervised optical flow and content features."""

from .config import ModelConfig, model_config
from .encoder import ConvNeXtPyramid
from .expander import Expander
from .flow_head import FlowHead, FlowHeadOutput
from .model import MCJEPA, build_model
from .onnx_export import export_onnx

__version__ = "0.1.0"

__all__ = [
    "MCJEPA",
    "ConvNeXtPyramid",
    "Expander",
    "FlowHead",
    "FlowHeadOutput",
    "ModelConfig",
    "build_model",
    "export_onnx",
    "model_config",
    "__version__",
]
