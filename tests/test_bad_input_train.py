"""Bad input and faults around training, flow files and frames (issue 13): each input below is
refused with a message naming the key, path or cause (no traceback from deep inside), or handled
as shown.

==========================================================  ==================================================================
input                                                       expected
==========================================================  ==================================================================
DataLoader workers left at their default                    min(default, CPUs available) (eval --workers, data.num_workers)
16-bit grayscale PNG as a frame or image                    scaled from [0, 65535] (Pillow's convert clips it to white);
                                                            a float (mode F) image is refused
write_flo / write_kitti_flow with NaN or inf flow           ValueError "refusing to write non-finite flow"; no file written
mcjepa-flow -o DIR, -o x.xyz, a folder as FRAME, NaN flow   exit 2 before the model runs: "... is a folder", "unknown image
                                                            extension", "is a folder, not an image file", "non-finite flow"
==========================================================  ==================================================================
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import TINY

from mcjepa.train.config import load_config

CKPT = "ckpt_{:09d}.pt"


# ------------------------------------------------------------------------------ DataLoader workers


def test_default_worker_counts_follow_the_cpus(monkeypatch):
    from mcjepa.cli.eval import build_parser
    from mcjepa.data import workers
    from mcjepa.train.data import build_content_stream
    from mcjepa.train.distributed import DistInfo

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert workers.available_cpus() == 2
    assert workers.resolve_num_workers(None) == 2  # not 4: PyTorch's "suggested max is 2"
    assert workers.resolve_num_workers(workers.AUTO, default=8) == 2
    assert workers.resolve_num_workers(None, processes=4) == 1
    assert workers.resolve_num_workers(0) == 0 and workers.resolve_num_workers(6) == 6  # explicit: as given
    parser = build_parser()
    assert parser.parse_args(["probe", "--dataset", "idx"]).workers is None
    assert parser.parse_args(["segmentation", "--dataset", "voc", "--root", "x"]).workers is None
    cfg = load_config("demo", [*TINY, "data.num_workers=-1"])
    assert load_config("paper").data.num_workers == workers.AUTO
    stream, _ = build_content_stream(cfg, DistInfo(rank=0, world_size=1, local_rank=0))
    assert stream.num_workers == 2


# ------------------------------------------------------------------------------ images and flow files


def _png16(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow's 16-bit grayscale
    return path


def _readers():
    from mcjepa.cli.flow import _read_image
    from mcjepa.data.content import ImageFiles
    from mcjepa.data.motion import _to_float_image
    from mcjepa.flow import _single_to_tensor

    return {
        "mcjepa-flow frame": lambda p: np.asarray(_read_image(str(p))),
        "flow.estimate PIL input": lambda p: _single_to_tensor(Image.open(p), "image1").permute(1, 2, 0).numpy(),
        "motion frame": lambda p: (_to_float_image(Image.open(p), "x") * 255).round().byte().permute(1, 2, 0).numpy(),
        "content image folder": lambda p: np.asarray(ImageFiles(p.parent)[0]),
    }


@pytest.mark.parametrize(
    "reader", ["mcjepa-flow frame", "flow.estimate PIL input", "motion frame", "content image folder"]
)
def test_16bit_png_is_scaled_not_clipped(tmp_path, reader):
    ramp = np.linspace(0, 65535, 48 * 40).reshape(40, 48)
    path = _png16(tmp_path / "frame.png", ramp)
    rgb = _readers()[reader](path)
    assert rgb.shape == (40, 48, 3) and rgb.dtype == np.uint8
    expected = np.round(ramp / 257).astype(np.int64)
    assert np.abs(rgb[..., 0].astype(np.int64) - expected).max() <= 1
    assert (rgb == 255).mean() < 0.01  # Pillow's convert("RGB") makes ~99% of them white


def test_float_images_are_refused_as_frames():
    from mcjepa.image_io import to_rgb

    with pytest.raises(ValueError, match="floating-point image"):
        to_rgb(Image.fromarray(np.full((8, 8), 0.5, np.float32)), "f.tif")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_flow_writers_refuse_nonfinite_flow(tmp_path, bad):
    from mcjepa.flow_io import write_flo, write_kitti_flow

    flow = torch.zeros(2, 4, 5)
    flow[1, 2, 3] = bad
    for writer, name in ((write_flo, "f.flo"), (write_kitti_flow, "f.png")):
        with pytest.raises(ValueError, match=r"refusing to write non-finite flow .*1 of 20 pixels.*row 2, column 3"):
            writer(tmp_path / name, flow)
        assert not (tmp_path / name).exists()
    valid = torch.ones(4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="non-finite"):
        write_kitti_flow(tmp_path / "f.png", flow, valid)
    valid[2, 3] = False  # marked invalid: stored as invalid, as the format allows
    write_kitti_flow(tmp_path / "f.png", flow, valid)


@pytest.fixture
def flow_cli(model, monkeypatch):
    from mcjepa import flow

    calls = []

    def fake_load(weights=None, **kwargs):
        calls.append(weights)
        return model

    monkeypatch.setattr(flow, "load", fake_load)
    return calls


def _flow_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mcjepa-flow: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_flow_cli_output_folder_and_folder_frames_are_refused_before_the_model_runs(tmp_path, capsys, flow_cli):
    from mcjepa.cli.flow import main

    assert main(["-o", str(tmp_path)]) == 2
    assert f"-o {tmp_path} is a folder; give a file name" in _flow_error(capsys)
    assert main(["--save-flo", str(tmp_path)]) == 2
    assert f"--save-flo {tmp_path} is a folder" in _flow_error(capsys)
    assert main(["-o", str(tmp_path / "flow.xyz")]) == 2
    assert "unknown image extension '.xyz'" in _flow_error(capsys)
    assert flow_cli == []  # no model was loaded for any of them
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "frames").mkdir()
    assert main([str(tmp_path / "frames"), str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png")]) == 2
    assert "frames: is a folder, not an image file" in _flow_error(capsys)


def test_flow_cli_refuses_to_write_nonfinite_flow(tmp_path, capsys, flow_cli, monkeypatch):
    from mcjepa import flow
    from mcjepa.cli.flow import main

    monkeypatch.setattr(flow, "estimate", lambda a, b, m, bf16=False: torch.full((2, 96, 128), float("nan")))
    out, flo = tmp_path / "o.png", tmp_path / "o.flo"
    assert main(["-o", str(out), "--save-flo", str(flo)]) == 2
    assert "non-finite flow (24576 of 24576 values" in _flow_error(capsys)
    assert not out.exists() and not flo.exists()
