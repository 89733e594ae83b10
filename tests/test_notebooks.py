"""The notebooks run top to bottom on a CPU (executed from a temporary copy with nbclient, so the
committed outputs are not rewritten) and print what their prose promises."""

import shutil
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install nbformat nbclient ipykernel matplotlib (the dev extra)")
nbclient = pytest.importorskip("nbclient", reason="pip install nbclient (the dev extra)")
pytest.importorskip("ipykernel", reason="pip install ipykernel (the dev extra)")
pytest.importorskip("matplotlib", reason="pip install matplotlib (the dev extra)")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = {
    "01_features.ipynb": ["mcjepa_small_real", "level 0: (2, 16,", "level 5: (2, 64,"],
    "02_optical_flow.ipynb": ["mcjepa_small_real", "end-point error of this model on it:"],
    "03_training.ipynb": ["bit-identical to the checkpoint: True", "encoder.safetensors"],
}
CELL_TIMEOUT_S = 300


def _text_outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs(name, tmp_path):
    src = NOTEBOOKS / name
    committed = src.read_bytes()
    copy = tmp_path / name
    shutil.copy(src, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:  # start from a clean slate: no stale outputs can satisfy the checks below
        if cell.cell_type == "code":
            cell.outputs = []
    start = time.time()
    nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    elapsed = time.time() - start
    text = _text_outputs(nb)
    for needle in EXPECTED[name]:
        assert needle in text, f"{name}: expected {needle!r} in its outputs"
    assert any("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])), (
        f"{name} drew no figure"
    )
    assert src.read_bytes() == committed  # the committed notebook was not rewritten
    print(f"{name}: {elapsed:.1f} s")
