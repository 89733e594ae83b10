"""torch.hub entry points of MC-JEPA: ``torch.hub.list("<owner>/mcjepa")`` lists them."""

dependencies = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors", "requests", "tqdm", "numpy", "PIL"]

from mcjepa.hub import mcjepa_convnext_t, mcjepa_convnext_t_flow, mcjepa_small  # noqa: E402, F401
