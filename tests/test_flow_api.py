"""``mcjepa.flow``: input forms, padding and cropping, errors, warp, occlusion mask, load."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mcjepa import flow
from mcjepa.data.synthetic import render_pair
from mcjepa.encoder import imagenet_normalize
from mcjepa.model import build_model


def _frames(h, w, seed=0):
    pair = render_pair(seed, size=(h, w))
    return pair.image1, pair.image2


@pytest.mark.parametrize("size", [(45, 61), (33, 100), (64, 32)])
def test_odd_sizes_unbatched_and_batched(model, size):
    a1, a2 = _frames(*size, seed=1)
    b1, b2 = _frames(*size, seed=2)
    fa = flow.estimate(a1, a2, model)
    assert fa.shape == (2, *size) and fa.dtype == torch.float32
    assert fa.abs().mean() > 1e-3
    fb = flow.estimate(b1, b2, model)
    assert not torch.allclose(fa, fb)
    batch = flow.estimate(torch.stack((a1, b1)), torch.stack((a2, b2)), model)
    assert batch.shape == (2, 2, *size)
    torch.testing.assert_close(batch, torch.stack((fa, fb)), atol=1e-4, rtol=1e-4)


def test_padding_and_cropping_against_a_direct_call(model):
    i1, i2 = _frames(45, 61)
    x1, x2 = (imagenet_normalize(i.float()[None] / 255) for i in (i1, i2))
    # no padding needed at 64 x 64: estimate is exactly the model on the normalised frames
    j1, j2 = _frames(64, 64)
    y1, y2 = (imagenet_normalize(i.float()[None] / 255) for i in (j1, j2))
    with torch.no_grad():
        torch.testing.assert_close(flow.estimate(j1, j2, model), model(y1, y2)[0])
        # 45 x 61: replicate-pad right and bottom to 64 x 64, run, crop the top-left corner
        padded = model(F.pad(x1, (0, 3, 0, 19), mode="replicate"), F.pad(x2, (0, 3, 0, 19), mode="replicate"))
    torch.testing.assert_close(flow.estimate(i1, i2, model), padded[0, :, :45, :61])


def test_all_input_forms_give_the_same_flow(model):
    i1, i2 = _frames(40, 52, seed=3)
    ref = flow.estimate(i1, i2, model)

    def forms(img):
        hwc = img.permute(1, 2, 0).numpy()
        return {
            "float tensor": img.float() / 255,
            "float64 tensor": img.double() / 255,
            "numpy uint8": hwc,
            "numpy float": hwc.astype(np.float32) / 255,
            "PIL": Image.fromarray(hwc),
            "PIL RGBA": Image.fromarray(hwc).convert("RGBA"),
        }

    f1, f2 = forms(i1), forms(i2)
    for name in f1:
        torch.testing.assert_close(flow.estimate(f1[name], f2[name], model), ref, msg=name)
    # batches: numpy BHWC, list of PIL images, list of tensors
    batch_np = flow.estimate(np.stack([f1["numpy uint8"]] * 2), np.stack([f2["numpy uint8"]] * 2), model)
    batch_pil = flow.estimate([f1["PIL"], f1["PIL"]], [f2["PIL"], f2["PIL"]], model)
    assert batch_np.shape == batch_pil.shape == (2, 2, 40, 52)
    torch.testing.assert_close(batch_np, torch.stack((ref, ref)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch_pil, batch_np)


def test_estimate_restores_training_mode_and_bf16_falls_back_on_cpu(model):
    i1, i2 = _frames(32, 32)
    ref = flow.estimate(i1, i2, model)
    model.train()
    try:
        with pytest.warns(UserWarning, match="bf16=True needs a CUDA device"):
            out = flow.estimate(i1, i2, model, bf16=True, device="cpu")
        assert model.training
    finally:
        model.eval()
    torch.testing.assert_close(out, ref)


ok = torch.zeros(3, 40, 40, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("image1", "image2", "message"),
    [
        (ok, torch.zeros(3, 40, 48, dtype=torch.uint8), "same size, got 40x40 and 40x48"),
        (torch.zeros(4, 40, 40), ok, r"channels-first \(3, H, W\).*got shape \(4, 40, 40\)"),
        (torch.zeros(40, 40, 3), ok, r"channels-first \(3, H, W\)"),
        (np.zeros((40, 40, 4), np.uint8), ok, r"channels-last \(H, W, 3\)"),
        (np.zeros((2, 40, 40, 1), np.uint8), ok, r"channels-last \(B, H, W, 3\)"),
        (torch.zeros(1, 2, 40, 40), ok, r"channels-first \(B, 3, H, W\)"),
        (torch.zeros(3, 31, 40), torch.zeros(3, 31, 40), "at least 32x32 pixels, got 31x40"),
        (torch.full((3, 40, 40), float("nan")), ok, "image1 contains NaN or infinite"),
        (ok, torch.full((3, 40, 40), float("inf")), "image2 contains NaN or infinite"),
        (torch.full((3, 40, 40), 255.0), ok, r"must lie in \[0, 1\], but the min is 255.0 and the max is 255.0"),
        (torch.full((3, 40, 40), -0.5), ok, r"must lie in \[0, 1\]"),
        (torch.zeros(3, 40, 40, dtype=torch.int64), ok, "uint8 .0-255. or floating point.*got dtype torch.int64"),
        (np.zeros((40, 40, 3), np.uint16), ok, "got dtype torch.uint16"),
        (torch.zeros(2, 3, 40, 40), torch.zeros(3, 3, 40, 40), "same batch size, got 2 and 3"),
        (torch.zeros(1, 3, 40, 40), ok, "both be single images or both be batches"),
        ([], ok, "empty list"),
        ([ok, torch.zeros(3, 40, 48, dtype=torch.uint8)], [ok, ok], "same size"),
        (torch.zeros(0, 3, 40, 40), torch.zeros(0, 3, 40, 40), "empty"),
    ],
)
def test_bad_inputs(model, image1, image2, message):
    with pytest.raises(ValueError, match=message):
        flow.estimate(image1, image2, model)


def test_bad_types(model):
    with pytest.raises(TypeError, match="expected a torch.Tensor, numpy.ndarray or PIL.Image.Image.*got builtins.str"):
        flow.estimate("frame1.png", ok, model)
    with pytest.raises(TypeError, match=r"image2\[1\]: expected"):
        flow.estimate([ok, ok], [ok, 3], model)
    with pytest.raises(TypeError, match="model must be an MCJEPA"):
        flow.estimate(ok, ok, model="convnext_t")


def test_estimate_without_a_model_uses_the_default_model_quietly(model, monkeypatch):
    monkeypatch.setattr(flow, "_default", model)  # what flow.load() gives (tests/test_bundled.py loads it for real)
    i1, i2 = _frames(32, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = flow.estimate(i1, i2)
    torch.testing.assert_close(out, flow.estimate(i1, i2, model))


def test_load_random_on_request_warns_and_is_in_eval_mode():
    with pytest.warns(UserWarning, match="untrained"):
        m = flow.load("random", variant="micro", device="cpu")
    assert not m.training and m.flow_head is not None and m.expander is None
    assert m.config.name == "mcjepa_micro" and m.release_name is None
    assert m.weights_description == "untrained mcjepa_micro (random weights)" and "random weights" in repr(m)
    with pytest.raises(ValueError, match="contradict"):
        flow.load("random", pretrained=True)
    with pytest.raises(ValueError, match="variant='micro' with no weights: flow.load.. loads the bundled model"):
        flow.load(variant="micro")


def _fake_loader(monkeypatch):
    import mcjepa.release

    calls = {}

    def fake_load_model(weights, **kwargs):
        calls.update(weights=weights, **kwargs)
        return build_model("micro").train()

    monkeypatch.setattr(mcjepa.release, "load_model", fake_load_model)
    return calls


def test_load_with_weights_delegates_to_the_release_loader(monkeypatch):
    calls = _fake_loader(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trained weights: no untrained warning
        m = flow.load("some/release", variant="micro")
    assert not m.training
    # the untrained warning is decided by load_model (the one loader), with flow.load's wording
    assert calls.pop("warn_untrained") is True and calls.pop("warn_stacklevel") == 2
    assert calls.pop("untrained_message").startswith("flow.load(): the model is untrained")
    assert calls == {
        "weights": "some/release",
        "pretrained": False,
        "variant": "micro",
        "components": ("encoder", "flow_head"),
        "map_location": torch.device("cpu"),
        "sha256": None,
    }


def test_load_without_weights_asks_for_the_bundled_model_and_random_for_none(monkeypatch):
    calls = _fake_loader(monkeypatch)
    flow.load()
    assert calls["weights"] == "bundled://mcjepa_small_real" and calls["pretrained"] is False
    flow.load("random")
    assert calls["weights"] is None and calls["variant"] == "convnext_t" and calls["warn_untrained"] is True


def test_to_image():
    f = torch.zeros(2, 5, 7)
    f[0, :, :3] = 2.0  # right
    f[0, :, 3:] = -2.0  # left
    rgb = flow.to_image(f)
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 5, 7)
    assert torch.equal(rgb[:, :, 0], rgb[:, :, 2]) and not torch.equal(rgb[:, 0, 0], rgb[:, 0, 5])
    assert torch.equal(flow.to_image(torch.zeros(2, 3, 3)), torch.full((3, 3, 3), 255, dtype=torch.uint8))
    batch = flow.to_image(torch.stack((f, f)))
    assert batch.shape == (2, 3, 5, 7) and torch.equal(batch[1], rgb)
    assert torch.equal(flow.to_image(f.numpy()), rgb)
    with pytest.raises(ValueError, match=r"shape \(2, H, W\) or \(B, 2, H, W\)"):
        flow.to_image(torch.zeros(3, 5, 7))
    with pytest.raises(ValueError, match="NaN"):
        flow.to_image(torch.full((2, 3, 3), float("nan")))


def test_warp_integer_shift_and_types():
    img = torch.randint(0, 256, (3, 6, 9), dtype=torch.uint8)
    f = torch.zeros(2, 6, 9)
    f[0] = 2.0  # sample two pixels to the right
    out = flow.warp(img, f)
    assert out.dtype == torch.uint8 and out.shape == (3, 6, 9)
    assert torch.equal(out[:, :, :7], img[:, :, 2:]) and (out[:, :, 7:] == 0).all()
    hwc = img.permute(1, 2, 0).numpy()
    assert torch.equal(flow.warp(Image.fromarray(hwc), f), out)
    out_f = flow.warp(hwc.astype(np.float32) / 255, f)
    assert out_f.dtype == torch.float32
    torch.testing.assert_close(out_f[:, :, :7], img[:, :, 2:].float() / 255)
    batch = flow.warp(torch.stack((img, img)), torch.stack((f, f)))
    assert batch.shape == (2, 3, 6, 9) and torch.equal(batch[0], out)
    with pytest.raises(ValueError, match="does not match the image"):
        flow.warp(img, torch.zeros(2, 6, 8))
    with pytest.raises(ValueError, match="does not match the image"):
        flow.warp(img, torch.zeros(1, 2, 6, 9))


def test_warp_reconstructs_synthetic_frame1():
    pair = render_pair(4, size=(48, 64), motion="translation")  # brightness constancy holds exactly
    warped = flow.warp(pair.image2, pair.flow).float()
    visible = ~pair.occlusion.expand(3, -1, -1)
    err = (warped - pair.image1.float()).abs()[visible].mean()
    assert err < 0.012 * 255


def test_occlusion_mask_hand_made():
    h, w = 4, 8
    fwd = torch.zeros(2, h, w)
    fwd[0] = 2.0  # everything moves 2 px right
    bwd = torch.zeros(2, h, w)
    bwd[0] = -2.0  # and back
    occ = flow.occlusion_mask(fwd, bwd)
    assert occ.dtype == torch.bool and occ.shape == (1, h, w)
    expected = torch.zeros(1, h, w, dtype=torch.bool)
    expected[..., 6:] = True  # x + 2 > 7: leaves the frame
    assert torch.equal(occ, expected)
    # a frame-2 pixel whose backward flow disagrees: (row 1, x = 5) says it did not move.
    # Frame-1 pixel (1, 3) lands there: |2 + 0|^2 = 4 > 0.01 * (4 + 0) + 0.5 -> occluded
    bwd[0, 1, 5] = 0.0
    expected[0, 1, 3] = True
    assert torch.equal(flow.occlusion_mask(fwd, bwd), expected)
    # a small disagreement within the tolerance: |2 - 1.5|^2 = 0.25 <= 0.01 * (4 + 2.25) + 0.5
    bwd[0, 1, 5] = -1.5
    expected[0, 1, 3] = False
    assert torch.equal(flow.occlusion_mask(fwd, bwd), expected)
    assert flow.occlusion_mask(fwd[None], bwd[None]).shape == (1, 1, h, w)
    with pytest.raises(ValueError, match="same shape"):
        flow.occlusion_mask(fwd, bwd[:, :3])


def test_to_image_max_flow_puts_two_flows_on_one_colour_scale():
    f = torch.zeros(2, 4, 6)
    f[0] = 1.0  # 1 px right everywhere
    g = 3.0 * f  # 3 px right
    # each alone: normalised by its own maximum, so both look the same
    assert torch.equal(flow.to_image(f), flow.to_image(g))
    # one scale: the slower flow is paler (closer to white), and max_flow = its maximum equals the default
    a, b = flow.to_image(f, max_flow=3.0), flow.to_image(g, max_flow=3.0)
    assert torch.equal(b, flow.to_image(g)) and not torch.equal(a, b)
    assert a.int().sum() > b.int().sum()  # less saturated: nearer 255 in every channel
    assert torch.equal(flow.to_image(f, max_flow=1.0), flow.to_image(f))
    # faster than max_flow saturates at that colour; batches share the scale
    assert torch.equal(flow.to_image(10 * f, max_flow=1.0), flow.to_image(f))
    batch = flow.to_image(torch.stack((f, g)), max_flow=3.0)
    assert torch.equal(batch[0], a) and torch.equal(batch[1], b)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_flow must be a positive number of pixels"):
            flow.to_image(f, max_flow=bad)


def test_float_frames_may_overshoot_by_a_few_ulps_and_are_clamped(model):
    im1, im2 = _frames(40, 56)
    x1, x2 = im1.float() / 255, im2.float() / 255
    x1[:, 0, 0], x1[:, 0, 1] = 1.0000001, -1e-8  # an antialiased resize's rounding
    clamped = x1.clamp(0, 1)
    torch.testing.assert_close(flow.estimate(x1, x2, model), flow.estimate(clamped, x2, model), atol=0, rtol=0)
    x1[:, 0, 0] = 1.00001  # far more than rounding: still refused
    with pytest.raises(ValueError, match="float images must lie in"):
        flow.estimate(x1, x2, model)


def test_grayscale_frame_with_a_colour_frame_is_refused(model):
    im1, im2 = _frames(40, 56)
    gray2 = im2.float().mean(dim=0, keepdim=True).round().to(torch.uint8).expand(3, -1, -1).contiguous()
    with pytest.raises(ValueError, match="image2 is grayscale .* but image1 is colour"):
        flow.estimate(im1, gray2, model)
    pil1 = Image.fromarray(im1.permute(1, 2, 0).numpy())
    pil2 = Image.fromarray(im2.permute(1, 2, 0).numpy()).convert("L")  # an L-mode frame, read as RGB
    with pytest.raises(ValueError, match="image2 is grayscale"):
        flow.estimate(pil1, pil2, model)
    with pytest.raises(ValueError, match=r"image1 is grayscale .* \(pair 1 of the batch\)"):
        flow.estimate(torch.stack((im1, gray2)), torch.stack((im2, im1)), model)
    # both grayscale, or a flat (e.g. black) frame, or consecutive video frames: accepted
    gray1 = im1.float().mean(dim=0, keepdim=True).round().to(torch.uint8).expand(3, -1, -1).contiguous()
    assert flow.estimate(gray1, gray2, model).shape == (2, 40, 56)
    assert flow.estimate(torch.zeros_like(im1), im2, model).shape == (2, 40, 56)
    assert flow.estimate(im1, gray2, model, check_colour=False).shape == (2, 40, 56)
