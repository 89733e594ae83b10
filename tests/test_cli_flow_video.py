"""``mcjepa-flow`` on a video file or a frame folder (streamed), in-process, with the micro model."""

from __future__ import annotations

import os
import signal
import sys
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from mcjepa import flow
from mcjepa.cli.flow import main
from mcjepa.data.synthetic import render_image
from mcjepa.flow import sequences
from mcjepa.flow import video as video_flow
from mcjepa.ops import upsample_flow

H, W = 64, 96


@pytest.fixture
def patched_load(model, monkeypatch):
    monkeypatch.setattr(flow, "load", lambda weights=None, **kwargs: model)
    return model


def _frames(n: int, size=(H, W)) -> list[np.ndarray]:
    """``n`` frames of a camera panning over one synthetic scene: (H, W, 3) uint8, 2 px down and
    3 px right per frame."""
    h, w = size
    scene = render_image(3, size=(h + 2 * n, w + 3 * n)).permute(1, 2, 0).numpy()
    return [np.ascontiguousarray(scene[2 * i : 2 * i + h, 3 * i : 3 * i + w]) for i in range(n)]


def _write_video(path, frames, rate=25):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _decode(path) -> list[np.ndarray]:
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def _t(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)


def _assert_error(capsys, message, one_line=True):
    err = capsys.readouterr().err
    assert err.startswith("mcjepa-flow: error: ") and message in err, err
    assert "Traceback" not in err
    if one_line:
        assert err.count("\n") == 1, err


# ---------------------------------------------------------------------------- video in, video + files out


def test_video_to_side_by_side_video_and_flo_matching_estimate(tmp_path, capsys, patched_load):
    video = _write_video(tmp_path / "in.mp4", _frames(6))
    out, flo, kitti = tmp_path / "out.mp4", tmp_path / "flo", tmp_path / "kitti"
    args = [str(video), "-o", str(out), "--save-flo", str(flo), "--save-kitti", str(kitti), "--batch", "2"]
    assert main([*args, "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "5 pair(s)" in text and "(96x64, 6 frames, 25 fps)" in text and "model: mcjepa_micro" in text

    decoded_in = _decode(video)  # what mcjepa-flow saw: the same decoder, the same frames
    written = _decode(out)
    assert len(written) == 5 and all(f.shape == (H, 2 * W, 3) for f in written)
    assert sorted(p.name for p in flo.iterdir()) == [f"{i:06d}.flo" for i in range(5)]
    for i in range(5):
        expected = flow.estimate(_t(decoded_in[i]), _t(decoded_in[i + 1]), patched_load)
        saved = flow.read_flo(flo / f"{i:06d}.flo")
        assert saved.abs().mean() > 1e-3
        torch.testing.assert_close(saved, expected, atol=1e-4, rtol=1e-4)  # batched (2 pairs) vs one pair
        stored, valid = flow.read_kitti_flow(kitti / f"{i:06d}.png")
        assert valid.all() and (stored - expected).abs().max() <= 1 / 128 + 1e-4
        # side by side: left the frame the flow starts from, right its colour coding (lossy codec)
        left, right = written[i][:, :W].astype(float), written[i][:, W:].astype(float)
        assert np.abs(left - decoded_in[i]).mean() < 8
        assert np.abs(right - flow.to_image(expected).permute(1, 2, 0).numpy()).mean() < 8
    assert not list(tmp_path.rglob("*.part"))


def test_every_n_layout_flow_and_fps(tmp_path, capsys, patched_load):
    video = _write_video(tmp_path / "in.mp4", _frames(7), rate=24)
    out, flo = tmp_path / "out.mkv", tmp_path / "flo"
    assert main([str(video), "-o", str(out), "--every", "2", "--layout", "flow", "--save-flo", str(flo)]) == 0
    text = capsys.readouterr().out
    assert "3 pair(s)" in text and "12 fps" in text
    written = _decode(out)
    assert len(written) == 3 and written[0].shape == (H, W, 3)  # flow colour only
    assert sorted(p.name for p in flo.iterdir()) == ["000000.flo", "000002.flo", "000004.flo"]
    frames = _decode(video)
    expected = flow.estimate(_t(frames[2]), _t(frames[4]), patched_load)
    torch.testing.assert_close(flow.read_flo(flo / "000002.flo"), expected, atol=1e-4, rtol=1e-4)


def test_frame_folder_without_pyav_to_png_folder(tmp_path, capsys, patched_load, monkeypatch):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = _frames(4)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i:03d}.png")
    (folder / "notes.txt").write_text("not a frame")
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    out = tmp_path / "colour"
    assert main([str(folder), "-o", f"{out}/", "--save-flo", str(tmp_path / "flo")]) == 0
    assert "3 colour-coded PNGs" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    with Image.open(out / "000001.png") as im:
        png = np.asarray(im)
    expected = flow.estimate(_t(frames[1]), _t(frames[2]), patched_load)
    np.testing.assert_array_equal(png[:, :W], frames[1])
    torch.testing.assert_close(flow.read_flo(tmp_path / "flo" / "000001.flo"), expected, atol=1e-4, rtol=1e-4)
    # a video output needs PyAV: said before anything runs, with the install command
    assert main([str(folder), "-o", str(tmp_path / "x.mp4")]) == 2
    _assert_error(capsys, 'writing a video needs PyAV (pip install "mcjepa[video]"')
    assert not (tmp_path / "x.mp4").exists()
    # and so does a video input
    (tmp_path / "in.mp4").write_bytes(b"\0" * 64)
    assert main([str(tmp_path / "in.mp4"), "-o", f"{tmp_path}/pngs/"]) == 2
    _assert_error(capsys, "reading and writing video files needs PyAV")


def test_max_size_flow_is_in_input_pixels(tmp_path, monkeypatch, patched_load):
    seen = []

    def constant_flow(image1, image2, model=None, **kwargs):  # (u, v) = (1, 2) px at the model's size
        seen.append(tuple(image1.shape))
        b, _, h, w = image1.shape
        return torch.stack((torch.ones(b, h, w), torch.full((b, h, w), 2.0)), dim=1)

    monkeypatch.setattr(flow, "estimate", constant_flow)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_frames(3, size=(128, 192))):
        Image.fromarray(f).save(folder / f"{i}.png")
    assert main([str(folder), "-o", f"{tmp_path}/out/", "--max-size", "96", "--save-flo", str(tmp_path / "flo")]) == 0
    assert seen == [(1, 3, 64, 96), (1, 3, 64, 96)]  # long side 192 -> 96, aspect kept
    f = flow.read_flo(tmp_path / "flo" / "000000.flo")
    assert f.shape == (2, 128, 192)
    torch.testing.assert_close(f[0], torch.full((128, 192), 2.0))  # 1 px at 96 wide = 2 px at 192
    torch.testing.assert_close(f[1], torch.full((128, 192), 4.0))


def test_max_size_with_the_real_model_matches_manual_resize(patched_load):
    frames = [_t(f) for f in _frames(2, size=(96, 160))]
    got = video_flow.estimate_resized(frames[0], frames[1], patched_load, max_size=80)
    small = torch.nn.functional.interpolate(
        torch.stack(frames).float() / 255, size=(48, 80), mode="bilinear", antialias=True
    ).clamp(0, 1)
    expected = upsample_flow(flow.estimate(small[:1], small[1:], patched_load), (96, 160))[0]
    assert got.shape == (2, 96, 160)
    torch.testing.assert_close(got, expected)
    # no resize when the long side already fits
    torch.testing.assert_close(
        video_flow.estimate_resized(frames[0], frames[1], patched_load, max_size=160),
        flow.estimate(frames[0], frames[1], patched_load),
    )


def test_at_most_batch_plus_one_frames_in_memory(model):
    class Counting(sequences.FrameSequence):
        def __init__(self, n):
            self.path, self.height, self.width, self.num_frames, self.fps = "fake", 32, 32, None, None
            self.n, self.produced, self.alive = n, 0, weakref.WeakSet()

        def frames(self):
            for i in range(self.n):
                frame = torch.full((3, 32, 32), i, dtype=torch.uint8)
                self.alive.add(frame)
                self.produced += 1
                yield frame

    for batch, every in ((1, 1), (3, 1), (4, 2)):
        seq = Counting(23)
        count = 0
        for pair in video_flow.iter_flows(seq, model, every=every, batch=batch):
            assert pair.index2 == pair.index1 + every and pair.index1 == count * every
            assert len(seq.alive) <= batch + 1  # frames still referenced anywhere
            assert seq.produced <= pair.index2 + batch * every  # no read-ahead beyond the batch
            count += 1
            del pair
        assert count == (23 - 1) // every


# ---------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_the_model_keeps_finished_files_valid(tmp_path, capsys, patched_load, monkeypatch):
    video = _write_video(tmp_path / "in.mp4", _frames(6))
    real, calls = flow.estimate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises while the model runs
        return real(*args, **kwargs)

    monkeypatch.setattr(flow, "estimate", interrupted)
    out, flo = tmp_path / "out.mp4", tmp_path / "flo"
    assert main([str(video), "-o", str(out), "--save-flo", str(flo)]) == 130
    assert "interrupted (Ctrl-C) after 2 pair(s)" in capsys.readouterr().out
    assert len(_decode(out)) == 2  # a finished, playable file
    assert sorted(p.name for p in flo.iterdir()) == ["000000.flo", "000001.flo"]
    assert flow.read_flo(flo / "000001.flo").shape == (2, H, W)


def test_sigint_while_writing_finishes_that_file(tmp_path, capsys, patched_load, monkeypatch):
    video = _write_video(tmp_path / "in.mp4", _frames(5))
    real_write, calls = flow.write_flo, []

    def write_then_sigint(path, f):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of writing pair 2's files
        real_write(path, f)

    monkeypatch.setattr(flow, "write_flo", write_then_sigint)
    before = signal.getsignal(signal.SIGINT)
    out, flo = tmp_path / "out.mp4", tmp_path / "flo"
    assert main([str(video), "-o", str(out), "--save-flo", str(flo)]) == 130
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    assert "after 2 pair(s)" in capsys.readouterr().out
    assert sorted(p.name for p in flo.iterdir()) == ["000000.flo", "000001.flo"]
    assert flow.read_flo(flo / "000001.flo").shape == (2, H, W)
    assert len(_decode(out)) == 2


# ---------------------------------------------------------------------------- bad input


def test_bad_sequence_input_is_a_clear_one_line_error(tmp_path, capsys, patched_load):
    pytest.importorskip("av")
    video = _write_video(tmp_path / "in.mp4", _frames(3))
    folder = tmp_path / "frames"
    folder.mkdir()
    cases = [
        ([str(tmp_path / "nothing.mp4")], "nothing.mp4: no such file or folder"),
        ([str(video), "--every", "0"], "--every must be at least 1"),
        ([str(video), "--batch", "0"], "--batch must be at least 1"),
        ([str(video), "--max-size", "8"], "--max-size must be at least 32"),
        ([str(video), "--max-size", "40"], "below the model's minimum of 32"),  # 96x64 -> 40x27
        ([str(video), "--every", "3"], "has 3 frames; flow needs at least 4 frames for --every 3"),
        ([str(video), "-o", str(tmp_path / "flow.png")], "-o is a video file (.mp4"),
        ([str(video), "-o", str(tmp_path / "no" / "out.mp4")], "does not exist"),
        ([str(video), "-o", str(video)], "is the input itself"),
        ([str(video), "--save-flo", str(video)], "--save-flo " + str(video) + " is a file"),
        ([str(folder)], "a frame folder needs at least 2 images, found 0"),
    ]
    for argv, message in cases:
        assert main([*argv, "-o", f"{tmp_path}/o/"] if "-o" not in argv else argv) == 2, argv
        _assert_error(capsys, message)
    Image.fromarray(_frames(1)[0]).save(folder / "a.png")
    assert main([str(folder)]) == 2
    _assert_error(capsys, "at least 2 images, found 1")
    Image.new("RGB", (W + 2, H)).save(folder / "b.png")
    assert main([str(folder)]) == 2
    _assert_error(capsys, "every frame must have the same size, but a.png is 96x64 and b.png is 98x64")
    (folder / "b.png").write_text("not an image")
    assert main([str(folder)]) == 2
    _assert_error(capsys, "b.png: cannot read it as an image")
    (tmp_path / "text.mp4").write_text("not a video")
    assert main([str(tmp_path / "text.mp4")]) == 2
    _assert_error(capsys, "text.mp4: cannot read it as a video")
    assert main([str(tmp_path / "frames" / "a.png")]) == 2
    _assert_error(capsys, "give two frames (one image given")
    assert main([str(video), str(video), str(video)]) == 2
    _assert_error(capsys, "got 3 inputs")
    assert not (tmp_path / "o").exists()  # nothing was written by any failed run
    # sequence-only options with two frames
    assert main(["--every", "2"]) == 2
    _assert_error(capsys, "--every: only for a video file or frame folder input")


def test_short_video_without_frame_count_is_refused_after_decoding(model):
    class Short(sequences.FrameSequence):
        path, height, width, num_frames, fps = "short", 32, 32, None, None

        def frames(self):
            yield torch.zeros(3, 32, 32, dtype=torch.uint8)

    with pytest.raises(ValueError, match="short: has 1 frame; flow needs at least 2 frames"):
        list(video_flow.iter_flows(Short(), model))
    with pytest.raises(ValueError, match="every .* must be an integer >= 1"):
        list(video_flow.iter_flows(Short(), model, every=0))


# ---------------------------------------------------------------------------- frame ranges, truncation, stale outputs


def _folder(tmp_path, frames, name="frames"):
    folder = tmp_path / name
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    return folder


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_start_and_end_number_frames_alike_for_a_folder_and_a_video(tmp_path, capsys, patched_load):
    frames = _frames(6)
    folder = _folder(tmp_path, frames)
    assert (
        main([str(folder), "-o", f"{tmp_path}/c/", "--save-flo", str(tmp_path / "f"), "--start", "2", "--end", "5"])
        == 0
    )
    assert "frames 2 to 4" in capsys.readouterr().out
    assert _names(tmp_path / "f") == ["000002.flo", "000003.flo"]  # pairs 2->3 and 3->4: frames 2 <= t < 5
    expected = flow.estimate(_t(frames[3]), _t(frames[4]), patched_load)
    torch.testing.assert_close(flow.read_flo(tmp_path / "f" / "000003.flo"), expected, atol=1e-4, rtol=1e-4)
    video = _write_video(tmp_path / "in.mp4", frames)
    args = [str(video), "-o", f"{tmp_path}/vc/", "--save-flo", str(tmp_path / "vf"), "--start", "2", "--end", "5"]
    assert main([*args, "--every", "2"]) == 0
    assert _names(tmp_path / "vf") == ["000002.flo"]  # kept frames 2 and 4
    capsys.readouterr()
    # frames that do not exist: refused before the model runs, for a folder and a video alike
    for source in (folder, video):
        assert main([str(source), "-o", f"{tmp_path}/x/", "--end", "9"]) == 2
        _assert_error(capsys, "frames 0 to 8 were asked for, but it has 6 frames (0 to 5)")
        assert main([str(source), "-o", f"{tmp_path}/x/", "--start", "6"]) == 2
        _assert_error(capsys, "has 6 frames")
    assert main([str(folder), "-o", f"{tmp_path}/x/", "--start", "3", "--end", "3"]) == 2
    _assert_error(capsys, "--end must be above --start (3), got 3")
    assert main([str(folder), "-o", f"{tmp_path}/x/", "--start", "5"]) == 2
    _assert_error(capsys, "the requested frame range holds 1 frame")
    assert not (tmp_path / "x").exists()


def _truncated_avi(tmp_path, n=8, keep=0.6):
    """An AVI whose header says ``n`` frames, cut to ``keep`` of its bytes (a broken download)."""
    av = pytest.importorskip("av")
    path = tmp_path / "full.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        for f in _frames(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


def test_truncated_video_warns_and_fails_when_frames_were_asked_for(tmp_path, capsys, patched_load):
    cut = _truncated_avi(tmp_path)
    sequence = sequences.open_sequence(cut)
    read = sum(1 for _ in sequence.frames())
    assert sequence.num_frames == 8 and 2 < read < 8  # the container still says 8
    # no --end: the pairs that exist are written, with a warning naming expected and read counts
    assert main([str(cut), "-o", f"{tmp_path}/a/", "--save-flo", str(tmp_path / "fa")]) == 0
    captured = capsys.readouterr()
    assert f"{read - 1} pair(s)" in captured.out
    assert f"warning: {cut}: expected 8 frames (0 to 7), read {read}; its container says 8" in captured.err
    assert len(list((tmp_path / "fa").iterdir())) == read - 1
    # --end 8 asks for frames that do not exist: the same pairs, then exit status 3
    assert main([str(cut), "-o", f"{tmp_path}/b/", "--save-flo", str(tmp_path / "fb"), "--end", "8"]) == 3
    captured = capsys.readouterr()
    assert f"error: {cut}: expected 8 frames (0 to 7), read {read}" in captured.err
    assert f"frames {read} to 7 do not exist ({read - 1} pair(s) written before it, complete)" in captured.err
    assert len(list((tmp_path / "fb").iterdir())) == read - 1
    # a range inside what could be read is fine
    assert main([str(cut), "-o", f"{tmp_path}/c/", "--end", str(read)]) == 0


def test_output_folders_never_mix_two_runs(tmp_path, capsys, patched_load):
    folder = _folder(tmp_path, _frames(6))
    flo, colour = tmp_path / "flo", f"{tmp_path}/colour/"
    assert main([str(folder), "-o", colour, "--save-flo", str(flo)]) == 0
    assert len(_names(flo)) == 5
    capsys.readouterr()
    # a second run into the same folders is refused before anything is written
    assert main([str(folder), "-o", colour, "--save-flo", str(flo), "--end", "3"]) == 2
    _assert_error(capsys, "-o " + colour + " already holds 5 .png file(s) of an earlier run")
    assert len(_names(flo)) == 5
    # --overwrite deletes the earlier run's files first, and says so
    assert main([str(folder), "-o", colour, "--save-flo", str(flo), "--end", "3", "--overwrite"]) == 0
    assert "--overwrite: deleted 10 file(s) of an earlier run" in capsys.readouterr().out
    assert _names(flo) == ["000000.flo", "000001.flo"] and len(_names(tmp_path / "colour")) == 2
    # a file that is not ours is never deleted, and the folder is refused even with --overwrite
    (flo / "mine.flo").write_bytes(b"x")
    assert main([str(folder), "-o", f"{tmp_path}/c2/", "--save-flo", str(flo), "--overwrite"]) == 2
    _assert_error(capsys, "already holds 1 other .flo file(s) (e.g. mine.flo)")
    assert (flo / "mine.flo").exists() and len(_names(flo)) == 3


def test_pipe_progress_is_lines_and_threads_are_set(tmp_path, capsys, patched_load, monkeypatch):
    """Output that is not a terminal (capsys) gets whole progress lines, no carriage returns; the
    default thread count is half the CPUs, --threads sets it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("mcjepa.utils.threads.available_cpus", lambda: 4)
    before = torch.get_num_threads()
    try:
        folder = _folder(tmp_path, _frames(6))
        assert main([str(folder), "-o", f"{tmp_path}/a/"]) == 0
        captured = capsys.readouterr()
        assert "2 CPU threads (default: half of 4 CPUs)" in captured.out and torch.get_num_threads() == 2
        lines = captured.err.splitlines()
        assert "\r" not in captured.err and lines[-1].startswith("mcjepa-flow: 5/5 pair (100%)")
        assert 2 <= len(lines) <= 6
        assert main([str(folder), "-o", f"{tmp_path}/b/", "--threads", "1", "--no-progress"]) == 0
        captured = capsys.readouterr()
        assert "1 CPU thread (--threads)" in captured.out and torch.get_num_threads() == 1 and captured.err == ""
        assert main([str(folder), "-o", f"{tmp_path}/c/", "--threads", "0"]) == 2
        _assert_error(capsys, "--threads must be at least 1, got 0")
    finally:
        torch.set_num_threads(before)


def test_large_frames_need_a_max_size_choice_and_max_flow(tmp_path, capsys, patched_load, monkeypatch):
    import mcjepa.cli.flow as cli

    monkeypatch.setattr(cli, "LARGE_FRAME_MEGAPIXELS", 0.005)  # frames are 96x64 = 0.006 megapixels
    frames = _frames(3)
    folder = _folder(tmp_path, frames)
    Image.fromarray(frames[0]).save(tmp_path / "a.png")
    Image.fromarray(frames[1]).save(tmp_path / "b.png")
    for argv in ([str(folder), "-o", f"{tmp_path}/a/"], [str(tmp_path / "a.png"), str(tmp_path / "b.png")]):
        assert main([*argv, "--device", "cpu"]) == 2
        _assert_error(capsys, "frames are 96x64 (W x H, 0.0 megapixels), above the 0.005 megapixels run at full size")
    assert not (tmp_path / "a").exists() and not (tmp_path / "flow.png").exists()
    # --max-size PX downscales; the flow is in input pixels
    assert main([str(folder), "-o", f"{tmp_path}/a/", "--save-flo", str(tmp_path / "fa"), "--max-size", "64"]) == 0
    expected = video_flow.estimate_resized(_t(frames[0]), _t(frames[1]), patched_load, max_size=64)
    torch.testing.assert_close(flow.read_flo(tmp_path / "fa" / "000000.flo"), expected, atol=1e-4, rtol=1e-4)
    # --max-size 0: full size; --max-flow: one colour scale for every pair
    argv = [str(folder), "-o", f"{tmp_path}/b/", "--save-flo", str(tmp_path / "fb"), "--max-size", "0"]
    assert main([*argv, "--max-flow", "5", "--layout", "flow"]) == 0
    full = flow.read_flo(tmp_path / "fb" / "000001.flo")
    torch.testing.assert_close(full, flow.estimate(_t(frames[1]), _t(frames[2]), patched_load), atol=1e-4, rtol=1e-4)
    with Image.open(tmp_path / "b" / "000001.png") as im:
        png = np.asarray(im)
    np.testing.assert_array_equal(png, flow.to_image(full, max_flow=5).permute(1, 2, 0).numpy())
    assert not np.array_equal(png, flow.to_image(full).permute(1, 2, 0).numpy())


def test_grayscale_and_colour_frames_are_refused(tmp_path, capsys, patched_load):
    frames = _frames(3)
    Image.fromarray(frames[0]).save(tmp_path / "a.png")
    Image.fromarray(frames[1]).convert("L").save(tmp_path / "b.png")
    assert main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "o.png")]) == 2
    _assert_error(capsys, "image2 is grayscale (R = G = B) but image1 is colour")
    folder = _folder(tmp_path, frames)
    Image.fromarray(frames[2]).convert("L").save(folder / "002.png")
    assert main([str(folder), "-o", f"{tmp_path}/x/"]) == 2
    _assert_error(capsys, "the frames mix grayscale (002.png) and colour (000.png) images")
