"""torch.hub entry points, loaded from this checkout with ``source="local"`` (offline, CPU)."""

from pathlib import Path

import pytest
import torch

import mcjepa
from mcjepa import build_model
from mcjepa.encoder import ConvNeXtPyramid
from mcjepa.model import MCJEPA
from mcjepa.release import WeightsUnavailableError, load_manifest, save_release

ENTRY_POINTS = ["mcjepa_convnext_t", "mcjepa_convnext_t_flow", "mcjepa_small", "mcjepa_small_flow"]

REPO_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def convnext_t():
    with pytest.warns(UserWarning, match="randomly initialised"):
        return torch.hub.load(REPO_DIR, "mcjepa_convnext_t", source="local", pretrained=False)


@pytest.fixture
def github_is_this_checkout(monkeypatch):
    """torch.hub.list/help only take GitHub repos: serve this checkout in place of the download."""
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: REPO_DIR)


def test_list_shows_every_entry_point(github_is_this_checkout):
    assert sorted(torch.hub.list("owner/mcjepa")) == ENTRY_POINTS


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_prints_a_documented_builder(github_is_this_checkout, name):
    text = torch.hub.help("owner/mcjepa", name)
    assert "pretrained (bool, optional)" in text and "weights (str or Path, optional)" in text
    assert ("returns" in text or "model" in text) and "mcjepa.create_model" in text


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_the_name_says_what_comes_back(name):
    with pytest.warns(UserWarning, match="randomly initialised"):
        got = torch.hub.load(REPO_DIR, name, source="local", pretrained=False)
    assert isinstance(got, MCJEPA if name.endswith("_flow") else ConvNeXtPyramid) and not got.training
    if name.endswith("_flow"):
        assert got.flow_head is not None and got.expander is None


def test_registry_lists_every_manifest_entry_and_builds_each():
    names = mcjepa.list_models()
    for key in load_manifest()["models"]:
        assert key in names
        model = mcjepa.create_model(key)
        assert model.release_name == key and model.flow_head is not None
    assert {"mcjepa_convnext_t", "mcjepa_small", "mcjepa_micro"} <= set(names)
    assert set(mcjepa.list_models(pretrained=True)) < set(names)
    with pytest.raises(ValueError, match="unknown model 'nope'.*mcjepa_small"):
        mcjepa.create_model("nope")


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
    with pytest.warns(UserWarning, match="mcjepa_micro: .*randomly initialised"):
        model = mcjepa.create_model("mcjepa_micro", pretrained=False)
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
    net = mcjepa.create_model("mcjepa_micro", weights=str(tmp_path))
    enc = mcjepa.create_model("mcjepa_micro", weights=tmp_path / "encoder.safetensors", components="encoder").encoder
    with torch.no_grad():
        flow = original(x1, x2)
        assert flow.abs().max() > 0 and torch.equal(net(x1, x2), flow)
        assert all(torch.equal(a, b) for a, b in zip(enc(x1), original.encoder(x1)))


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_release(build_model("micro").eval(), tmp_path)
    with pytest.raises(ValueError, match="hold the 'mcjepa_micro' architecture, not 'mcjepa_convnext_t'"):
        torch.hub.load(REPO_DIR, "mcjepa_convnext_t", source="local", weights=str(tmp_path))
    with pytest.raises(ValueError, match="hold the 'mcjepa_small' architecture"):
        torch.hub.load(REPO_DIR, "mcjepa_convnext_t_flow", source="local", weights="mcjepa_small_real")


@pytest.mark.parametrize("name", ["mcjepa_convnext_t", "mcjepa_convnext_t_flow"])
def test_pretrained_paper_model_through_the_hub_says_nothing_is_published(name):
    # the bundled model is a `small`: the paper's ConvNeXt-T entries stay honest, nothing trained exists for them
    with pytest.raises(WeightsUnavailableError, match="no trained weights are available"):
        torch.hub.load(REPO_DIR, name, source="local", pretrained=True)
    with pytest.raises(ValueError, match="both name weights to load"):
        torch.hub.load(REPO_DIR, name, source="local", pretrained=True, weights="x")


def test_registry_sees_the_packaged_releases_beside_a_user_manifest(tmp_path, monkeypatch):
    user = tmp_path / "weights_manifest.json"
    user.write_text('{"format_version": 1, "note": "a user manifest", "models": {}}')
    monkeypatch.setenv("MCJEPA_MANIFEST", str(user))
    assert "mcjepa_small_real" in mcjepa.list_models(pretrained=True)
    assert mcjepa.create_model("mcjepa_small").release_name == "mcjepa_small_real"


def test_hub_untrained_warning_points_at_the_caller():
    from mcjepa.hub import mcjepa_small

    with pytest.warns(UserWarning, match="randomly initialised") as record:
        mcjepa_small(pretrained=False)
    assert record[0].filename == __file__
