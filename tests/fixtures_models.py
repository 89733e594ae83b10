"""Small models shared by the weight and release tests."""

import torch

from mcjepa.model import build_model


def seeded_micro(seed: int = 0):
    """A micro model (encoder + flow head) with every parameter randomised: an untrained head
    predicts exactly zero flow, so tests that compare outputs need non-zero weights."""
    g = torch.Generator().manual_seed(seed)
    model = build_model("micro").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model
