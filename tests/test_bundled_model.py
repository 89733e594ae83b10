"""The trained model that ships with the package (``mcjepa_small_real``): it loads by name offline,
its files match the manifest's sha256, and it estimates flow on held-out real-texture pairs
(bundled photos that training never saw, seeds training never used) far better than zero flow,
which random weights do not (so the test fails if the weights were swapped).

The bound is 0.55x zero flow: the shipped model measures 3.68 vs 7.32 px (0.50x) on these 8 pairs;
the model it replaced measured 4.70 px (0.64x) and random weights about 1.0x, so both fail. Inference
is deterministic, so the margin only covers kernel differences between machines.

Still scenes: on a held-out photo against itself the shipped model predicts 0.39 px of mean flow
(the model it replaced: 0.45 px; OpenCV's DIS and Farnebäck: 0). The goal is below 0.1 px and is
not met (docs/scaling.md, "Why the model invents motion on still frames"); the test pins the
measured figure so that a regression shows."""

import copy
import hashlib
import warnings
from pathlib import Path

import pytest
import torch

from mcjepa import flow
from mcjepa.data.real_texture import RealTextureFlowDataset
from mcjepa.eval.flow_eval import REAL_TEXTURE_SEED_OFFSET
from mcjepa.release import DEFAULT_MODEL, load_manifest
from mcjepa.release.bundled import packaged_bundled_root

PAIRS, SIZE = 8, (96, 128)
REPO_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def held_out():
    data = RealTextureFlowDataset(PAIRS, SIZE, seed=REAL_TEXTURE_SEED_OFFSET, photos="bundled")
    items = [data[i] for i in range(PAIRS)]
    image1 = torch.stack([it["image1"] for it in items])
    image2 = torch.stack([it["image2"] for it in items])
    truth = torch.stack([it["flow"] for it in items])
    return image1, image2, truth


def _epe(model, image1, image2, truth) -> float:
    with torch.no_grad():
        pred = torch.stack([flow.estimate(a, b, model=model) for a, b in zip(image1, image2)])
    return float((pred - truth).norm(dim=1).mean())


@pytest.fixture(scope="module")
def bundled_model():
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MCJEPA_BUNDLED_DIR", "MCJEPA_MANIFEST"):
            mp.delenv(var, raising=False)
        mp.setenv("MCJEPA_OFFLINE", "1")
        mp.setattr(flow, "_default", None)
        return flow.load()


def test_the_default_is_the_bundled_release(bundled_model):
    assert bundled_model.release_name == DEFAULT_MODEL == "mcjepa_small_real"
    assert bundled_model.config.name == "mcjepa_small"
    assert "bundled" in bundled_model.weights_description


def test_shipped_files_match_the_manifest():
    entry = load_manifest()["models"][DEFAULT_MODEL]
    folder = packaged_bundled_root() / entry["path"]
    total = 0
    for meta in entry["files"].values():
        data = (folder / meta["filename"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"]
        assert len(data) == meta["size"]
        total += len(data)
    assert total <= 10 * 1024 * 1024  # the size limit for a bundled release
    for key in ("command", "commit", "data", "wall_time_s"):
        assert entry["provenance"][key], key


def test_beats_zero_flow_on_held_out_real_texture_pairs(bundled_model, held_out):
    image1, image2, truth = held_out
    zero = float(truth.norm(dim=1).mean())
    trained = _epe(bundled_model, image1, image2, truth)
    assert trained < 0.55 * zero, f"bundled model EPE {trained:.3f} px vs zero flow {zero:.3f} px"
    # the bound fails for swapped weights: the trained flow head on a random encoder
    swapped = copy.deepcopy(bundled_model)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the untrained-weights warning is expected here
        swapped.encoder.load_state_dict(flow.load(weights="random", variant="small").encoder.state_dict())
    random_encoder = _epe(swapped, image1, image2, truth)
    assert random_encoder > 0.55 * zero, f"random encoder EPE {random_encoder:.3f} px vs zero flow {zero:.3f} px"


def test_hub_entry_points_load_the_bundled_release(bundled_model):
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MCJEPA_BUNDLED_DIR", "MCJEPA_MANIFEST"):
            mp.delenv(var, raising=False)
        net = torch.hub.load(REPO_DIR, "mcjepa_small_flow", source="local")
        encoder = torch.hub.load(REPO_DIR, "mcjepa_small", source="local")
    assert net.release_name == encoder.release_name == DEFAULT_MODEL and "bundled" in encoder.weights_description
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.equal(net(x, x.flip(-1)), bundled_model(x, x.flip(-1)))
        assert all(torch.equal(a, b) for a, b in zip(encoder(x), bundled_model.encoder(x)))


def test_still_scene_flow_stays_below_the_measured_figure(bundled_model, held_out):
    image1 = held_out[0]
    with torch.no_grad():
        still = torch.stack([flow.estimate(a, a, model=bundled_model) for a in image1])
    mean_flow = float(still.norm(dim=1).mean())
    assert mean_flow < 0.42, f"bundled model invents {mean_flow:.3f} px of mean flow on still frames"
