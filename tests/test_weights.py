"""Weight releases: writing, every ``weights=`` form, integrity and strictness errors (offline, CPU)."""

import functools
import hashlib
import http.server
import json
import shutil
import threading
import warnings

import huggingface_hub
import pytest
import torch
from fixtures_models import seeded_micro
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import mcjepa
from mcjepa import ModelConfig, build_model
from mcjepa.encoder import ConvNeXtPyramid
from mcjepa.release import (
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsUnavailableError,
    load_manifest,
    load_model,
    load_state_dict_strict,
    resolve,
    save_release,
)

# bare .safetensors files are loaded on purpose here; tests/test_bad_input_weights.py checks the warning
pytestmark = pytest.mark.filterwarnings("ignore::mcjepa.release.UnverifiedWeightsWarning")

REV = "0123456789abcdef0123456789abcdef01234567"
REPO = "org/mcjepa-micro"


@pytest.fixture(scope="module")
def original():
    return seeded_micro(123)


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(7)
    return torch.randn(2, 3, 64, 72, generator=g), torch.randn(2, 3, 64, 72, generator=g)


@pytest.fixture(scope="module")
def reference(original, frames):
    with torch.no_grad():
        flow = original(*frames)
        assert flow.abs().min() > 0  # a non-trivial flow, so equality means the weights were loaded
        return flow, original.encoder(frames[0])


@pytest.fixture(scope="module")
def release(original, tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    entry = save_release(original, out, metadata={"trained_on": "nothing (test)", "license": "MIT", "note": "x"})
    return out, entry


@pytest.fixture
def hf_cache(release, tmp_path, monkeypatch):
    """A Hugging Face cache laid out like huggingface_hub's, used offline."""
    folder, _ = release
    root = tmp_path / "hf"
    repo = root / ("models--" + REPO.replace("/", "--"))
    snap = repo / "snapshots" / REV
    snap.mkdir(parents=True)
    for name in ("release.json", "config.json", "encoder.safetensors", "flow_head.safetensors"):
        shutil.copy(folder / name, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


@pytest.fixture
def manifest(release, tmp_path, monkeypatch):
    _, entry = release
    published = dict(entry, repo_id=REPO, revision=REV, status="published", variant="micro")
    path = tmp_path / "weights_manifest.json"
    path.write_text(json.dumps({"format_version": 1, "note": "test", "models": {"mcjepa_micro_test": published}}))
    monkeypatch.setenv("MCJEPA_MANIFEST", str(path))
    return path


def _assert_same_flow(model, frames, reference):
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(*frames), reference[0])
        assert torch.equal(model.encoder(frames[0])[-1], reference[1][-1])


def _copy_release(release, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(release[0], dst)
    return dst


# --------------------------------------------------------------------------- writing


def test_save_release_writes_the_documented_format(original, release):
    folder, entry = release
    assert json.loads((folder / "release.json").read_text()) == entry
    assert json.loads((folder / "config.json").read_text()) == entry["config"]
    assert ModelConfig.from_dict(entry["config"]) == original.config
    assert entry["format_version"] == 1 and entry["status"] == "local" and entry["variant"] == "micro"
    assert entry["trained_on"] == "nothing (test)" and entry["license"] == "MIT" and entry["metadata"] == {"note": "x"}
    assert sorted(entry["files"]) == ["encoder", "flow_head"]  # no expander by default
    for comp, info in entry["files"].items():
        data = (folder / info["filename"]).read_bytes()
        assert info["filename"] == f"{comp}.safetensors"
        assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["size"] == len(data)
        with safe_open(str(folder / info["filename"]), "pt") as fh:
            assert fh.metadata()["format"] == "pt" and fh.metadata()["mcjepa.component"] == comp
            assert set(fh.keys()) == set(getattr(original, comp).state_dict())  # no component prefix
    assert not list(folder.glob(".*tmp"))
    # the encoder file loads straight into a ConvNeXtPyramid
    enc = ConvNeXtPyramid(original.config.encoder)
    enc.load_state_dict(load_file(str(folder / "encoder.safetensors")), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), original.encoder.state_dict().values()))


def test_save_release_rejects_missing_component(original, tmp_path):
    with pytest.raises(ValueError, match=r"no \['expander'\] component"):
        save_release(original, tmp_path, components=["expander"])


def test_save_release_rejects_unserialisable_metadata(original, tmp_path):
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        save_release(original, tmp_path / "r", metadata={"bad": object()})
    assert not (tmp_path / "r").exists()


def test_shipped_manifest_is_the_packaged_file_and_publishes_nothing_yet():
    from pathlib import Path

    from mcjepa.release import STATUSES, packaged_manifest_path

    root_copy = Path(__file__).resolve().parents[1] / "weights_manifest.json"
    assert packaged_manifest_path() == Path(mcjepa.__file__).resolve().parent / "weights_manifest.json"
    assert root_copy.is_symlink() and root_copy.resolve() == packaged_manifest_path()  # one file, two paths
    manifest = load_manifest()
    assert manifest == load_manifest(packaged_manifest_path()) and manifest["format_version"] == 1
    assert all(e["status"] in STATUSES for e in manifest["models"].values())
    assert not [k for k, e in manifest["models"].items() if e["status"] == "published"]
    assert "None is published yet" in manifest["note"]


# --------------------------------------------------------------------------- every weights= form


def test_fresh_model_differs_so_equality_tests_loading(frames, reference):
    with torch.no_grad():
        assert not torch.equal(seeded_micro(0)(*frames), reference[0])


def test_local_release_folder(release, frames, reference):
    _assert_same_flow(load_model(release[0]), frames, reference)


def test_local_component_file_builds_its_own_architecture(release, frames, reference):
    # the file's metadata names the micro config: no variant= needed
    model = load_model(release[0] / "encoder.safetensors", components=("encoder",))
    assert model.flow_head is None
    with torch.no_grad():
        assert torch.equal(model.encoder(frames[0])[-1], reference[1][-1])


def test_local_whole_model_file_with_prefixed_keys(original, tmp_path, frames, reference):
    path = tmp_path / "whole.safetensors"
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    _assert_same_flow(load_model(path, variant="micro"), frames, reference)


def test_hf_cache_offline(hf_cache, frames, reference):
    _assert_same_flow(load_model(f"hf://{REPO}"), frames, reference)
    _assert_same_flow(load_model(f"hf://{REPO}@{REV}"), frames, reference)
    files = resolve(f"hf://{REPO}").files
    assert files["encoder"].parent == hf_cache / "models--org--mcjepa-micro" / "snapshots" / REV


def test_manifest_key_and_pretrained_use_the_manifest(hf_cache, manifest, frames, reference):
    _assert_same_flow(load_model("mcjepa_micro_test"), frames, reference)
    _assert_same_flow(load_model(pretrained=True, variant="micro"), frames, reference)


def test_file_urls(release, frames, reference):
    _assert_same_flow(load_model(release[0].as_uri()), frames, reference)
    model = load_model((release[0] / "encoder.safetensors").as_uri(), components=("encoder",))
    with torch.no_grad():
        assert torch.equal(model.encoder(frames[0])[-1], reference[1][-1])


@pytest.fixture
def http_release(release, tmp_path, monkeypatch):
    handler = functools.partial(_QuietHandler, directory=str(release[0]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MCJEPA_CACHE", str(tmp_path / "cache"))
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_url_downloads_verifies_and_caches(http_release, tmp_path, frames, reference):
    server, base = http_release
    _assert_same_flow(load_model(base), frames, reference)
    cached = sorted(p.name for p in (tmp_path / "cache" / "downloads").rglob("*") if p.is_file())
    assert cached == ["encoder.safetensors", "flow_head.safetensors", "release.json"]
    server.shutdown()
    server.server_close()
    # server gone: the cached copies are used
    _assert_same_flow(load_model(base + "/"), frames, reference)


# --------------------------------------------------------------------------- refusals


def test_flipped_byte_is_refused(release, tmp_path):
    folder = _copy_release(release, tmp_path)
    path = folder / "encoder.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    expected = release[1]["files"]["encoder"]["sha256"]
    with pytest.raises(WeightsIntegrityError) as info:
        load_model(folder)
    msg = str(info.value)
    assert str(path) in msg and expected in msg and hashlib.sha256(data).hexdigest() in msg
    assert "corrupted" in msg and "download it again" in msg


def test_truncated_file_is_refused(release, tmp_path):
    folder = _copy_release(release, tmp_path)
    path = folder / "flow_head.safetensors"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 100])
    with pytest.raises(WeightsIntegrityError, match=rf"{size - 100} bytes, expected {size} bytes \(truncated\)"):
        load_model(folder)
    # without a release.json to compare with, the safetensors header check catches it
    bare = tmp_path / "bare" / "flow_head.safetensors"
    bare.parent.mkdir()
    shutil.copy(path, bare)
    with pytest.raises(WeightsIntegrityError, match="not a valid safetensors file"):
        resolve(bare)


def _edited_encoder_file(original, tmp_path, edit):
    state = {k: v.clone() for k, v in original.encoder.state_dict().items()}
    edit(state)
    path = tmp_path / "edited" / "encoder.safetensors"
    path.parent.mkdir()
    save_file(state, str(path))
    return path


def test_missing_key_is_refused(original, tmp_path):
    path = _edited_encoder_file(original, tmp_path, lambda s: s.pop("stages.2.blocks.1.mlp.fc1.weight"))
    with pytest.raises(WeightsMismatchError, match=r"missing keys: 1 \(stages\.2\.blocks\.1\.mlp\.fc1\.weight\)"):
        load_model(path, variant="micro", components=("encoder",))


def test_extra_key_is_refused(original, tmp_path):
    path = _edited_encoder_file(original, tmp_path, lambda s: s.update({"stem.9.weight": torch.zeros(3)}))
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys: 1 \(stem\.9\.weight\)"):
        load_model(path, variant="micro", components=("encoder",))


def test_missing_key_in_a_consistent_release_is_refused(original, release, tmp_path):
    folder = _copy_release(release, tmp_path)
    path = folder / "flow_head.safetensors"
    state = load_file(str(path))
    del state["reducers.0.weight"]
    save_file(state, str(path))
    entry = json.loads((folder / "release.json").read_text())
    entry["files"]["flow_head"].update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size)
    (folder / "release.json").write_text(json.dumps(entry))
    with pytest.raises(
        WeightsMismatchError,
        match=r"the flow_head weights do not fit the FlowHead.*missing keys: 1 \(reducers\.0\.weight\)",
    ):
        load_model(folder)


def test_shape_mismatch_names_the_key(original):
    state = dict(original.encoder.state_dict())
    state["stem.0.0.bias"] = torch.zeros(5)
    with pytest.raises(WeightsMismatchError, match=r"stem\.0\.0\.bias: file \(5,\) vs model \(12,\)"):
        load_state_dict_strict(build_model("micro").encoder, state, "encoder")


def test_release_without_the_component_is_refused(original, tmp_path):
    save_release(original, tmp_path, components=["encoder"])
    with pytest.raises(WeightsUnavailableError, match=r"has no \['flow_head'\] weights"):
        load_model(tmp_path)


def test_pickles_are_refused(original, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(original.state_dict(), path)
    for spec in (path, "https://example.com/model.pth", tmp_path / "missing.bin"):
        with pytest.raises(WeightsIntegrityError, match="only loads .safetensors weights, never pickled"):
            load_model(spec)


def test_release_listing_a_pickle_is_refused(release, tmp_path):
    folder = _copy_release(release, tmp_path)
    entry = json.loads((folder / "release.json").read_text())
    entry["files"]["encoder"]["filename"] = "encoder.pt"
    (folder / "release.json").write_text(json.dumps(entry))
    with pytest.raises(WeightsIntegrityError, match="refusing to load 'encoder.pt'"):
        load_model(folder)


def test_pretrained_without_published_weights_says_what_to_do():
    with pytest.raises(WeightsUnavailableError) as info:
        load_model(pretrained=True)
    msg = str(info.value)
    assert "no pretrained MC-JEPA weights are published yet" in msg
    assert "mcjepa-train" in msg and "weights=" in msg


def test_unknown_string_is_refused_with_the_forms():
    with pytest.raises(WeightsUnavailableError, match="not an existing file or folder, nor a key.*hf://org/repo"):
        load_model("no_such_model")


# --------------------------------------------------------------------------- offline, nothing cached


def test_offline_hf_with_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("hf://org/not-cached@main")
    msg = str(info.value)
    assert "release.json of hf://org/not-cached@main" in msg and "HF_HUB_OFFLINE is set" in msg
    assert "Unset HF_HUB_OFFLINE" in msg and "weights= a local release" in msg and str(tmp_path) in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_offline_manifest_key_with_empty_cache(manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=rf"encoder.safetensors of hf://{REPO}@{REV}"):
        load_model("mcjepa_micro_test")


def test_unreachable_url_with_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCJEPA_CACHE", str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens on this port any more
    with pytest.raises(WeightsUnavailableError, match="no connection.*not cached.*weights= a local release") as info:
        load_model(f"http://127.0.0.1:{port}/release")
    assert info.value.__cause__ is None
    monkeypatch.setenv("MCJEPA_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="offline mode is on"):
        load_model(f"http://127.0.0.1:{port}/release")


def test_missing_local_path_in_file_url(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_model((tmp_path / "nothing").as_uri())


def test_folder_without_release_json(release, tmp_path):
    shutil.copy(release[0] / "encoder.safetensors", tmp_path / "encoder.safetensors")
    with pytest.raises(
        WeightsUnavailableError, match=r"no release.json \(found .safetensors: \['encoder.safetensors'\]\)"
    ):
        load_model(tmp_path)


def test_single_file_inside_release_is_checked_against_release_json(release, tmp_path):
    folder = _copy_release(release, tmp_path)
    path = folder / "encoder.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="has sha256"):
        load_model(path, components=("encoder",))


def test_component_is_inferred_from_keys(original, tmp_path):
    path = tmp_path / "weights_v3.safetensors"
    save_file({k: v.contiguous() for k, v in original.flow_head.state_dict().items()}, str(path))
    assert list(resolve(path).files) == ["flow_head"]
    path2 = tmp_path / "mystery.safetensors"
    save_file({"foo.weight": torch.zeros(1)}, str(path2))
    with pytest.raises(WeightsIntegrityError, match="cannot tell which component"):
        resolve(path2)


def test_map_location_and_components(release):
    model = load_model(release[0], map_location="cpu", components=("encoder",))
    assert model.flow_head is None and next(model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="must include 'encoder'"):
        load_model(release[0], components=("flow_head",))


def test_resolve_does_not_read_unrequested_files(release, tmp_path):
    folder = _copy_release(release, tmp_path)
    (folder / "flow_head.safetensors").unlink()
    assert list(resolve(folder, components=("encoder",)).files) == ["encoder"]
    with pytest.raises(WeightsUnavailableError, match="flow_head weights file .* does not exist"):
        load_model(folder)


def _entry_points():
    from mcjepa import flow
    from mcjepa.registry import create_model

    return {
        "load_model": lambda w: load_model(w, variant="micro", warn_untrained=True),
        "flow.load": lambda w: flow.load("random" if w is None else w, variant="micro"),  # random on request
        "create_model": lambda w: create_model("mcjepa_micro", weights=w),
        "create_model encoder": lambda w: create_model("mcjepa_micro", weights=w, components="encoder"),
    }


@pytest.mark.parametrize("entry", ["load_model", "flow.load", "create_model", "create_model encoder"])
def test_untrained_warning_once_per_entry_point_and_never_with_weights(entry, release):
    """Every loader goes through load_model: exactly one untrained UserWarning without weights
    (pointing at the caller's file), none with weights."""
    load = _entry_points()[entry]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load(None)
    untrained = [w for w in record if "randomly initialised" in str(w.message) or "untrained" in str(w.message)]
    assert len(untrained) == 1, [str(w.message) for w in record]
    assert untrained[0].category is UserWarning and untrained[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(release[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(None, variant="micro")  # load_model on its own stays quiet (the flag is off by default)
