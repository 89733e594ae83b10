"""Bundled releases: ``python -m mcjepa.cli.bundle``, loading by name offline, sha256 checks, and the
default model of ``flow.load()``, ``mcjepa-flow`` and ``mcjepa.create_model`` (offline, CPU).

The bundled root and the manifest are a temporary micro release (``MCJEPA_BUNDLED_DIR``,
``MCJEPA_MANIFEST``), so these tests do not depend on the real trained model; the last test checks
whatever the package itself ships.
"""

import hashlib
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from fixtures_models import seeded_micro

import mcjepa.release.sources
from mcjepa import flow
from mcjepa.cli.bundle import bundle_release
from mcjepa.cli.bundle import main as bundle_main
from mcjepa.cli.flow import main as flow_main
from mcjepa.model import build_model
from mcjepa.release import (
    DEFAULT_MODEL,
    ManifestError,
    WeightsIntegrityError,
    WeightsUnavailableError,
    load_manifest,
    load_model,
    packaged_manifest_path,
    save_release,
    sha256_file,
)
from mcjepa.release.bundled import packaged_bundled_root
from mcjepa.release.export import weights_table_markdown

REPO_DIR = str(Path(__file__).resolve().parents[1])
PROVENANCE = {"command": "mcjepa-train --config real", "commit": "0" * 40, "data": "test pairs", "wall_time_s": 12.5}


@pytest.fixture(scope="module")
def original():
    return seeded_micro(17)


@pytest.fixture(scope="module")
def source(original, tmp_path_factory):
    """A release folder as a training run writes it (release/), with run metrics."""
    out = tmp_path_factory.mktemp("run") / "release"
    save_release(original, out, metadata={"trained_on": "demo", "metrics": {"trained_epe": 1.5}, "steps": 40})
    return out


@pytest.fixture
def bundled(source, tmp_path, monkeypatch):
    """The micro release bundled as DEFAULT_MODEL into a temporary bundled root and manifest; offline;
    any download would fail the test. Returns (bundled folder, manifest path, entry)."""
    root, manifest = tmp_path / "bundled", tmp_path / "weights_manifest.json"
    entry = bundle_release(
        source, bundled_dir=root, manifest=manifest, trained_on="test pairs", provenance=PROVENANCE, metrics={"x": 2}
    )
    monkeypatch.setenv("MCJEPA_BUNDLED_DIR", str(root))
    monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
    monkeypatch.setenv("MCJEPA_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a bundled release must not touch the network")

    monkeypatch.setattr(mcjepa.release.sources, "download", no_network)
    monkeypatch.setattr(mcjepa.release.sources, "hf_download", no_network)
    monkeypatch.setattr(flow, "_default", None)
    return root / DEFAULT_MODEL, manifest, entry


def _same_flow(model, original):
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(1, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        want = original(x1, x2)
        assert want.abs().max() > 0 and torch.equal(model(x1, x2), want)


# --------------------------------------------------------------------------- bundling


def test_bundle_copies_the_release_and_writes_the_entry(bundled, source):
    folder, manifest, entry = bundled
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in source.iterdir())
    for p in source.iterdir():
        assert (folder / p.name).read_bytes() == p.read_bytes(), p.name  # exactly as save_release wrote it
    assert load_manifest(manifest)["models"] == {DEFAULT_MODEL: entry}
    assert entry["status"] == "bundled" and entry["path"] == DEFAULT_MODEL and entry["name"] == DEFAULT_MODEL
    assert entry["variant"] == "micro" and entry["trained_on"] == "test pairs" and "url" not in entry
    assert entry["metrics"] == {"trained_epe": 1.5, "x": 2} and entry["provenance"] == PROVENANCE
    assert entry["metadata"]["steps"] == 40
    for comp, info in entry["files"].items():
        assert info == {
            "filename": f"{comp}.safetensors",
            "sha256": hashlib.sha256((folder / info["filename"]).read_bytes()).hexdigest(),
            "size": (folder / info["filename"]).stat().st_size,
        }


def test_bundle_cli_records_provenance_and_metrics(source, tmp_path, capsys):
    metrics_json = tmp_path / "eval.json"
    metrics_json.write_text(json.dumps({"real": {"epe": 3.25, "n_pairs": 8}, "note": "text is left out"}))
    manifest = tmp_path / "m.json"
    argv = [str(source), "--name", "small_test", "--bundled-dir", str(tmp_path / "b"), "--manifest", str(manifest),
            "--trained-on", "photos", "--license", "CC-BY-4.0", "--command", "mcjepa-train --config real",
            "--commit", "abc123", "--data", "five photos", "--wall-time-s", "3600", "--provenance", "hardware=2 CPUs",
            "--metric", "real_epe=1.5", "--metric", "steps_done=300", "--metrics-json", str(metrics_json)]  # fmt: skip
    assert bundle_main(argv) == 0
    entry = load_manifest(manifest)["models"]["small_test"]
    assert (
        json.loads(capsys.readouterr().out)["provenance"]
        == entry["provenance"]
        == {
            "command": "mcjepa-train --config real",
            "commit": "abc123",
            "data": "five photos",
            "wall_time_s": 3600.0,
            "hardware": "2 CPUs",
        }
    )
    assert entry["metrics"] == {
        "trained_epe": 1.5,
        "real.epe": 3.25,
        "real.n_pairs": 8,
        "real_epe": 1.5,
        "steps_done": 300,
    }
    assert entry["license"] == "CC-BY-4.0" and entry["trained_on"] == "photos" and entry["path"] == "small_test"
    assert (tmp_path / "b" / "small_test" / "encoder.safetensors").is_file()


def test_bundle_refusals(original, source, tmp_path, capsys):
    kw = {"bundled_dir": tmp_path / "b", "manifest": tmp_path / "m.json"}
    with pytest.raises(ValueError, match="plain folder name"):
        bundle_release(source, "../escape", **kw)
    with pytest.raises(ValueError, match="more than the 1000 a bundled release may"):
        bundle_release(source, max_bytes=1000, **kw)
    with_expander = build_model("micro", expander=True)
    save_release(with_expander, tmp_path / "exp", components=["encoder", "flow_head", "expander"])
    with pytest.raises(ValueError, match=r"holds exactly \['encoder', 'flow_head'\]"):
        bundle_release(tmp_path / "exp", **kw)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for p in source.iterdir():
        corrupt.joinpath(p.name).write_bytes(p.read_bytes())
    data = bytearray((corrupt / "encoder.safetensors").read_bytes())
    data[-1] ^= 0x01
    (corrupt / "encoder.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="has sha256"):
        bundle_release(corrupt, **kw)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "b").exists()  # nothing written
    assert (
        bundle_main([str(corrupt), "--bundled-dir", str(tmp_path / "b"), "--manifest", str(tmp_path / "m.json")]) == 2
    )
    assert capsys.readouterr().err.startswith("bundle: error: encoder weights file")
    # a published entry of the same name is not replaced without force
    (tmp_path / "m.json").write_text(
        json.dumps({"format_version": 1, "models": {DEFAULT_MODEL: {"status": "published"}}})
    )
    with pytest.raises(ManifestError, match="refusing to overwrite"):
        bundle_release(source, **kw)
    bundle_release(source, force=True, **kw)
    assert load_manifest(tmp_path / "m.json")["models"][DEFAULT_MODEL]["status"] == "bundled"


# --------------------------------------------------------------------------- loading


def test_loads_by_name_offline_and_verified(bundled, original):
    for spec in (DEFAULT_MODEL, f"bundled://{DEFAULT_MODEL}"):
        model = load_model(spec)
        _same_flow(model, original)
        assert model.release_name == DEFAULT_MODEL
        assert model.weights_description == f"{DEFAULT_MODEL} (bundled, trained on test pairs)"


def test_a_corrupted_byte_is_refused(bundled):
    folder, _, entry = bundled
    path = folder / "flow_head.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError) as info:
        flow.load()
    msg = str(info.value)
    assert str(path) in msg and entry["files"]["flow_head"]["sha256"] in msg and "corrupted" in msg


def test_the_manifest_not_the_folder_is_the_authority(bundled, original):
    """A release.json edited in the bundled folder changes nothing: the files are checked against the manifest."""
    folder, _, _ = bundled
    release = json.loads((folder / "release.json").read_text())
    release["files"]["encoder"]["sha256"] = "0" * 64
    (folder / "release.json").write_text(json.dumps(release))
    _same_flow(load_model(DEFAULT_MODEL), original)


def test_missing_files_name_the_path_and_what_to_do(bundled):
    folder, _, _ = bundled
    (folder / "encoder.safetensors").unlink()
    with pytest.raises(WeightsUnavailableError) as info:
        flow.load()
    msg = str(info.value)
    assert f"the bundled model {DEFAULT_MODEL!r}" in msg and str(folder / "encoder.safetensors") in msg
    assert "Reinstall mcjepa" in msg and "weights='random'" in msg


def test_no_entry_says_the_installation_lacks_the_default(tmp_path, monkeypatch):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"format_version": 1, "models": {}}))
    monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
    monkeypatch.setattr("mcjepa.release.manifest.packaged_manifest_path", lambda: tmp_path / "none.json")
    with pytest.raises(WeightsUnavailableError, match="no bundled release named 'mcjepa_small_real'.*Reinstall mcjepa"):
        flow.load()
    assert flow_main(["--device", "cpu", "-o", str(tmp_path / "f.png")]) == 2


# --------------------------------------------------------------------------- the default model


def test_flow_load_default_is_the_bundled_model_and_says_so(bundled, original, caplog):
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="mcjepa.flow"):
        warnings.simplefilter("error")  # a trained model: no untrained warning
        model = flow.load()
    _same_flow(model, original)
    assert model.release_name == DEFAULT_MODEL and not model.training
    assert f"weights: {DEFAULT_MODEL} (bundled, trained on test pairs)" in repr(model)
    assert f"flow.load(): {DEFAULT_MODEL} (bundled, trained on test pairs)" in caplog.text
    # estimate() without a model uses it too
    g = torch.Generator().manual_seed(4)
    i1, i2 = torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 64, generator=g)
    torch.testing.assert_close(flow.estimate(i1, i2), flow.estimate(i1, i2, model))


def test_random_weights_only_on_request(bundled):
    with pytest.warns(UserWarning, match="untrained"):
        model = flow.load("random", variant="micro")
    assert model.release_name is None and model.weights_description == "untrained mcjepa_micro (random weights)"
    assert not model.flow_head.decoder.predict_flow.weight.any()  # a fresh head, not the bundled one


def test_mcjepa_flow_names_the_model(bundled, tmp_path, capsys):
    assert flow_main(["--device", "cpu", "-o", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert f"model: {DEFAULT_MODEL} (bundled, trained on test pairs)" in out and "UNTRAINED" not in out


def test_registry_loads_the_bundled_release(bundled, original):
    import mcjepa

    _same_flow(mcjepa.create_model(DEFAULT_MODEL), original)
    model = mcjepa.create_model("mcjepa_micro")  # the architecture's default weights: this bundled release
    _same_flow(model, original)
    assert model.release_name == DEFAULT_MODEL and mcjepa.list_models(pretrained=True) == [
        "mcjepa_micro",
        DEFAULT_MODEL,
    ]
    with pytest.warns(UserWarning, match="mcjepa_micro: .*randomly initialised"):
        random = mcjepa.create_model("mcjepa_micro", pretrained=False)
    assert random.config.name == "mcjepa_micro" and random.release_name is None
    with pytest.raises(ValueError, match="both name weights to load"):
        mcjepa.create_model("mcjepa_micro", pretrained=True, weights=DEFAULT_MODEL)


def test_weights_table_lists_bundled_releases(bundled):
    lines = weights_table_markdown(load_manifest(bundled[1])).splitlines()
    assert lines[2] == (
        f"| `{DEFAULT_MODEL}` | micro | test pairs | trained_epe 1.5 | - "
        f'| `weights="{DEFAULT_MODEL}"` (bundled in the package, the `flow.load()` default) |'
    )


# --------------------------------------------------------------------------- what the package ships


def test_every_shipped_bundled_entry_has_its_files():
    models = load_manifest(packaged_manifest_path())["models"]
    for name, entry in models.items():
        if entry.get("status") != "bundled":
            continue
        folder = packaged_bundled_root() / entry.get("path", name)
        total = 0
        for info in entry["files"].values():
            path = folder / info["filename"]
            assert path.is_file(), f"{name}: {path} is missing (commit it with the manifest entry)"
            assert (sha256_file(path), path.stat().st_size) == (info["sha256"], info["size"]), path
            total += info["size"]
        assert total <= 10_000_000 and sorted(entry["files"]) == ["encoder", "flow_head"]
        assert entry.get("provenance") and entry.get("trained_on"), f"{name}: say how and on what it was trained"
