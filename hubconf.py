"""torch.hub entry points of MC-JEPA: ``torch.hub.list("<owner>/mcjepa")`` lists them.

``<model>`` returns the encoder, ``<model>_flow`` the optical-flow model (:mod:`mcjepa.hub`)."""

dependencies = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors", "requests", "tqdm", "numpy", "PIL"]

from mcjepa.hub import mcjepa_convnext_t, mcjepa_convnext_t_flow, mcjepa_small, mcjepa_small_flow  # noqa: E402, F401
