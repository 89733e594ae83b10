"""The config system: one coercer (mcjepa.utils.schema) for architecture and training configs, typed
partial architecture overrides checked at load time, per-level weights in one order
(mcjepa.train.levels: fine to coarse; only the ``*_coarse_to_fine`` config keys list them the other
way), and ``--set`` overrides with list items."""

import dataclasses
import json
import re

import pytest
import torch

from mcjepa.architecture import FlowHeadConfig, ModelConfig, model_config
from mcjepa.train.config import LossSection, TrainConfig, apply_overrides, available_configs, load_config
from mcjepa.train.levels import PAPER_REG_WEIGHTS, PAPER_VC_COV_WEIGHTS, PAPER_VC_VAR_WEIGHTS, LevelWeights
from mcjepa.utils.schema import ConfigError, Partial, config_key, from_dict


@pytest.mark.parametrize("name", available_configs())
def test_shipped_configs_round_trip_through_the_one_coercer(name):
    cfg = load_config(name)
    data = json.loads(json.dumps(cfg.to_dict()))
    again = from_dict(TrainConfig, data)
    again.validate()
    assert again == cfg and again.to_dict() == data


def test_level_weights_have_one_order_and_the_config_keys_name_theirs():
    w = LevelWeights.from_coarse_to_fine([1, 2, 3, 4, 5, 6])
    assert w == (6.0, 5.0, 4.0, 3.0, 2.0, 1.0)  # index 0 = the stride-2 level
    assert w.coarse_to_fine == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert LevelWeights.from_config([1, 2, 3, 4, 5, 6], "k") == w and w.to_config() == [1, 2, 3, 4, 5, 6]
    assert w.only_level(5) == (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    # every per-level field of the training config is a LevelWeights, read from a key that says
    # its order; the defaults are the paper's constants themselves (defined once, in levels.py)
    fields = [f for f in dataclasses.fields(LossSection) if f.type == "LevelWeights"]
    assert [config_key(f) for f in fields] == [
        "reg_weights_coarse_to_fine",
        "vc_var_weights_coarse_to_fine",
        "vc_cov_weights_coarse_to_fine",
    ]
    loss = LossSection()
    assert loss.reg_weights is PAPER_REG_WEIGHTS
    assert loss.vc_var_weights is PAPER_VC_VAR_WEIGHTS and loss.vc_cov_weights is PAPER_VC_COV_WEIGHTS
    with pytest.raises(ValueError, match="need 6 per-level weights"):
        LevelWeights([1.0] * 5)
    with pytest.raises(ValueError, match=r"\[2\] \(fine to coarse\) must be a finite number >= 0"):
        LevelWeights([1.0, 1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match=re.escape("loss.vc_cov_weights_coarse_to_fine needs 6 values")):
        load_config("demo", ["loss.vc_cov_weights_coarse_to_fine=[1, 2]"])


def test_objective_takes_the_weights_as_they_are_and_last_mode_keeps_the_coarsest_level():
    """No reordering in the objective (it used to reverse the config's lists), and vc_mode =
    "last" keeps the stride-32 level's weights (it used to splice ``[0.0] * 5`` by hand)."""
    from mcjepa.model import build_model
    from mcjepa.train.objective import MCJEPAObjective

    model = build_model("micro", expander=True)
    paper = MCJEPAObjective(model, load_config("paper").loss)
    assert paper.reg_weights == PAPER_REG_WEIGHTS == (0.01, 0.1, 1.0, 1.0, 1.0, 1.0)
    assert paper.vc_var_weights == PAPER_VC_VAR_WEIGHTS and paper.vc_cov_weights == PAPER_VC_COV_WEIGHTS
    last = MCJEPAObjective(model, load_config("paper", ['loss.vc_mode="last"']).loss)
    assert last.vc_var_weights == (0.0, 0.0, 0.0, 0.0, 0.0, 0.01)
    assert last.vc_cov_weights == (0.0, 0.0, 0.0, 0.0, 0.0, 0.04)
    # a config file lists the weights coarse to fine: its last value is the stride-2 level's
    one = MCJEPAObjective(model, load_config("paper", ["loss.reg_weights_coarse_to_fine=[0, 0, 0, 0, 0, 3]"]).loss)
    assert one.reg_weights == (3.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_architecture_overrides_are_typed_partials_of_the_variant():
    cfg = load_config("demo", ["model.encoder.drop_path_rate=0.2", "model.flow_head.channel_factor=1"])
    assert isinstance(cfg.model.encoder, Partial) and cfg.model.encoder["drop_path_rate"] == 0.2
    factor = cfg.model.flow_head["channel_factor"]
    assert factor == 1.0 and isinstance(factor, float)  # coerced to the field's type
    micro = model_config("micro")
    assert cfg.model.resolve() == dataclasses.replace(
        micro,
        encoder=dataclasses.replace(micro.encoder, drop_path_rate=0.2),
        flow_head=dataclasses.replace(micro.flow_head, finest_level=1, channel_factor=1.0),
    )
    assert cfg.to_dict()["model"] == {
        "variant": "micro",
        "flow_head": {"finest_level": 1, "channel_factor": 1.0},
        "encoder": {"drop_path_rate": 0.2},
        "expander": {},
    }
    assert Partial(FlowHeadConfig, {"finest_level": 1}).apply(FlowHeadConfig()).finest_level == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('model.flow_head.channel_factor="big"', "model.flow_head.channel_factor: expected a number"),
        ("model.encoder.depths=[1, 1, 2.5, 1]", "model.encoder.depths[2]: expected an integer"),
        ("model.encoder.stem_dims=[12]", "model.encoder.stem_dims: expected 2 values"),
        ("model.expander.bogus=1", "model.expander.bogus"),
        ('model.variant="convnext_xl"', "model.variant: unknown model variant 'convnext_xl'"),
        ("model.flow_head.channel_factor=0", "model.flow_head.channel_factor must be > 0"),
        ('model.flow_head.feature_normalization="layer"', "model.flow_head.feature_normalization must be"),
    ],
)
def test_bad_architecture_overrides_fail_at_load_naming_the_key(tmp_path, capsys, override, message):
    """Before, these passed load_config: wrong types went unchecked to the model builder, and an
    unknown variant or a refused value was a bare ValueError from the Trainer (a traceback from
    mcjepa-train instead of exit 2)."""
    from mcjepa.cli.train import main

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("demo", [override])
    assert main(["--config", "demo", "--set", override, "--out", str(tmp_path / "r"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_config_is_read_by_the_same_coercer():
    data = model_config("micro").to_dict()
    assert data["encoder"]["depths"] == [1, 1, 2, 1]  # JSON-ready lists
    assert ModelConfig.from_dict(json.loads(json.dumps(data))) == model_config("micro")
    data["flow_head"]["max_displacement"] = "4"
    with pytest.raises(ValueError, match=re.escape("flow_head.max_displacement: expected an integer")):
        ModelConfig.from_dict(data)


def test_set_addresses_list_items_and_applies_in_order(capsys):
    data = {"data": {"motion": [{"name": "a", "size": [1, 2]}, {"name": "b"}]}}
    out = apply_overrides(data, ['data.motion[1].root="/x"', "data.motion[0].size=[64, 96]"])
    assert out["data"]["motion"] == [{"name": "a", "size": [64, 96]}, {"name": "b", "root": "/x"}]
    assert data["data"]["motion"][1] == {"name": "b"}  # the input is not changed
    assert apply_overrides(data, ['data.motion[1]={name = "c"}'])["data"]["motion"][1] == {"name": "c"}
    with pytest.raises(ConfigError, match=re.escape("data.motion has no item 5 (it has 2)")):
        apply_overrides(data, ["data.motion[5].root=1"])
    with pytest.raises(ConfigError, match="is not a key"):
        apply_overrides(data, ["data.motion[x].root=1"])
    # an item of a list set by an earlier --set: mcjepa-train used to index the file's list and
    # then overwrite the earlier --set with it
    from mcjepa.cli.train import main

    sets = ['data.motion=[{name = "synthetic", num_pairs = 8, size = [64, 64]}]', "data.motion[0].seed=3"]
    assert main(["--config", "demo", *(a for s in sets for a in ("--set", s)), "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"]["motion"] == [{"name": "synthetic", "num_pairs": 8, "size": [64, 64], "seed": 3}]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ('loss.reg_gradient="encoder"', "loss.reg_gradient must be one of"),
        ('loss.occlusion_estimate="wang"', "loss.occlusion_estimate must be one of"),
        ("loss.photo_census=-1", "loss.photo_census must be a finite number >= 0"),
    ],
)
def test_learning_dynamics_keys_are_checked(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config("demo", [override])


def test_objective_routes_the_learning_dynamics_keys():
    """reg_gradient decides what L_reg's gradient reaches, occlusion_estimate which mask L_rec sees,
    photo_census adds the census distance to L_rec; the defaults are the paper's forms."""
    from mcjepa.model import build_model
    from mcjepa.train.objective import MCJEPAObjective
    from mcjepa.train.schedule import StepPlan

    paper = load_config("paper").loss
    assert (paper.reg_gradient, paper.occlusion_estimate, paper.photo_census) == ("both", "forward_backward", 0.0)
    torch.manual_seed(0)
    model = build_model("micro", expander=True)
    frames = (torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    plan = StepPlan(content=False, motion=True, vc=False, occlusion=True, detach_encoder_for_motion=False)

    def grads(*overrides):
        objective = MCJEPAObjective(model, load_config("demo", list(overrides)).loss)
        model.zero_grad(set_to_none=True)
        out = objective(None, frames, plan)
        out["reg"].backward()
        head = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.flow_head.parameters())
        enc = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
        return out, head, enc

    _, head, enc = grads('loss.reg_gradient="both"')
    assert head and enc
    _, head, enc = grads('loss.reg_gradient="features"')
    assert not head and enc
    _, head, enc = grads('loss.reg_gradient="flow"')
    assert head and not enc
    # an untrained head predicts zero flow: the range map then keeps every pixel
    out, _, _ = grads('loss.occlusion_estimate="range_map"')
    assert out["diag_visible"].item() == 1.0
    plain = grads()[0]["rec"].item()
    assert grads("loss.photo_census=1.0")[0]["rec"].item() > plain + 0.5  # random frames: census ~ 3
