import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def randomised_micro():
    """A fresh micro model with its zero-initialised flow predictors randomised, so that its flow is
    non-zero and depends on the image content (an untrained model's flow is exactly zero)."""
    from mcjepa import build_model

    torch.manual_seed(0)
    m = build_model("micro").eval()
    with torch.no_grad():
        for p in m.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return m


@pytest.fixture(scope="module")
def model():
    """:func:`randomised_micro`, shared by a module's tests (do not modify it)."""
    return randomised_micro()
