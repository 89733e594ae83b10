"""From a training run to a release folder: export, model card, manifest entry.

:func:`export_release` reads a training checkpoint (``mcjepa.train.checkpoint.load_checkpoint``,
``weights_only=True``), rebuilds the model strictly, writes the release with
:func:`mcjepa.release.save_release` (its ``release.json`` is the manifest entry) and adds a
Hugging Face model card ``README.md``. Only when asked (``manifest=PATH``, ``mcjepa-export
--update-manifest PATH``) is the entry merged into a manifest (:func:`mcjepa.release.merge_entry`),
with ``status: "local"`` and the folder's ``url`` so that it loads by its key (``mcjepa-publish``
later pins it to a Hub commit). :func:`weights_table_markdown` renders the manifest as the README's
weights table. The model card (``README.md`` of a release) is generated here too.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcjepa.architecture import MODEL_VARIANTS, ModelConfig
from mcjepa.model import MCJEPA
from mcjepa.release import (
    DEFAULT_MODEL,
    RELEASE_FILENAME,
    ManifestError,
    default_manifest_path,
    merge_entry,
    save_release,
)
from mcjepa.utils.atomic import atomic_write_bytes, json_bytes, read_json

__all__ = [
    "ExportError",
    "default_manifest_path",
    "export_release",
    "find_checkpoint",
    "flatten_metrics",
    "merge_manifest_entry",
    "model_card",
    "eval_metrics_from_results",
    "model_from_checkpoint",
    "readme_table_block",
    "weights_table_markdown",
]

CARD_FILENAME = "README.md"
CARD_REPO_PLACEHOLDER = "hf://ORG/NAME"
CARD_TAGS = ("optical-flow", "self-supervised-learning", "jepa")
TABLE_START = "<!-- weights-table:start -->"
TABLE_END = "<!-- weights-table:end -->"
_EMPTY_TABLE_ROW = "| _none published yet_ | | | | | |"


class ExportError(RuntimeError):
    """A run, checkpoint or manifest cannot be exported or merged; the message says why."""


# --------------------------------------------------------------------------- checkpoints


def find_checkpoint(source: str | os.PathLike) -> Path:
    """Return the checkpoint file for ``source``: the file itself, or the newest
    ``checkpoints/ckpt_*.pt`` of a run folder."""
    from mcjepa.train.checkpoint import latest_checkpoint

    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise ExportError(
                f"{path} holds no checkpoint (looked for {path / 'checkpoints' / 'ckpt_*.pt'}); "
                "pass a run folder written by mcjepa-train or a checkpoint file"
            )
        return found
    raise ExportError(f"{path} does not exist: expected a run folder or a checkpoint file")


def model_from_checkpoint(checkpoint: str | os.PathLike, with_expander: bool = False) -> tuple[MCJEPA, dict[str, Any]]:
    """Rebuild the model of a training checkpoint; return ``(model in eval mode, checkpoint dict)``.

    The state dict is loaded strictly; ``expander.*`` keys are dropped unless ``with_expander``.
    """
    from mcjepa.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    missing = [k for k in ("model", "model_config") if k not in ckpt]
    if missing:
        raise ExportError(f"{checkpoint} is not an mcjepa training checkpoint: it lacks {missing}")
    cfg_raw = ckpt["model_config"]
    cfg = ModelConfig.from_dict(json.loads(cfg_raw) if isinstance(cfg_raw, str) else cfg_raw)
    state = dict(ckpt["model"])
    has_expander = any(k.startswith("expander.") for k in state)
    if with_expander and not has_expander:
        raise ExportError(f"--with-expander: {checkpoint} holds no expander.* weights")
    if not with_expander:
        state = {k: v for k, v in state.items() if not k.startswith("expander.")}
    model = MCJEPA(cfg, flow_head=True, expander=with_expander)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(
            f"{checkpoint} does not fit its own model config: missing {result.missing_keys[:10]}, "
            f"unexpected {result.unexpected_keys[:10]}"
        )
    return model.eval(), ckpt


# --------------------------------------------------------------------------- metrics


def flatten_metrics(obj: Any, prefix: str = "") -> dict[str, float]:
    """Return the finite numbers (not bools) found in a nested JSON object, keyed by dotted path."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_metrics(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if math.isfinite(obj):
            out[prefix.rstrip(".")] = obj
    return out


_NOT_METRICS = ("n_", "seconds", "worst", "dumps")


def eval_metrics_from_results(results: Any, where: str | os.PathLike = "eval results") -> dict[str, float]:
    """Return the model's metrics from an ``mcjepa-eval`` results JSON, keyed
    ``<task>.<dataset>.<metric>``; baseline rows, counts and timings are left out.

    Raises :class:`ExportError` for results of a randomly initialised model (not a release's)."""
    if not isinstance(results, dict):
        raise ExportError(f"{where}: expected an mcjepa-eval results object, got {type(results).__name__}")
    if (results.get("model") or {}).get("random_init"):
        raise ExportError(f"{where}: these results are of a randomly initialised model, not of this release")
    task = str(results.get("task", Path(where).stem))
    out: dict[str, float] = {}
    datasets = results.get("datasets")
    if isinstance(datasets, dict) and all(isinstance(d, dict) and "methods" in d for d in datasets.values()):
        for ds, d in datasets.items():
            for method, m in d["methods"].items():
                if str(method).startswith("mcjepa"):
                    out.update({f"{task}.{ds}.{k}": v for k, v in flatten_metrics(m).items()})
    else:
        skip = {"task", "model", "device", "dataset", "root", "methods"}
        body = {k: v for k, v in results.items() if k not in skip}
        out = {f"{task}.{k}": v for k, v in flatten_metrics(body).items()}
    return {k: v for k, v in out.items() if not any(part.startswith(_NOT_METRICS) for part in k.split("."))}


def _run_dir_of(checkpoint: Path) -> Path | None:
    parent = checkpoint.parent
    if parent.name == "checkpoints" and (parent.parent / "config.json").is_file():
        return parent.parent
    return parent.parent if parent.name == "checkpoints" else None


# --------------------------------------------------------------------------- model card


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _train_summary_lines(train: Mapping[str, Any]) -> list[str]:
    lines = []
    data = train.get("data", {}) or {}
    content = data.get("content", {}) or {}
    motion = data.get("motion", []) or []
    if content:
        lines.append(
            f"- Content stream (VICReg): `{content.get('type', '?')}` data, batch {data.get('content_batch_size')}"
        )
    if motion:
        names = ", ".join(f"`{m.get('name', '?')}` x{m.get('repeat', 1)}" for m in motion)
        lines.append(f"- Motion stream (self-supervised flow): {names}, batch {data.get('motion_batch_size')}")
    sched = train.get("schedule", {}) or {}
    if sched:
        lines.append(
            f"- Schedule: {sched.get('epochs')} epochs of {sched.get('steps_per_epoch') or 'one pass'} steps, "
            f"motion from epoch {sched.get('motion_start_epoch')}, L_vc from epoch {sched.get('vc_start_epoch')}, "
            f"occlusion mask from epoch {sched.get('occlusion_start_epoch', 0)}, "
            f"sampling `{sched.get('sampling')}`"
        )
    optim = train.get("optim", {}) or {}
    if optim:
        lines.append(
            f"- AdamW: lr encoder {optim.get('lr_encoder')}, expander {optim.get('lr_expander')}, "
            f"flow head {optim.get('lr_flow_head')}, weight decay {optim.get('weight_decay')}, "
            f"warm-up {optim.get('warmup_epochs')} epochs, cosine to {optim.get('end_lr')}"
        )
    loss = train.get("loss", {}) or {}
    if "alpha" in loss:
        lines.append(f"- Loss: alpha (motion weight) {loss['alpha']}; full loss settings in `release.json`")
    return lines


def model_card(
    entry: Mapping[str, Any],
    *,
    train_config: Mapping[str, Any] | None = None,
    run_metrics: Mapping[str, float] | None = None,
    eval_metrics: Mapping[str, float] | None = None,
    steps: int | None = None,
    repo_id: str | None = None,
) -> str:
    """Return a Hugging Face model card (``README.md`` text with YAML front matter) for a release."""
    name = entry.get("name", "mcjepa")
    license_ = entry.get("license", "MIT")
    variant = entry.get("variant") or "custom"
    arch = (entry.get("config") or {}).get("name") or f"mcjepa_{variant}"  # the registry's architecture name
    components = ", ".join(f"`{info['filename']}`" for info in entry.get("files", {}).values())
    train = dict(train_config or {})
    demo = train.get("name") in ("demo",) or variant == "micro"
    lines = [
        "---",
        f"license: {str(license_).lower()}",
        "library_name: mcjepa",
        "tags:",
        *[f"- {t}" for t in CARD_TAGS],
        "pipeline_tag: image-feature-extraction",
        "---",
        "",
        f"# {name}",
        "",
        "An [MC-JEPA](https://arxiv.org/abs/2307.12698) model (Bardes, Ponce, LeCun 2023) exported with "
        "the `mcjepa` package: one ConvNeXt encoder trained jointly on self-supervised optical flow "
        "(motion) and VICReg (content). The encoder gives a 6-level feature pyramid (strides 2, 4, 4, 8, 16, 32); "
        "the flow head predicts optical flow in pixels (u right, v down).",
        "",
        f"- Architecture: variant `{variant}` (full config in `config.json`)",
        f"- Files: {components}, `config.json`, `release.json` (sha256 and size of every weight file)",
    ]
    if steps is not None:
        lines.append(f"- Training steps: {steps}")
    if demo:
        lines += [
            "",
            "**This is a demo-scale model** (tiny architecture and/or a short run on synthetic data). "
            "Its features and flow are not useful for real work; it exists to test the release path.",
        ]
    lines += ["", "## Training data and recipe", ""]
    if train:
        lines.append(f"Training config `{train.get('name', '?')}`:")
        lines.append("")
        lines += _train_summary_lines(train) or ["- (no recipe recorded)"]
    else:
        lines.append("No training config was recorded with this release.")
    lines += ["", "## Measured metrics", ""]
    rows = [("run summary", k, v) for k, v in (run_metrics or {}).items()]
    rows += [("mcjepa-eval", k, v) for k, v in (eval_metrics or {}).items()]
    if rows:
        lines += ["| source | metric | value |", "|---|---|---|"]
        lines += [f"| {src} | `{k}` | {_fmt(v)} |" for src, k, v in rows]
        lines += [
            "",
            "`*_epe` is the mean end-point error in pixels (lower is better). Run-summary metrics are measured "
            "on held-out synthetic pairs during training; `mcjepa-eval` metrics on the named benchmark.",
        ]
    else:
        lines.append("No metrics were recorded for this release.")
    hf = f"hf://{repo_id}" if repo_id else CARD_REPO_PLACEHOLDER  # mcjepa-publish fills in the repo id
    lines += [
        "",
        "## License",
        "",
        f"{license_}.",
        "",
        "## How to load it",
        "",
        "```python",
        "import mcjepa",
        f'model = mcjepa.create_model("{arch}", weights="{hf}")  # encoder + flow head; .encoder: the features',
        "",
        "from mcjepa import flow",
        f'model = flow.load(weights="{hf}")  # or a local copy of this folder',
        "f = flow.estimate(frame1, frame2, model=model)  # (2, H, W) float32, pixels",
        "```",
        "",
        "Every weight file is checked against the sha256 in `release.json` before it is read; "
        "only safetensors files are loaded.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- manifest


def merge_manifest_entry(
    name: str, entry: Mapping[str, Any], manifest_path: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Add or replace ``models[name]`` in the manifest (default: :func:`default_manifest_path`) with
    :func:`mcjepa.release.merge_entry`; return the manifest path. A ``published`` entry is only
    replaced with ``force`` (otherwise :class:`ExportError`)."""
    try:
        return merge_entry(name, entry, manifest_path, force=force)
    except ManifestError as exc:
        raise ExportError(str(exc)) from None


# --------------------------------------------------------------------------- export


def export_release(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    with_expander: bool = False,
    eval_results: Sequence[str | os.PathLike] = (),
    name: str | None = None,
    license: str = "MIT",
    manifest: str | os.PathLike | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Export a run folder (newest checkpoint) or checkpoint file as a release folder.

    Writes ``<component>.safetensors``, ``config.json``, ``release.json`` (the manifest entry)
    and a model card ``README.md`` into ``out_dir``, and returns the entry. No manifest is
    touched unless ``manifest`` names one: then the entry is merged into it under ``name``
    (default: the folder name of ``out_dir``) with ``status: "local"`` and ``url`` = the
    folder's ``file://`` URL, so that ``weights=name`` loads it (verified against the entry).
    The same checkpoint exported twice gives byte-identical files.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(
            f"--out {out} is an existing file, not a folder: a release is a folder (<component>.safetensors, "
            f"config.json, {RELEASE_FILENAME}, {CARD_FILENAME}). Pass a new folder path (or an existing release "
            "folder to overwrite its files)."
        )
    ckpt_path = find_checkpoint(source)
    model, ckpt = model_from_checkpoint(ckpt_path, with_expander=with_expander)
    name = name or out.resolve().name
    train_raw = ckpt.get("config")
    train = json.loads(train_raw) if isinstance(train_raw, str) else dict(train_raw or {})
    steps = int(ckpt["step"]) if "step" in ckpt else None

    run_metrics: dict[str, float] = {}
    run_dir = _run_dir_of(ckpt_path)
    if run_dir is not None and (run_dir / "summary.json").is_file():
        summary = read_json(run_dir / "summary.json", "run summary", ExportError)
        run_metrics = {k: v for k, v in flatten_metrics(summary).items() if k.startswith(("trained_", "untrained_"))}
    eval_metrics: dict[str, float] = {}
    for p in eval_results:
        eval_metrics.update(eval_metrics_from_results(read_json(Path(p), "eval results", ExportError), Path(p)))

    components = ["encoder", "flow_head"] + (["expander"] if with_expander else [])
    # the variant the run was built from (its config may override parts of it: config.json is exact)
    model_section = train.get("model")
    variant = model_section.get("variant") if isinstance(model_section, dict) else None
    metadata: dict[str, Any] = {
        "trained_on": train.get("name", "unknown"),
        "metrics": {**run_metrics, **eval_metrics},
        "license": license,
        "steps": steps,
        "checkpoint": ckpt_path.name,
        "train_config": train,
    }
    if variant in MODEL_VARIANTS:
        metadata["variant"] = variant
    entry = save_release(model, out, components=components, metadata=metadata)
    entry["name"] = name
    atomic_write_bytes(out / RELEASE_FILENAME, json_bytes(entry))
    card = model_card(entry, train_config=train, run_metrics=run_metrics, eval_metrics=eval_metrics, steps=steps)
    atomic_write_bytes(out / CARD_FILENAME, card.encode())
    if manifest is not None:
        merge_manifest_entry(name, dict(entry, url=out.resolve().as_uri()), manifest, force=force)
    return entry


# --------------------------------------------------------------------------- README table


def weights_table_markdown(manifest: Mapping[str, Any]) -> str:
    """Return the README's weights table (Markdown) for the manifest's **published** and **bundled**
    entries: one row per release with its name, variant, training data, key metrics, license and how
    to load it (a pinned ``weights=`` string; bundled ones ship with the package). Local entries are
    left out (they exist on one machine only)."""
    header = [
        "| name | variant | trained on | metrics | license | load with |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for name, e in sorted((manifest.get("models") or {}).items()):
        if not isinstance(e, dict) or e.get("status") not in ("published", "bundled"):
            continue
        metrics = e.get("metrics") or {}
        shown = [k for k in sorted(metrics) if k.startswith("trained_") or "epe" in k.lower()][:3]
        cell = ", ".join(f"{k} {_fmt(metrics[k])}" for k in shown) or "-"
        trained_on = e.get("trained_on")
        if isinstance(trained_on, list):
            trained_on = ", ".join(map(str, trained_on))
        if e.get("status") == "bundled":
            where = "bundled in the package" + (", the `flow.load()` default" if name == DEFAULT_MODEL else "")
            load = f'`weights="{name}"` ({where})'
        else:
            rev = str(e.get("revision", ""))[:12]
            load = f'`weights="{name}"` ([hf://{e.get("repo_id")}@{rev}](https://huggingface.co/{e.get("repo_id")}))'
        rows.append(
            f"| `{name}` | {e.get('variant') or 'custom'} | {trained_on or '-'} | {cell} | {e.get('license', '-')} "
            f"| {load} |"
        )
    return "\n".join(header + (rows or [_EMPTY_TABLE_ROW]))


def readme_table_block(text: str) -> str:
    """Return the text between the README's weights-table markers (stripped); raise
    :class:`ExportError` naming the markers when they are missing."""
    if TABLE_START not in text or TABLE_END not in text:
        raise ExportError(
            f"README.md lacks the weights-table markers {TABLE_START} / {TABLE_END}: add them around the "
            f"weights table (generate it with mcjepa.release.export.weights_table_markdown(mcjepa.release.load_manifest()))"
        )
    return text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
