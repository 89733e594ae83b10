"""mcjepa-export: checkpoint -> release folder + model card -> manifest -> every weights= form,
bit-identical to the checkpoint's model (offline, CPU, micro variant)."""

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard

from mcjepa import build_model
from mcjepa.cli.export import main as export_main
from mcjepa.release import load_manifest, load_model, sha256_file
from mcjepa.release.export import (
    TABLE_END,
    TABLE_START,
    ExportError,
    eval_metrics_from_results,
    export_release,
    merge_manifest_entry,
    readme_table_block,
    weights_table_markdown,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHA = "89abcdef0123456789abcdef0123456789abcdef"
REPO = "org/mcjepa-micro-export"
TRAIN_CONFIG = {
    "name": "demo",
    "model": {"variant": "micro"},
    "optim": {"lr_encoder": 1e-3, "lr_expander": 1e-3, "lr_flow_head": 1e-3, "weight_decay": 1e-6},
    "schedule": {"epochs": 8, "steps_per_epoch": 40, "motion_start_epoch": 1, "vc_start_epoch": 2},
    "loss": {"alpha": 0.1},
    "data": {
        "content": {"type": "synthetic"},
        "motion": [{"name": "synthetic", "repeat": 1}],
        "content_batch_size": 32,
        "motion_batch_size": 8,
    },
}
# the layout mcjepa-eval flow writes: only the model's own row becomes metrics (no baselines, counts, timings)
EVAL_RESULTS = {
    "task": "flow",
    "model": {"weights": "release", "random_init": False},
    "dataset": ["sintel-clean"],
    "datasets": {
        "sintel-clean": {
            "n_pairs": 4,
            "methods": {
                "mcjepa": {"epe_pooled": 9.5, "n_pixels": 100, "seconds_per_pair": 0.1},
                "zero": {"epe_pooled": 20.0},
            },
            "worst": {"mcjepa": []},
        }
    },
}


def seeded_training_model(seed: int):
    """A micro model with expander (as the trainer holds it), every parameter randomised."""
    g = torch.Generator().manual_seed(seed)
    model = build_model("micro", expander=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def write_run(run_dir: Path, model, steps=(10, 20)) -> Path:
    """Lay out a run folder the way mcjepa.train writes it; the newest checkpoint holds ``model``."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"train": TRAIN_CONFIG}))
    (run_dir / "summary.json").write_text(
        json.dumps({"steps": steps[-1], "trained_epe": 1.25, "untrained_epe": 3.5, "last_losses": {"total": 0.7}})
    )
    for i, step in enumerate(steps):
        state = model.state_dict()
        if i < len(steps) - 1:  # older checkpoints hold other weights: export must pick the newest
            state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
        payload = {
            "format": "mcjepa-train-checkpoint-v1",
            "step": step,
            "model": state,
            "model_config": json.dumps(model.config.to_dict()),
            "config": json.dumps(TRAIN_CONFIG),
        }
        torch.save(payload, run_dir / "checkpoints" / f"ckpt_{step:09d}.pt")
    return run_dir


@pytest.fixture(scope="module")
def trained():
    return seeded_training_model(321)


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(5)
    return torch.randn(1, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)


@pytest.fixture(scope="module")
def reference(trained, frames):
    with torch.no_grad():
        flow = trained(*frames)
        assert flow.abs().min() > 0
        return flow, trained.encoder(frames[0])


@pytest.fixture
def exported(trained, tmp_path):
    run = write_run(tmp_path / "run", trained)
    evals = tmp_path / "sintel.json"
    evals.write_text(json.dumps(EVAL_RESULTS))
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text(json.dumps({"format_version": 1, "note": "t", "models": {"other": {"status": "local"}}}))
    out = tmp_path / "release"
    rc = export_main(
        [
            str(run),
            "--out",
            str(out),
            "--name",
            "micro-test",
            "--eval-results",
            str(evals),
            "--update-manifest",
            str(manifest),
        ]
    )
    assert rc == 0
    return out, manifest


def _same(model, frames, reference):
    with torch.no_grad():
        assert torch.equal(model(*frames), reference[0])
        assert all(torch.equal(a, b) for a, b in zip(model.encoder(frames[0]), reference[1]))


def test_export_writes_release_card_and_manifest(capsys, exported):
    out, manifest_path = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "encoder.safetensors",
        "flow_head.safetensors",
        "release.json",
    ]
    entry = json.loads((out / "release.json").read_text())
    manifest = load_manifest(manifest_path)
    assert set(manifest["models"]) == {"other", "micro-test"}  # other entries kept
    assert manifest["models"]["micro-test"] == dict(entry, url=out.resolve().as_uri())  # where it is
    assert entry["status"] == "local" and entry["name"] == "micro-test" and entry["variant"] == "micro"
    assert entry["trained_on"] == "demo" and entry["metadata"]["steps"] == 20
    assert entry["metrics"] == {"trained_epe": 1.25, "untrained_epe": 3.5, "flow.sintel-clean.epe_pooled": 9.5}
    for info in entry["files"].values():
        assert info["sha256"] == sha256_file(out / info["filename"])
        assert info["size"] == (out / info["filename"]).stat().st_size
    printed = json.loads(capsys.readouterr().out)
    assert printed["files"] == entry["files"]


def test_model_card_is_valid_hf_card(exported):
    out, _ = exported
    card = ModelCard((out / "README.md").read_text())  # huggingface_hub parses the YAML front matter
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["library_name"] == "mcjepa"
    assert data["tags"] == ["optical-flow", "self-supervised-learning", "jepa"]
    assert data["pipeline_tag"] == "image-feature-extraction"
    text = card.text
    for needle in (
        "`trained_epe` | 1.25",
        "`flow.sintel-clean.epe_pooled` | 9.5",
        "demo-scale",
        'mcjepa.create_model("mcjepa_micro", weights=',
        "flow.load",
    ):
        assert needle in text, needle
    assert "`synthetic` x1" in text and "lr encoder 0.001" in text


def test_every_weights_form_is_bit_identical(exported, frames, reference, tmp_path, monkeypatch):
    out, manifest_path = exported
    _same(load_model(out), frames, reference)  # release folder
    _same(load_model(out.as_uri()), frames, reference)  # file:// URL
    enc = load_model(out / "encoder.safetensors", components=("encoder",))  # one component file
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(enc.encoder(frames[0]), reference[1]))
    # the manifest key of a local entry loads the folder its url names
    monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest_path))
    _same(load_model("micro-test"), frames, reference)
    # once published (what mcjepa-publish records), the key and hf:// load through the HF cache, offline
    entry = json.loads((out / "release.json").read_text())
    merge_manifest_entry("micro-test", dict(entry, repo_id=REPO, revision=SHA, status="published"), manifest_path)
    repo = tmp_path / "hf" / ("models--" + REPO.replace("/", "--"))
    (repo / "snapshots" / SHA).mkdir(parents=True)
    for f in out.iterdir():
        shutil.copy(f, repo / "snapshots" / SHA / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _same(load_model("micro-test"), frames, reference)
    _same(load_model(f"hf://{REPO}@{SHA}"), frames, reference)
    _same(load_model(f"hf://{REPO}"), frames, reference)
    _same(load_model(pretrained=True, variant="micro"), frames, reference)


def test_checkpoint_file_and_expander(trained, tmp_path):
    run = write_run(tmp_path / "run", trained, steps=(5,))
    ckpt = run / "checkpoints" / "ckpt_000000005.pt"
    entry = export_release(ckpt, tmp_path / "rel", with_expander=True)
    assert set(entry["files"]) == {"encoder", "flow_head", "expander"}
    model = load_model(tmp_path / "rel", components=("encoder", "flow_head", "expander"))
    for k, v in trained.expander.state_dict().items():
        assert torch.equal(model.expander.state_dict()[k], v), k


def test_export_errors(trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert export_main([str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    with pytest.raises(ExportError, match="does not exist"):
        export_release(tmp_path / "nope", tmp_path / "x")
    # a checkpoint whose state does not fit its config
    run = write_run(tmp_path / "run", trained, steps=(1,))
    ckpt = run / "checkpoints" / "ckpt_000000001.pt"
    payload = torch.load(ckpt, weights_only=True)
    payload["model"] = {k: v for k, v in payload["model"].items() if not k.startswith("flow_head.")}
    torch.save(payload, ckpt)
    with pytest.raises(ExportError, match="missing .*flow_head"):
        export_release(run, tmp_path / "x")


def test_eval_results_of_a_random_model_are_refused(tmp_path):
    with pytest.raises(ExportError, match="randomly initialised"):
        eval_metrics_from_results({"task": "flow", "model": {"random_init": True}, "datasets": {}})
    assert eval_metrics_from_results({"task": "davis", "model": {}, "jf_mean": 0.5, "n_videos": 3}) == {
        "davis.jf_mean": 0.5
    }


def test_published_entry_is_not_overwritten_without_force(tmp_path):
    path = tmp_path / "m.json"
    published = {"status": "published", "repo_id": REPO, "revision": SHA, "files": {}}
    merge_manifest_entry("a", published, path)
    with pytest.raises(ExportError, match="refusing to overwrite.*--force"):
        merge_manifest_entry("a", {"status": "local", "files": {}}, path)
    assert load_manifest(path)["models"]["a"] == published
    merge_manifest_entry("a", {"status": "local", "files": {}}, path, force=True)
    assert load_manifest(path)["models"]["a"]["status"] == "local"


def test_merge_writes_through_a_symlinked_manifest(tmp_path):
    """The repository's weights_manifest.json links to mcjepa/weights_manifest.json: merging into the
    link updates the packaged file and keeps the link."""
    (tmp_path / "pkg").mkdir()
    target = tmp_path / "pkg" / "weights_manifest.json"
    target.write_text(json.dumps({"format_version": 1, "note": "t", "models": {}}))
    link = tmp_path / "weights_manifest.json"
    link.symlink_to("pkg/weights_manifest.json")
    assert merge_manifest_entry("a", {"status": "local", "files": {}}, link) == target
    assert link.is_symlink() and load_manifest(target)["models"] == {"a": {"status": "local", "files": {}}}


def test_weights_table():
    assert weights_table_markdown({"models": {}}).splitlines()[-1] == "| _none published yet_ | | | | | |"
    manifest = {
        "models": {
            "b-local": {"status": "local", "variant": "micro"},
            "a": {
                "status": "published",
                "variant": "convnext_t",
                "trained_on": ["ImageNet", "KITTI"],
                "metrics": {"trained_epe": 2.0, "loss": 1.0},
                "license": "MIT",
                "repo_id": REPO,
                "revision": SHA,
            },
        }
    }
    lines = weights_table_markdown(manifest).splitlines()
    assert len(lines) == 3  # header, rule, the one published entry (local ones are left out)
    assert lines[2] == (
        '| `a` | convnext_t | ImageNet, KITTI | trained_epe 2 | MIT | `weights="a"` '
        f"([hf://{REPO}@{SHA[:12]}](https://huggingface.co/{REPO})) |"
    )


def test_readme_weights_table_matches_manifest():
    path = REPO_ROOT / "README.md"
    assert path.is_file(), f"{path} is missing; it must hold the weights table between {TABLE_START} and {TABLE_END}"
    readme = path.read_text()
    assert TABLE_START in readme and TABLE_END in readme, (
        f"README.md must hold the weights table between {TABLE_START} and {TABLE_END}; "
        "generate it with mcjepa.release.export.weights_table_markdown(mcjepa.release.load_manifest())"
    )
    manifest = load_manifest(REPO_ROOT / "weights_manifest.json")
    assert readme_table_block(readme) == weights_table_markdown(manifest), (
        "README.md's weights table differs from weights_manifest.json (published and bundled entries): paste the "
        "output of `python -c 'from mcjepa.release.export import weights_table_markdown; from mcjepa.release import "
        "load_manifest; print(weights_table_markdown(load_manifest()))'` between the markers"
    )
