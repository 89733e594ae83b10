import pytest
import torch

from mcjepa import build_model
from mcjepa.architecture import EncoderConfig, FlowHeadConfig, ModelConfig, model_config
from mcjepa.encoder import ConvNeXtPyramid


def _n(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def convnext_t():
    return ConvNeXtPyramid(EncoderConfig()).eval()


@pytest.mark.parametrize("size", [(64, 64), (67, 97), (32, 45), (100, 130)])
def test_convnext_t_pyramid_strides_and_channels(convnext_t, size):
    h, w = size
    with torch.no_grad():
        feats = convnext_t(torch.randn(1, 3, h, w))
    assert [f.shape[1] for f in feats] == [48, 48, 96, 192, 384, 768]
    strides = [2, 4, 4, 8, 16, 32]
    for f, s, info in zip(feats, strides, convnext_t.feature_info):
        assert info["reduction"] == s and info["num_chs"] == f.shape[1]
        # each level is the input size divided by its stride, up to one pixel of rounding
        assert abs(f.shape[2] - h / s) < 1 and abs(f.shape[3] - w / s) < 1


def test_encoder_has_no_layer_scale_and_drop_path(convnext_t):
    names = [n for n, _ in convnext_t.named_parameters()]
    assert not any(n.endswith("gamma") for n in names)
    assert any(type(m).__name__ == "DropPath" for m in convnext_t.modules())
    assert convnext_t.forward_embedding(torch.randn(2, 3, 64, 64)).shape == (2, 768)


def test_parameter_counts_match_the_paper_scale():
    full = build_model("convnext_t", expander=True)
    c1 = build_model("convnext_t_c1")
    # measured values, documented in the README's models table
    assert _n(full.encoder) == 27_835_200
    assert _n(full.flow_head) == 8_399_578  # paper: ~8M at C=2
    assert _n(c1.flow_head) == 2_348_122  # paper: ~2M at C=1
    assert _n(full.expander) == 140_558_336


def test_encoder_input_errors(convnext_t):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        convnext_t(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32x32"):
        convnext_t(torch.randn(1, 3, 16, 64))
    with pytest.raises(TypeError, match="float"):
        convnext_t(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_flow_head_levels_and_full_resolution_output(model):
    x1, x2 = torch.randn(2, 3, 70, 99), torch.randn(2, 3, 70, 99)
    with torch.no_grad():  # `model`: randomised flow predictors (an untrained head predicts exactly zero)
        out = model.estimate_flow(x1, x2)
        both = model.flow_both_ways(x1, x2)
        reverse = model.estimate_flow(x2, x1)
    assert out.levels == (0, 1, 2, 3, 4, 5)
    assert out.flow.shape == (2, 2, 70, 99)
    feats = model.encoder(x1)
    for f, lf in zip(feats, out.level_flows):
        assert lf.shape == (2, 2, *f.shape[-2:])
    # batched forward+backward gives the same forward flow as the single direction call
    assert out.flow.abs().mean() > 1e-3 and not torch.allclose(both.backward.flow, out.flow)
    torch.testing.assert_close(both.forward.flow, out.flow, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both.backward.flow, reverse.flow, rtol=1e-4, atol=1e-4)


def test_flows_stay_float32_under_bfloat16_autocast():
    model = build_model("micro").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model.encoder(torch.randn(1, 3, 64, 96))
        out = model.estimate_flow(torch.randn(1, 3, 64, 96), torch.randn(1, 3, 64, 96))
    assert any(f.dtype == torch.bfloat16 for f in feats)  # the features are bf16 ...
    assert out.flow.dtype == torch.float32  # ... the flows are accumulated in float32
    assert all(f.dtype == torch.float32 for f in out.level_flows)


def test_flow_is_clipped():
    cfg = model_config("micro")
    cfg = ModelConfig(
        name="x",
        encoder=cfg.encoder,
        expander=cfg.expander,
        flow_head=FlowHeadConfig(channel_factor=0.25, flow_clip=0.5),
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.flow_head.decoder.predict_flow.parameters():
            p.fill_(1.0)
        out = model.estimate_flow(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    assert all(f.abs().max() <= 0.5 for f in out.level_flows)


@pytest.mark.parametrize(("finest_level", "size"), [(0, (64, 96)), (1, (64, 96)), (0, (48, 80))])
def test_output_unit_is_the_same_in_input_pixels_at_every_level(finest_level, size):
    """One unit of decoder (or context network) output adds ``output_pixels_per_unit`` input
    pixels at any level and on both axes, also when H, W are not multiples of 32: a constant
    residual of one unit (u) from the decoder and one (v) from the context network gives
    ``levels * 0.5`` pixels of u and of v everywhere."""
    from dataclasses import replace

    cfg = model_config("micro")
    cfg = replace(cfg, flow_head=replace(cfg.flow_head, finest_level=finest_level, output_pixels_per_unit=0.5))
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.flow_head.decoder.predict_flow.bias.copy_(torch.tensor([1.0, 0.0]))
        model.flow_head.context.layers[-1].bias.copy_(torch.tensor([0.0, 1.0]))
        out = model.estimate_flow(torch.randn(1, 3, *size), torch.randn(1, 3, *size))
    n = len(out.levels)
    torch.testing.assert_close(out.flow, torch.full((1, 2, *size), 0.5 * n))
    for level, flow in zip(out.levels, out.level_flows):  # in pixels of each level
        h, w = flow.shape[-2:]
        coarser = n - (level - finest_level)  # levels from the coarsest down to this one
        torch.testing.assert_close(flow[:, 0], torch.full((1, h, w), 0.5 * coarser * w / size[1]))
        torch.testing.assert_close(flow[:, 1], torch.full((1, h, w), 0.5 * coarser * h / size[0]))


def test_finest_level_knob_stops_at_stride_4():
    cfg = model_config("micro")
    cfg = ModelConfig(
        name="x",
        encoder=cfg.encoder,
        expander=cfg.expander,
        flow_head=FlowHeadConfig(channel_factor=0.25, finest_level=1),
    )
    out = build_model(cfg).estimate_flow(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    assert out.levels == (1, 2, 3, 4, 5) and out.flow.shape == (1, 2, 64, 64)


def test_coarsest_level_knob_starts_the_head_lower():
    """``coarsest_level = 3``: the head estimates levels 1-3 only, starting from zero flow at
    level 3 (one decoder bias of one unit then gives 3 levels x 0.5 px), and holds no reducer
    weights for the levels above it, while the remaining keys keep their pyramid index."""
    from dataclasses import replace

    base = model_config("micro")
    head_cfg = replace(base.flow_head, finest_level=1, coarsest_level=3, context_network=False)
    model = build_model(replace(base, flow_head=head_cfg)).eval()
    with torch.no_grad():
        model.flow_head.decoder.predict_flow.bias.copy_(torch.tensor([1.0, 1.0]))
        out = model.estimate_flow(torch.randn(1, 3, 64, 96), torch.randn(1, 3, 64, 96))
    assert out.levels == (1, 2, 3) and len(out.level_flows) == 3
    torch.testing.assert_close(out.flow, torch.full((1, 2, 64, 96), 1.5))
    reducer_keys = {k.split(".")[1] for k in model.flow_head.state_dict() if k.startswith("reducers.")}
    assert reducer_keys == {"0", "1", "2", "3"}


@pytest.mark.parametrize("coarsest", [0, 6, -2])
def test_coarsest_level_out_of_range_is_a_clear_error(coarsest):
    from dataclasses import replace

    base = model_config("micro")
    cfg = replace(base, flow_head=replace(base.flow_head, finest_level=1, coarsest_level=coarsest))
    with pytest.raises(ValueError, match="flow_head.coarsest_level must be -1"):
        build_model(cfg)


def test_layernorm_switch_removes_norms():
    cfg = model_config("micro")
    no_ln = ModelConfig(
        name="x",
        encoder=cfg.encoder,
        expander=cfg.expander,
        flow_head=FlowHeadConfig(channel_factor=0.25, use_layernorm=False),
    )
    head = build_model(no_ln).flow_head
    assert not any("LayerNorm" in type(m).__name__ for m in head.modules())
    assert any("LayerNorm" in type(m).__name__ for m in build_model("micro").flow_head.modules())


def test_config_round_trip_and_unknown_keys():
    cfg = model_config("micro")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    bad = cfg.to_dict()
    bad["flow_head"]["bogus"] = 1
    with pytest.raises(ValueError, match="flow_head.bogus"):
        ModelConfig.from_dict(bad)
