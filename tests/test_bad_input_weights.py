"""Bad input and faults on the release side: writing, exporting and loading weights (offline, CPU).

=====================================================  ===================================================
input                                                  expected
=====================================================  ===================================================
save_release / mcjepa-export under umask 022 or 027    every file mode 0o666 & ~umask (not mkstemp's 0600)
the same checkpoint exported three times               byte-identical files (sorted safetensors metadata)
save_release of a model with a NaN / +Inf / -Inf       NonFiniteWeightsError naming component, tensor and
                                                       NaN/Inf counts; nothing written
mcjepa-export of a checkpoint holding NaN               exit 2, the same message on stderr; no --out folder
=====================================================  ===================================================
"""

import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file
from test_export import seeded_training_model, write_run

from mcjepa import build_model
from mcjepa.cli.export import main as export_main
from mcjepa.export import export_release
from mcjepa.weights import NonFiniteWeightsError, save_release


def seeded_micro(seed: int = 0):
    """A micro model (encoder + flow head) with every parameter randomised."""
    g = torch.Generator().manual_seed(seed)
    model = build_model("micro").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(autouse=True)
def _no_repository_manifest(tmp_path, monkeypatch):
    """Whatever a test does, the repository's tracked weights_manifest.json is never written."""
    monkeypatch.setenv("MCJEPA_MANIFEST", str(tmp_path / "test_manifest.json"))


@pytest.fixture(scope="module")
def micro():
    return seeded_micro(11)


@pytest.fixture(scope="module")
def trained():
    return seeded_training_model(7)


@pytest.fixture
def run(trained, tmp_path):
    return write_run(tmp_path / "run", trained, steps=(4,))


# --------------------------------------------------------------------------- file modes


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _modes(folder):
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def test_release_files_get_the_usual_mode(micro, run, tmp_path, umask):
    want = 0o666 & ~umask
    save_release(micro, tmp_path / "saved")
    assert _modes(tmp_path / "saved") == dict.fromkeys(
        ["encoder.safetensors", "flow_head.safetensors", "config.json", "release.json"], want
    )
    export_release(run, tmp_path / "exported", update_manifest=False)
    modes = _modes(tmp_path / "exported")
    assert "README.md" in modes and set(modes.values()) == {want}, modes


# --------------------------------------------------------------------------- reproducible bytes


def test_exporting_the_same_checkpoint_gives_identical_bytes(run, tmp_path):
    # safetensors orders its metadata by a per-call hash: three exports would almost surely differ
    outs = [tmp_path / str(i) / "release" for i in range(3)]
    for out in outs:
        export_release(run, out, update_manifest=False)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == ["README.md", "config.json", "encoder.safetensors", "flow_head.safetensors", "release.json"]
    for out in outs[1:]:
        assert sorted(p.name for p in out.iterdir()) == names
        for name in names:
            assert (out / name).read_bytes() == (outs[0] / name).read_bytes(), name
    entry = (outs[0] / "release.json").read_text()
    assert entry == json.dumps(json.loads(entry), indent=2, sort_keys=True) + "\n"  # sorted keys


def test_written_header_is_canonical_and_loads(micro, tmp_path):
    save_release(micro, tmp_path)
    raw = (tmp_path / "encoder.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    assert n % 8 == 0 and list(header)[0] == "__metadata__"
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    state = load_file(str(tmp_path / "encoder.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in micro.encoder.state_dict().items())


# --------------------------------------------------------------------------- non-finite weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_save_release_refuses_non_finite_tensors(bad, tmp_path):
    model = seeded_micro(3)
    with torch.no_grad():
        model.encoder.stem[0][0].weight.view(-1)[:2] = bad
        model.flow_head.reducers[0].weight.view(-1)[0] = float("nan")
    n_enc = model.encoder.stem[0][0].weight.numel()
    with pytest.raises(NonFiniteWeightsError) as info:
        save_release(model, tmp_path / "out")
    msg = str(info.value)
    counts = "2 NaN, 0 Inf" if bad != bad else "0 NaN, 2 Inf"
    assert f"encoder: stem.0.0.weight ({counts} of {n_enc} values)" in msg
    assert "flow_head: reducers.0.weight (1 NaN, 0 Inf" in msg and "2 tensor(s) hold non-finite values" in msg
    assert "Nothing was written" in msg and isinstance(info.value, ValueError)
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_checkpoint_with_nan(trained, tmp_path, capsys):
    run = write_run(tmp_path / "run", trained, steps=(2,))
    ckpt = run / "checkpoints" / "ckpt_000000002.pt"
    payload = torch.load(ckpt, weights_only=True)
    payload["model"]["flow_head.decoder.convs.0.0.weight"] = torch.full_like(
        payload["model"]["flow_head.decoder.convs.0.0.weight"], float("nan")
    )
    torch.save(payload, ckpt)
    assert export_main([str(run), "--out", str(tmp_path / "rel")]) == 2
    err = capsys.readouterr().err
    assert "refusing to write a release" in err and "flow_head: decoder.convs.0.0.weight" in err, err
    assert not (tmp_path / "rel").exists()
