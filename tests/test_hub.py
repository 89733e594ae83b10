"""torch.hub entry points, loaded from this checkout with ``source="local"`` (offline, CPU)."""

from pathlib import Path

import pytest
import torch

from mcjepa import build_model
from mcjepa.release import WeightsUnavailableError, save_release

REPO_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def convnext_t():
    return torch.hub.load(REPO_DIR, "mcjepa_convnext_t", source="local", pretrained=False)


@pytest.fixture
def github_is_this_checkout(monkeypatch):
    """torch.hub.list/help only take GitHub repos: serve this checkout in place of the download."""
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: REPO_DIR)


def test_list_shows_every_entry_point(github_is_this_checkout):
    assert sorted(torch.hub.list("owner/mcjepa")) == ["mcjepa_convnext_t", "mcjepa_convnext_t_flow", "mcjepa_small"]


@pytest.mark.parametrize("name", ["mcjepa_convnext_t", "mcjepa_convnext_t_flow", "mcjepa_small"])
def test_help_prints_a_documented_builder(github_is_this_checkout, name):
    text = torch.hub.help("owner/mcjepa", name)
    assert "pretrained (bool)" in text and "weights (str or Path, optional)" in text
    assert f'torch.hub.load("path/to/mcjepa", "{name}", source="local"' in text and "Example::" in text


def test_hubconf_lists_every_dependency():
    import importlib.util

    namespace = {}
    source = Path(REPO_DIR, "hubconf.py").read_text().split("from mcjepa")[0]
    exec(source, namespace)
    deps = namespace["dependencies"]
    assert {
        "torch",
        "torchvision",
        "timm",
        "huggingface_hub",
        "safetensors",
        "requests",
        "tqdm",
        "numpy",
        "PIL",
    } <= set(deps)
    assert all(importlib.util.find_spec(d) is not None for d in deps)


@pytest.mark.parametrize("size", [(64, 96), (70, 45), (32, 33)])
def test_encoder_pyramid_strides_and_channels(convnext_t, size):
    h, w = size
    assert not convnext_t.training
    with torch.no_grad():
        feats = convnext_t(torch.randn(1, 3, h, w))
    assert len(feats) == 6
    assert [f.shape[1] for f in feats] == [48, 48, 96, 192, 384, 768]
    assert [i["reduction"] for i in convnext_t.feature_info] == [2, 4, 4, 8, 16, 32]
    for f, s in zip(feats, (2, 4, 4, 8, 16, 32)):
        # stride-s level holds ceil or floor of size / s positions (conv arithmetic)
        assert f.shape[2] in (h // s, -(-h // s)) and f.shape[3] in (w // s, -(-w // s))
    # an odd size still rounds consistently level to level
    assert feats[1].shape[-2:] == feats[2].shape[-2:]


def test_flow_entry_point_returns_flow():
    model = torch.hub.load(REPO_DIR, "mcjepa_convnext_t_flow", source="local", pretrained=False, variant="micro")
    assert not model.training and model.flow_head is not None and model.expander is None
    with torch.no_grad():
        flow = model(torch.randn(2, 3, 64, 80), torch.randn(2, 3, 64, 80))
    assert flow.shape == (2, 2, 64, 80) and flow.dtype == torch.float32 and torch.isfinite(flow).all()


def test_entry_points_load_a_local_release(tmp_path):
    original = build_model("micro").eval()
    with torch.no_grad():
        for p in original.parameters():
            p.add_(0.05 * torch.randn_like(p))  # an untrained head predicts zero flow
    save_release(original, tmp_path)
    x1, x2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    net = torch.hub.load(REPO_DIR, "mcjepa_convnext_t_flow", source="local", weights=str(tmp_path))
    enc = torch.hub.load(REPO_DIR, "mcjepa_convnext_t", source="local", weights=tmp_path / "encoder.safetensors")
    with torch.no_grad():
        flow = original(x1, x2)
        assert flow.abs().max() > 0 and torch.equal(net(x1, x2), flow)
        assert all(torch.equal(a, b) for a, b in zip(enc(x1), original.encoder(x1)))


@pytest.mark.parametrize("name", ["mcjepa_convnext_t", "mcjepa_convnext_t_flow"])
def test_pretrained_paper_model_through_the_hub_says_nothing_is_published(name):
    # the bundled model is a `small`: the paper's ConvNeXt-T entries stay honest, nothing trained exists for them
    with pytest.raises(WeightsUnavailableError, match="no pretrained MC-JEPA weights are published yet"):
        torch.hub.load(REPO_DIR, name, source="local", pretrained=True)
