"""Bad input and faults on the release side: writing, exporting and loading weights (offline, CPU).

======================================================  ==================================================
input                                                   expected
======================================================  ==================================================
save_release / mcjepa-export under umask 022 or 027     every file 0o666 & ~umask (mkstemp gave 0600)
one checkpoint exported three times                     byte-identical files; release.json keys sorted
save_release of a model holding NaN / +Inf / -Inf       NonFiniteWeightsError naming component, tensor,
                                                        NaN and Inf counts; nothing written
mcjepa-export of a checkpoint holding NaN               exit 2, that message on stderr; no --out folder
bare .safetensors, no hash, one byte flipped            loads, UnverifiedWeightsWarning "was NOT verified"
bare file + right hash: FILE#sha256=, file://...        loads, no warning
  #sha256=, sha256= keyword, torch.hub sha256=
bare file + a wrong hash (same three forms)             WeightsIntegrityError "has sha256 <actual>,
                                                        expected <given>"
sha256 not 64 hex / two different sha256                ValueError "64 hex digits" / "two different"
sha256 with a release folder / hf:// / manifest key     ValueError: it checks one bare .safetensors file
weights=X with pretrained=True: load_model, both hub    ValueError "both name weights to load: pass
  entry points, flow.load; mcjepa-flow                  one"; mcjepa-flow exits 2 with it
mcjepa-flow / mcjepa-eval --weights BARE_FILE (they     UnverifiedWeightsWarning still shown
  hide the untrained-model UserWarning)
MCJEPA_OFFLINE=1 or HF_HUB_OFFLINE=1 (set at run        WeightsUnavailableError in < 5 s, no request:
  time) with hf://org/repo[@rev], a published           "offline mode is on (<VAR> is set)" and how to
  manifest key, https://.../release, .../x.safetensors  pass a local folder or .safetensors file
MCJEPA_OFFLINE=1, the release in the HF cache           loads from the cache, no request
mcjepa-export RUN --out DIR (no manifest flag)          no manifest changed (the tracked one neither);
                                                        stderr says how to add the entry
mcjepa-export --update-manifest M of a micro run        entry with variant "micro" and the folder's url;
  whose config overrides finest_level                   weights=KEY loads it offline (file://) and over
                                                        http://; a flipped served byte is refused
mcjepa-export --out EXISTING_FILE; save_release         exit 2 "--out F is an existing file, not a
                                                        folder" / ValueError; the file is untouched
torch.save output named x.safetensors (zip, legacy      WeightsIntegrityError "is a zip archive / a
  pickle), with and without a hash                      pickle ... renamed to .safetensors. Refusing";
                                                        never "weights file weights file"
flow.estimate with the hub encoder, or an MCJEPA        TypeError "needs a model with a flow head",
  without a flow head                                   names 'mcjepa_convnext_t_flow' and flow.load
flow.estimate of a float image with one 1.000001        ValueError "the min is 0.0 and the max is
  (or -0.25) pixel                                      1.000001 (1 of N values outside)"
======================================================  ==================================================
"""

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import stat
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
import requests
import torch
from fixtures_models import seeded_micro
from huggingface_hub.utils._http import default_client_factory
from safetensors.torch import load_file, save_file
from test_export import seeded_training_model, write_run

from mcjepa import MCJEPA, flow
from mcjepa.architecture import micro as micro_config
from mcjepa.cli.export import main as export_main
from mcjepa.cli.flow import main as flow_main
from mcjepa.registry import create_model
from mcjepa.release import (
    NonFiniteWeightsError,
    UnverifiedWeightsWarning,
    WeightsIntegrityError,
    WeightsUnavailableError,
    load_manifest,
    load_model,
    save_release,
)
from mcjepa.release.export import export_release

REPO_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def _no_repository_manifest(tmp_path, monkeypatch):
    """Whatever a test does, the repository's tracked weights_manifest.json is never written."""
    monkeypatch.setenv("MCJEPA_MANIFEST", str(tmp_path / "test_manifest.json"))


@pytest.fixture(scope="module")
def micro():
    return seeded_micro(11)


@pytest.fixture(scope="module")
def release_entry(micro, tmp_path_factory):
    folder = tmp_path_factory.mktemp("entry")
    return folder, save_release(micro, folder)


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
    export_release(run, tmp_path / "exported")
    modes = _modes(tmp_path / "exported")
    assert "README.md" in modes and set(modes.values()) == {want}, modes


# --------------------------------------------------------------------------- reproducible bytes


def test_exporting_the_same_checkpoint_gives_identical_bytes(run, tmp_path):
    # safetensors orders its metadata by a per-call hash: three exports would almost surely differ
    outs = [tmp_path / str(i) / "release" for i in range(3)]
    for out in outs:
        export_release(run, out)
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


# --------------------------------------------------------------------------- bare files and sha256


@pytest.fixture(scope="module")
def bare(micro, tmp_path_factory):
    """A bare encoder file (no release.json beside it), its sha256, and a copy with one byte flipped."""
    folder = tmp_path_factory.mktemp("bare")
    save_release(micro, folder / "release", components=["encoder"])
    good = folder / "encoder.safetensors"
    shutil.copy(folder / "release" / "encoder.safetensors", good)
    flipped = folder / "flipped" / "encoder.safetensors"
    flipped.parent.mkdir()
    data = bytearray(good.read_bytes())
    data[-1] ^= 0x01  # in the data section: the header still parses
    flipped.write_bytes(bytes(data))
    return good, hashlib.sha256(good.read_bytes()).hexdigest(), flipped


def test_bare_file_without_hash_loads_but_warns(bare):
    _, _, flipped = bare
    with pytest.warns(UnverifiedWeightsWarning) as record:
        model = load_model(flipped, components=("encoder",))
    assert model.flow_head is None
    msg = str(record[0].message)
    assert f"{flipped} was NOT verified" in msg and "#sha256=<hex>" in msg and "sha256=" in msg
    assert record[0].filename == __file__  # points at the caller, not at mcjepa's internals


@pytest.mark.parametrize("form", ["suffix", "file_url", "keyword", "create_model"])
def test_bare_file_with_the_right_hash_loads_silently(bare, micro, form):
    good, digest, _ = bare
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if form == "suffix":
            encoder = load_model(f"{good}#sha256={digest}", components=("encoder",)).encoder
        elif form == "file_url":
            encoder = load_model(f"{good.as_uri()}#sha256={digest.upper()}", components=("encoder",)).encoder
        elif form == "keyword":
            encoder = load_model(good, components=("encoder",), sha256=digest).encoder
        else:
            encoder = create_model("mcjepa_micro", weights=good, sha256=digest, components="encoder").encoder
    for a, b in zip(encoder.state_dict().values(), micro.encoder.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("form", ["suffix", "file_url", "keyword"])
def test_bare_file_with_a_wrong_hash_is_refused(bare, form):
    _, digest, flipped = bare
    actual = hashlib.sha256(flipped.read_bytes()).hexdigest()
    spec, kw = {
        "suffix": (f"{flipped}#sha256={digest}", {}),
        "file_url": (f"{flipped.as_uri()}#sha256={digest}", {}),  # the URL fragment was silently dropped
        "keyword": (flipped, {"sha256": digest}),
    }[form]
    with pytest.raises(WeightsIntegrityError) as info:
        load_model(spec, components=("encoder",), **kw)
    msg = str(info.value)
    assert f"weights file {flipped} has sha256 {actual}, expected {digest}" in msg
    assert "weights file weights file" not in msg and "Check the sha256 you passed" in msg


@pytest.mark.parametrize(
    ("suffix", "kw", "match"),
    [
        ("#sha256=abc", {}, "64 hex digits"),
        ("", {"sha256": "z" * 64}, "64 hex digits"),
        ("#sha256=" + "a" * 64, {"sha256": "b" * 64}, "two different sha256"),
    ],
    ids=["short", "not-hex", "conflicting"],
)
def test_malformed_hash_is_refused(bare, suffix, kw, match):
    with pytest.raises(ValueError, match=match):
        load_model(f"{bare[0]}{suffix}", components=("encoder",), **kw)


@pytest.mark.parametrize("kind", ["folder", "hf", "manifest key"])
def test_hash_with_a_release_is_refused(bare, micro, kind, tmp_path, monkeypatch):
    digest = bare[1]
    if kind == "folder":
        spec = str(bare[0].parent / "release")
    elif kind == "hf":
        spec = "hf://org/repo"
    else:
        manifest = tmp_path / "m.json"
        manifest.write_text(json.dumps({"format_version": 1, "models": {"k": {"files": {}}}}))
        monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
        spec = "k"
    with pytest.raises(ValueError, match="checks one bare .safetensors file"):
        load_model(spec, sha256=digest)


# --------------------------------------------------------------------------- weights= with pretrained=True


@pytest.mark.parametrize("entry", ["load_model", "mcjepa_convnext_t", "mcjepa_small_flow", "flow.load"])
def test_weights_and_pretrained_together_are_refused(bare, entry):
    folder = str(bare[0].parent / "release")  # a real release: today pretrained=True is silently ignored
    with pytest.raises(ValueError, match=r"pretrained=True and weights=.* both name weights to load: pass one"):
        if entry == "load_model":
            load_model(folder, pretrained=True, components=("encoder",))
        elif entry == "flow.load":
            flow.load(folder, pretrained=True)
        else:
            torch.hub.load(REPO_DIR, entry, source="local", weights=folder, pretrained=True)


def test_mcjepa_flow_with_weights_and_pretrained(bare, capsys):
    assert flow_main(["--weights", str(bare[0].parent / "release"), "--pretrained", "--device", "cpu"]) == 2
    assert "both name weights to load" in capsys.readouterr().err


@pytest.mark.parametrize("cli", ["mcjepa-flow", "mcjepa-eval"])
def test_clis_show_the_unverified_warning(micro, tmp_path, cli):
    whole = tmp_path / "flow_model.safetensors"  # a whole-model file (prefixed keys), no release.json beside it
    save_file({k: v.contiguous() for k, v in micro.state_dict().items()}, str(whole))
    with pytest.warns(UnverifiedWeightsWarning, match="was NOT verified"):
        if cli == "mcjepa-flow":
            argv = ["--weights", str(whole), "--variant", "micro", "--device", "cpu", "-o", str(tmp_path / "f.png")]
            assert flow_main(argv) == 0
        else:
            from mcjepa.cli.eval_models import load_eval_model

            args = argparse.Namespace(weights=str(whole), variant="micro", pretrained=False)
            assert load_eval_model(args, ("encoder", "flow_head"), torch.device("cpu")).flow_head is not None


# --------------------------------------------------------------------------- one offline switch


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """Empty caches; every HTTP request (huggingface_hub's httpx client, requests) is recorded and fails."""
    calls = []

    def hub_transport(request):
        calls.append(str(request.url))
        raise httpx2.ConnectError("the test allows no network", request=request)

    def requests_get(url, *args, **kwargs):
        calls.append(url)
        raise requests.ConnectionError("the test allows no network")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as imported without the variable
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("MCJEPA_OFFLINE", raising=False)
    monkeypatch.setenv("MCJEPA_CACHE", str(tmp_path / "mcjepa-cache"))
    monkeypatch.setattr(requests, "get", requests_get)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub_transport)))
    yield calls
    huggingface_hub.set_client_factory(default_client_factory)


@pytest.mark.parametrize("variable", ["MCJEPA_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize(
    "source",
    [
        "hf://org/repo",
        "hf://org/repo@main",
        "manifest key",
        "https://example.com/release",
        "https://example.com/e.safetensors",
    ],
)
def test_offline_switch_fails_at_once_for_every_source(
    no_network, variable, source, release_entry, tmp_path, monkeypatch
):
    if source == "manifest key":
        published = dict(release_entry[1], repo_id="org/published", revision="0" * 40, status="published")
        manifest = tmp_path / "m.json"
        manifest.write_text(json.dumps({"format_version": 1, "models": {"published-key": published}}))
        monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
        source = "published-key"
    monkeypatch.setenv(variable, "1")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_model(source)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert f"offline mode is on ({variable} is set)" in msg, msg
    assert f"Unset {variable}" in msg and "pass weights= " in msg and ".safetensors file" in msg
    assert no_network == []


def test_offline_switch_still_loads_from_the_cache(no_network, release_entry, micro, tmp_path, monkeypatch):
    sha = "1" * 40
    snapshot = tmp_path / "hf" / "models--org--cached" / "snapshots" / sha
    shutil.copytree(release_entry[0], snapshot)
    (tmp_path / "hf" / "models--org--cached" / "refs").mkdir()
    (tmp_path / "hf" / "models--org--cached" / "refs" / "main").write_text(sha)
    monkeypatch.setenv("MCJEPA_OFFLINE", "1")
    model = load_model("hf://org/cached")
    for a, b in zip(model.state_dict().values(), micro.state_dict().values()):
        assert torch.equal(a, b)
    assert no_network == []


# --------------------------------------------------------------------------- mcjepa-export and the manifest


@pytest.fixture(scope="module")
def demo_like():
    """A micro model whose config overrides one setting, as the demo run's does (finest_level = 1)."""
    base = micro_config()
    cfg = replace(base, flow_head=replace(base.flow_head, finest_level=1))
    g = torch.Generator().manual_seed(5)
    model = MCJEPA(cfg, flow_head=True, expander=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _same_flow(a, b):
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.randn(1, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        want = b(x1, x2)
        assert want.abs().max() > 0 and torch.equal(a(x1, x2), want)


def test_export_changes_no_manifest_by_default(run, tmp_path, capsys):
    repo_manifest = Path(REPO_DIR, "weights_manifest.json")
    before = repo_manifest.read_bytes()
    env_manifest = Path(os.environ["MCJEPA_MANIFEST"])
    env_manifest.write_text(json.dumps({"format_version": 1, "note": "t", "models": {}}))
    env_before = env_manifest.read_bytes()
    assert export_main([str(run), "--out", str(tmp_path / "rel")]) == 0
    assert "no manifest changed; --update-manifest PATH" in capsys.readouterr().err
    assert repo_manifest.read_bytes() == before and env_manifest.read_bytes() == env_before
    assert (tmp_path / "rel" / "release.json").is_file()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def demo_entry(demo_like, tmp_path):
    """``mcjepa-export --update-manifest``: (release folder, manifest path, its entry)."""
    run = write_run(tmp_path / "run", demo_like, steps=(6,))
    manifest, out = tmp_path / "manifest.json", tmp_path / "releases" / "demo"
    argv = [str(run), "--out", str(out), "--name", "micro-demo", "--update-manifest", str(manifest)]
    assert export_main(argv) == 0
    return out, manifest, load_manifest(manifest)["models"]["micro-demo"]


def test_update_manifest_entry_loads_by_its_key_offline(demo_like, demo_entry, no_network, monkeypatch):
    out, manifest, entry = demo_entry
    assert entry["variant"] == "micro" and entry["status"] == "local" and entry["url"] == out.resolve().as_uri()
    assert entry["config"]["flow_head"]["finest_level"] == 1  # config.json, not the variant, is the architecture
    monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
    monkeypatch.setenv("MCJEPA_OFFLINE", "1")
    _same_flow(load_model("micro-demo"), demo_like)
    assert no_network == []


def test_update_manifest_entry_loads_by_its_key_over_http(demo_like, demo_entry, tmp_path, monkeypatch):
    out, _, entry = demo_entry
    served = tmp_path / "served"
    shutil.copytree(out, served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        manifest = tmp_path / "http_manifest.json"
        url = f"http://127.0.0.1:{server.server_address[1]}"
        manifest.write_text(json.dumps({"format_version": 1, "models": {"micro-demo": dict(entry, url=url)}}))
        monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
        monkeypatch.setenv("MCJEPA_CACHE", str(tmp_path / "cache"))
        _same_flow(load_model("micro-demo"), demo_like)
        # the files are checked against the manifest's sha256, whatever the server sends
        data = bytearray((served / "flow_head.safetensors").read_bytes())
        data[-1] ^= 0x01
        (served / "flow_head.safetensors").write_bytes(bytes(data))
        monkeypatch.setenv("MCJEPA_CACHE", str(tmp_path / "cache2"))
        with pytest.raises(WeightsIntegrityError, match="has sha256 .*, expected"):
            load_model("micro-demo")
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- unclear messages made clear


def test_export_out_is_an_existing_file(run, micro, tmp_path, capsys):
    target = tmp_path / "release.txt"
    target.write_text("keep me")
    assert export_main([str(run), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--out {target} is an existing file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "keep me"
    with pytest.raises(ValueError, match="is an existing file; a release is a folder"):
        save_release(micro, target)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("with_hash", [False, True], ids=["no-hash", "hash"])
def test_renamed_pickle_says_so(micro, tmp_path, legacy, with_hash):
    path = tmp_path / "model.safetensors"
    torch.save(micro.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    kw = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()} if with_hash else {}
    with pytest.raises(WeightsIntegrityError) as info:
        load_model(path, variant="micro", **kw)
    msg = str(info.value)
    kind = "a pickle (protocol 2" if legacy else "a zip archive (what torch.save writes)"
    assert f"weights file {path} is {kind}" in msg and "renamed to .safetensors. Refusing" in msg, msg
    assert "weights file weights file" not in msg


@pytest.mark.parametrize("kind", ["hub encoder", "MCJEPA without flow head"])
def test_estimate_with_an_encoder_only_model(kind):
    if kind == "hub encoder":
        model = torch.hub.load(REPO_DIR, "mcjepa_small", source="local")  # the bundled encoder
        named = "ConvNeXtPyramid, the encoder alone"
    else:
        model = load_model(variant="micro", components=("encoder",))
        named = "an MCJEPA without a flow head"
    image = torch.rand(3, 64, 64)
    with pytest.raises(TypeError) as info:
        flow.estimate(image, image, model=model)
    msg = str(info.value)
    assert "needs a model with a flow head" in msg and named in msg, msg
    assert "'mcjepa_convnext_t_flow'" in msg and "flow.load(weights=" in msg


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1.000001, "the min is 0.0 and the max is 1.000001"), (-0.25, "the min is -0.25 and the max is 1.0")],
    ids=["1.000001", "-0.25"],
)
def test_float_range_message_shows_the_values_found(micro, value, shown):
    image = torch.linspace(0, 1, 3 * 64 * 64).reshape(3, 64, 64)
    image[1, 5, 7] = value
    with pytest.raises(ValueError) as info:
        flow.estimate(image, torch.rand(3, 64, 64), model=micro)
    msg = str(info.value)
    assert f"image1: float images must lie in [0, 1], but {shown} (1 of {3 * 64 * 64} values outside)" in msg, msg
