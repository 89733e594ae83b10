"""The wheel: built from this checkout and installed (unzipped) into a fresh virtual environment, the
package finds its own manifest and bundled release, not the repository's (offline, CPU, ~10 s)."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import torch
from fixtures_models import seeded_micro

from mcjepa.cli.bundle import bundle_release
from mcjepa.release import DEFAULT_MODEL, save_release

REPO = Path(__file__).resolve().parents[1]

# run inside the fresh environment, from a folder outside the repository
PROBE = """
import contextlib, io, json, runpy, sys, warnings
import mcjepa
from mcjepa import flow
from mcjepa.release import DEFAULT_MODEL, load_manifest, manifest_candidates, packaged_manifest_path, resolve
from mcjepa.release.bundled import bundled_root

release = resolve(DEFAULT_MODEL)
model = flow.load()
out = {
    "mcjepa": mcjepa.__file__,
    "candidates": [str(p) for p in manifest_candidates()],
    "manifest": str(packaged_manifest_path()),
    "models": sorted(load_manifest()["models"]),
    "bundled_root": str(bundled_root()),
    "files": {c: str(p) for c, p in release.files.items()},
    "release_name": model.release_name,
    "description": model.weights_description,
}
# python -m mcjepa.cli.bundle runs cleanly: mcjepa.release does not import it first (runpy would warn)
with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as text:
    warnings.simplefilter("error", RuntimeWarning)
    sys.argv = ["bundle", "--help"]
    try:
        runpy.run_module("mcjepa.cli.bundle", run_name="__main__")
    except SystemExit as exc:
        out["bundle_help"] = [exc.code, text.getvalue().startswith("usage: python -m mcjepa.cli.bundle")]
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCJEPA_", "PYTHON"))}
    env.update(MCJEPA_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def test_wheel_ships_the_manifest_and_bundled_release(tmp_path):
    # the sources a wheel is built from, with a bundled micro release standing in for the trained model
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "mcjepa", src / "mcjepa", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "bundled"))
    save_release(seeded_micro(5), tmp_path / "release", metadata={"trained_on": "wheel test"})
    bundle_release(
        tmp_path / "release",
        bundled_dir=src / "mcjepa" / "bundled",
        manifest=src / "mcjepa" / "weights_manifest.json",
        provenance={"command": "test"},
    )
    stand_in = json.loads((src / "mcjepa" / "weights_manifest.json").read_text())["models"][DEFAULT_MODEL]
    repo_entry = json.loads((REPO / "weights_manifest.json").read_text())["models"].get(DEFAULT_MODEL)
    assert stand_in != repo_entry  # the repository's differs, so the probe below can tell them apart

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), "./src"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("mcjepa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = f"mcjepa/bundled/{DEFAULT_MODEL}"
    for name in (
        "mcjepa/weights_manifest.json",
        "mcjepa/release/sources.py",
        "mcjepa/train/configs/real.toml",
        "mcjepa/assets/photos/astronaut.jpg",  # the real-texture set's bundled photos
    ):
        assert name in names, name
    for name in ("encoder.safetensors", "flow_head.safetensors", "release.json", "config.json"):
        assert f"{bundled}/{name}" in names, name

    # "install": a fresh environment whose site-packages holds the wheel's files; the dependencies
    # (torch, ...) come from this environment's site-packages, appended by a .pth file (whose own .pth
    # files, among them the editable install of this checkout, are not processed)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    rel = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    site = venv / rel
    assert site.is_dir(), site
    zipfile.ZipFile(wheel).extractall(site)
    (site / "zz_dependencies.pth").write_text(str(Path(torch.__file__).resolve().parents[1]) + "\n")
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert probe.returncode == 0, probe.stderr
    out = json.loads(probe.stdout.strip().splitlines()[-1])

    installed = (site / "mcjepa").resolve()
    assert Path(out["mcjepa"]).resolve() == installed / "__init__.py"  # not this checkout, not the editable install
    assert (
        out["candidates"] == [out["manifest"]]
        and Path(out["manifest"]).resolve() == installed / "weights_manifest.json"
    )
    assert out["models"] == [DEFAULT_MODEL]  # the packaged manifest, not the repository's
    installed_entry = json.loads((installed / "weights_manifest.json").read_text())["models"][DEFAULT_MODEL]
    assert installed_entry == stand_in
    assert Path(out["bundled_root"]).resolve() == installed / "bundled"
    assert all(Path(p).resolve().is_relative_to(installed / "bundled" / DEFAULT_MODEL) for p in out["files"].values())
    assert (
        out["release_name"] == DEFAULT_MODEL
        and out["description"] == f"{DEFAULT_MODEL} (bundled, trained on wheel test)"
    )
    assert out["bundle_help"] == [0, True]
