"""Training configuration: typed dataclasses, loaded from TOML files with ``--set`` overrides.

One loader: :func:`load_config` reads a TOML file, applies ``--set`` overrides (dotted keys,
``key[i]`` list items) and builds the typed :class:`TrainConfig` with :func:`mcjepa.utils.schema.from_dict`,
the coercer that also reads architecture configs. The ``[model.*]`` tables are typed partial
architecture overrides (:class:`~mcjepa.utils.schema.Partial` of the :mod:`mcjepa.architecture` sections),
resolved and checked at load time (:meth:`ModelSection.resolve`). Per-level weights are
:class:`~mcjepa.train.levels.LevelWeights` (fine to coarse) read from the ``*_coarse_to_fine`` keys.

The ``paper`` config (``mcjepa/train/configs/paper.toml``) holds the paper's objective as written
(arXiv 2307.12698) with a source for every value, and ``paper-measured`` the same with this
project's measured departures (``docs/learning_dynamics.md``). The dataclass defaults below are
the paper's numbers except the loss forms ``paper-measured`` changes and ``loss.vc_max_samples``
/ ``loss.masked_mean`` (the library's defaults, which the demos use). Unknown keys and wrong
types fail at start-up with the key's dotted name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mcjepa.architecture import EncoderConfig, ExpanderConfig, FlowHeadConfig, ModelConfig, model_config
from mcjepa.data.synthetic import MOTION_PRESETS
from mcjepa.encoder import MIN_INPUT_SIZE
from mcjepa.train.levels import PAPER_REG_WEIGHTS, PAPER_VC_COV_WEIGHTS, PAPER_VC_VAR_WEIGHTS, LevelWeights
from mcjepa.train.losses import FEATURE_LOSS_NORMS, MASKED_MEANS
from mcjepa.train.toml_files import apply_overrides, available_configs, parse_value, read_toml
from mcjepa.train.var_cov import VC_POOLINGS
from mcjepa.utils.schema import ConfigError, Partial, from_dict, to_dict

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "available_configs",
    "load_config",
    "parse_value",
    "read_toml",
]

REG_GRADIENTS = ("both", "features", "flow")
OCCLUSION_ESTIMATES = ("forward_backward", "range_map")
SAMPLING_STRATEGIES = ("combined", "batch_alternation", "epoch_alternation", "frozen_encoder_flow")
VC_MODES = ("all", "last", "off")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class ModelSection:
    """The architecture: a named variant and typed overrides of some of its fields."""

    variant: str = "convnext_t"  # mcjepa.architecture.MODEL_VARIANTS
    # Overrides of the variant's FlowHeadConfig fields (e.g. channel_factor, use_layernorm):
    # the Table 3 ablations.
    flow_head: Partial[FlowHeadConfig] = field(default_factory=lambda: Partial(FlowHeadConfig))
    encoder: Partial[EncoderConfig] = field(default_factory=lambda: Partial(EncoderConfig))
    expander: Partial[ExpanderConfig] = field(default_factory=lambda: Partial(ExpanderConfig))

    def resolve(self) -> ModelConfig:
        """The variant's :class:`~mcjepa.architecture.ModelConfig` with the overrides applied.

        Raises:
            ConfigError: an unknown variant, or an override the architecture refuses (its range
                checks), naming the ``model.*`` key.
        """
        try:
            base = model_config(self.variant)
        except ValueError as exc:
            raise ConfigError(f"model.variant: {exc}") from None
        try:
            return replace(
                base,
                encoder=self.encoder.apply(base.encoder),
                flow_head=self.flow_head.apply(base.flow_head),
                expander=self.expander.apply(base.expander),
            )
        except ValueError as exc:  # e.g. "flow_head.channel_factor must be > 0, got 0"
            raise ConfigError(f"model.{exc}") from None


@dataclass
class OptimSection:
    lr_encoder: float = 3e-4  # (paper, implementation details)
    lr_expander: float = 3e-4  # the encoder's rate (our reading; docs/method.md#optimiser)
    lr_flow_head: float = 1e-4  # (paper, implementation details)
    end_lr: float = 3e-8  # cosine target (paper, implementation details)
    weight_decay: float = 1e-6  # (paper, implementation details)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (paper, implementation details)
    warmup_epochs: float = 10.0  # linear warm-up (paper, implementation details)
    grad_clip: float = 0.0  # max global grad norm; 0 disables (not in the paper)
    # Not in the paper: the flow head's learning rate ramps up linearly over this many epochs
    # from the start of the motion stream (the paper's warm-up spans phase 1 exactly, so the head
    # starts at its peak rate). 0 = no separate warm-up.
    flow_head_warmup_epochs: float = 0.0


@dataclass
class ScheduleSection:
    epochs: float = 100.0  # (paper, implementation details)
    steps_per_epoch: int = 0  # 0: one pass over the content data per epoch
    motion_start_epoch: float = 10.0  # phase 2 starts (paper; docs/method.md#schedule)
    vc_start_epoch: float = 11.0  # L_vc one epoch after motion starts (paper, Table 11)
    # Forward-backward occlusion masking of L_rec and L_cycle switches on at this epoch (never
    # before motion starts; loss.occlusion_masking = false turns it off). The paper does not say
    # when masking starts; 0 = from the start. Early in training a head predicts nearly the same
    # flow both ways (f ~ b instead of f ~ -b), the check then marks every pixel occluded and both
    # terms vanish; UFlow likewise switches its occlusion masks on after a number of steps
    # (docs/method.md#where-the-paper-is-silent-or-this-project-departs, item 5).
    occlusion_start_epoch: float = 0.0
    # Table 5: how the two streams share iterations.
    #   combined: both losses every iteration, summed before one backward (the paper's choice)
    #   batch_alternation: iterations alternate between a content and a motion step
    #   epoch_alternation: whole epochs alternate between the streams
    #   frozen_encoder_flow: the flow head trains on detached encoder features (no motion
    #     gradient reaches the encoder; "flow estimator only" row)
    sampling: str = "combined"
    content_enabled: bool = True  # false: M-JEPA (motion only) ablation
    motion_enabled: bool = True  # false: VICReg only


@dataclass
class LossSection:
    alpha: float = 0.1  # motion weight (paper, Sec. 3.2)
    # Per-level weights are LevelWeights, fine to coarse (pyramid order), like every per-level
    # sequence in mcjepa; their config keys list them coarse to fine, as the paper does, and say
    # so in their names. Defaults: the paper's (mcjepa.train.levels.PAPER_*, cited there).
    reg_weights: LevelWeights = field(default=PAPER_REG_WEIGHTS, metadata={"key": "reg_weights_coarse_to_fine"})
    # L_reg's out-of-image mask. On: average L_reg only over positions whose sample p + f(p) lies
    # inside the image. Off (the default): out-of-image samples are compared with the zeros that
    # backward_warp reads there. With the mask on, a flow that sends every sample out of the frame
    # empties the mask and makes L_reg exactly 0 (tests/test_losses.py,
    # test_masked_feature_regression_has_a_degenerate_optimum). Not measured either way
    # (docs/method.md, departures, item 17). losses.feature_regression_loss has no default for it.
    reg_mask_out_of_image: bool = False
    # photometric d = l2 * L2 + l1 * L1 + ssim * (1 - SSIM); the paper gives no values:
    # ARFlow's 0.15 L1 + 0.85 (1 - SSIM) / 2, i.e. ssim = 0.425 here, and no L2
    # (docs/method.md#reconstruction).
    photo_l1: float = 0.15
    photo_l2: float = 0.0
    photo_ssim: float = 0.425
    # weight of the census (ternary) distance added to d (losses.census_distance): UFlow's and
    # SMURF's photometric loss. 0 = the paper's d; measured in docs/scaling.md.
    photo_census: float = 0.0
    smooth_weight: float = 1.0  # weight of L_smooth in the motion sum (paper: unweighted)
    smooth_edge_factor: float = 75.0  # lambda in exp(-lambda |grad I|) (paper, implementation details)
    cycle_weight: float = 0.2  # (paper, Sec. 3.1)
    # L_rec and L_smooth on both flows (t->t+1 and t+1->t), averaged, as UnFlow, ARFlow and UFlow
    # do. false = the paper's form: forward flow only, which leaves the backward flow, needed by
    # the occlusion check, untrained by any pixel loss (docs/method.md, departures, item 1).
    pixel_losses_both_directions: bool = True
    # L_reg on both flows too, averaged: frame t+1's features predicted from frame t's by the
    # forward flow, and frame t's from frame t+1's by the backward flow (paper: forward only;
    # measured: docs/method.md, departures, item 2).
    reg_both_directions: bool = True
    # Feature normalisation inside L_reg and L_cycle: "standardize" (per image: per-channel
    # centring, one pooled scale; ops.standardize_feature_pair) or "none" (the paper: raw
    # features, on which L_reg collapses the shared encoder: docs/method.md, departures, item 3).
    feature_loss_norm: str = "standardize"
    # What L_reg trains: "both" (the paper: the features and the flows), "features" (the flows are
    # constants inside L_reg; the flow is taught by L_rec, L_smooth and L_cycle) or "flow" (the
    # features are constants inside L_reg). Not in the paper; docs/scaling.md measures each
    # term's gradient against the supervised EPE's and the three settings' curves.
    reg_gradient: str = "both"
    cycle_flow_grad: bool = True  # L_cycle trains the flows too (the paper); false: features only
    occlusion_masking: bool = True  # mask L_rec and L_cycle by the occlusion estimate (from occlusion_start_epoch)
    # How occlusion is estimated: "forward_backward" (the paper's consistency check, thresholds
    # 0.01 / 0.5 as UnFlow and ARFlow) or "range_map" (pixels of frame t that no pixel of frame
    # t+1 maps to under the backward flow: Wang et al. 2018, UFlow's default; ops.range_map_visibility).
    # Measured in docs/scaling.md.
    occlusion_estimate: str = "forward_backward"
    vc_mode: str = "all"  # Table 11: all levels, last level only, or off
    vc_var_weights: LevelWeights = field(
        default=PAPER_VC_VAR_WEIGHTS, metadata={"key": "vc_var_weights_coarse_to_fine"}
    )
    vc_cov_weights: LevelWeights = field(
        default=PAPER_VC_COV_WEIGHTS, metadata={"key": "vc_cov_weights_coarse_to_fine"}
    )
    # positions subsampled per level, micro-batch and process for L_vc; 0 = every position (the
    # paper). Not needed for cost: L_vc is computed from per-channel sums and second moments.
    vc_max_samples: int = 4096
    # L_vc samples: "batch" (the paper: every position of the batch is a sample) or "image"
    # (statistics within each image, averaged over images): no gain once the feature losses are
    # standardised (docs/method.md, departures, item 16), so the paper's form stays.
    vc_pooling: str = "batch"
    # Masked means (L_rec, L_cycle, and L_reg with reg_mask_out_of_image) over the kept pixels of
    # the whole batch ("batch") or of each image, then averaged over images ("image"). The paper
    # does not say; "image" keeps each pair's loss independent of the others, so the objective is
    # the same however the batch is split over processes and micro-batches.
    masked_mean: str = "batch"
    vicreg_inv: float = 1.0  # paper, Sec. 3.2 (VICReg's paper: 25; docs/method.md#vicreg)
    vicreg_var: float = 25.0  # paper, Sec. 3.2
    vicreg_cov: float = 1.0  # paper, Sec. 3.2


@dataclass
class DataSection:
    # content stream: {"type": "imagefolder", "root": ...} or {"type": "synthetic", ...}
    content: dict[str, Any] = field(default_factory=lambda: {"type": "imagefolder", "root": "", "size": 224})
    # motion stream: list of dataset specs, see mcjepa.data.motion.build_motion_datasets
    motion: list[dict[str, Any]] = field(default_factory=list)
    # Global batches: all processes together, per optimisation step (the paper's 384 and 8,
    # from its implementation details). Each of W processes takes batch / W samples
    # (mcjepa.train.batching); W must divide both.
    content_batch_size: int = 384
    motion_batch_size: int = 8
    # The most samples of a stream one device holds in one forward / backward pass; a larger
    # per-process share is split into equal micro-batches whose gradients accumulate before the
    # step. 0: no cap (one pass). Batch statistics stay global (mcjepa.train.global_stats), so the
    # cap changes memory and time, not the objective.
    content_max_per_device: int = 0
    motion_max_per_device: int = 0
    # DataLoader processes per training process, shared by the two streams (content gets the
    # larger half); -1 = auto: min(8, the CPUs available to each training process on this
    # machine) (mcjepa.data.workers.resolve_num_workers), so a node starts at most its CPUs.
    num_workers: int = -1
    # held-out synthetic pairs for the EPE printed at the end (0 disables)
    eval_synthetic_pairs: int = 0
    eval_synthetic_size: list[int] = field(default_factory=lambda: [96, 128])
    eval_synthetic_motion: str = "rich"  # motion preset of those pairs (mcjepa.data.synthetic.scene_motion)
    # texture those pairs with photos instead of procedural sinusoids: "" (procedural), "bundled",
    # "installed" or a folder (mcjepa.data.real_texture)
    eval_synthetic_photos: str = ""
    # content check at the end of a run (train.evaluate.content_knn): k-NN of the pooled embedding
    # on this many labelled synthetic shape images (0 disables) and, when this folder holds
    # Fashion-MNIST ("" disables), on its first 5,000 / 2,000 images; next to a random encoder.
    eval_content_images: int = 0
    eval_fashion_mnist_root: str = ""
    # and a linear probe on Fashion-MNIST (the first N training images; the first M test images,
    # 10,000 = the whole test split), next to a random encoder and raw pixels ([0, 0] disables)
    eval_fashion_mnist_linear: list[int] = field(default_factory=lambda: [0, 0])
    # the side, in pixels, of the images those probes embed (raw pixels at the same size)
    eval_content_size: int = 64


@dataclass
class RunSection:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Autocast precision (mcjepa.train.precision): "auto" = bf16 on GPUs with native bf16
    # (compute capability >= 8.0), fp16 with a gradient scaler on older GPUs (the paper's V100),
    # fp32 on the CPU; or "bf16", "fp16", "fp32" explicitly.
    precision: str = "auto"
    # TF32 tensor cores for fp32 matmuls and convolutions on GPUs that have them (>= 8.0);
    # torch leaves matmuls in full fp32 by default.
    tf32: bool = True
    channels_last: bool = False  # NHWC memory format for the convolutions (same results)
    compile: bool = False  # torch.compile the encoder and the flow head (nn.Module.compile)
    checkpoint_every: int = 1000  # steps; 0 = no checkpoints (the run cannot be resumed)
    keep_last: int = 3  # checkpoints kept; 0 = keep all
    log_every: int = 50  # steps between metrics.jsonl records (and progress lines when stderr is no terminal)
    max_nonfinite_in_row: int = 20  # stop with a diagnosis after this many skipped steps in a row
    tensorboard: bool = True  # when the tensorboard package is installed
    export_release: bool = True  # write a safetensors release at the end
    max_steps: int = 0  # stop early after this many steps (0 = run the whole schedule)
    threads: int = 0  # torch CPU threads (0: OMP_NUM_THREADS when set, else half the CPUs; mcjepa.utils.threads)


@dataclass
class TrainConfig:
    name: str = "custom"
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossSection = field(default_factory=LossSection)
    data: DataSection = field(default_factory=DataSection)
    run: RunSection = field(default_factory=RunSection)

    def validate(self) -> None:
        """Check value ranges and cross-field constraints; raise :class:`ConfigError` naming the key."""
        self._validate_numbers()
        self._validate_sizes()
        if self.schedule.sampling not in SAMPLING_STRATEGIES:
            raise ConfigError(f"schedule.sampling must be one of {SAMPLING_STRATEGIES}, got {self.schedule.sampling!r}")
        if self.loss.vc_mode not in VC_MODES:
            raise ConfigError(f"loss.vc_mode must be one of {VC_MODES}, got {self.loss.vc_mode!r}")
        if self.loss.feature_loss_norm not in FEATURE_LOSS_NORMS:
            raise ConfigError(
                f"loss.feature_loss_norm must be one of {FEATURE_LOSS_NORMS}, got {self.loss.feature_loss_norm!r}"
            )
        if self.loss.occlusion_estimate not in OCCLUSION_ESTIMATES:
            raise ConfigError(
                f"loss.occlusion_estimate must be one of {OCCLUSION_ESTIMATES}, got {self.loss.occlusion_estimate!r}"
            )
        if self.loss.reg_gradient not in REG_GRADIENTS:
            raise ConfigError(f"loss.reg_gradient must be one of {REG_GRADIENTS}, got {self.loss.reg_gradient!r}")
        if self.loss.masked_mean not in MASKED_MEANS:
            raise ConfigError(f"loss.masked_mean must be one of {MASKED_MEANS}, got {self.loss.masked_mean!r}")
        if self.run.precision not in PRECISIONS:
            raise ConfigError(f"run.precision must be one of {PRECISIONS}, got {self.run.precision!r}")
        if self.loss.vc_pooling not in VC_POOLINGS:
            raise ConfigError(f"loss.vc_pooling must be one of {VC_POOLINGS}, got {self.loss.vc_pooling!r}")
        if self.data.eval_synthetic_motion not in MOTION_PRESETS:
            raise ConfigError(
                f"data.eval_synthetic_motion must be one of {MOTION_PRESETS}, got {self.data.eval_synthetic_motion!r}"
            )
        if self.data.eval_content_images < 0:
            raise ConfigError("data.eval_content_images must be >= 0")
        if self.data.eval_content_size < 8:
            raise ConfigError(f"data.eval_content_size must be >= 8 pixels, got {self.data.eval_content_size}")
        if len(self.data.eval_fashion_mnist_linear) != 2 or min(self.data.eval_fashion_mnist_linear) < 0:
            raise ConfigError(
                "data.eval_fashion_mnist_linear must be [training images, test images], each >= 0, "
                f"got {self.data.eval_fashion_mnist_linear}"
            )
        for key in ("content_batch_size", "motion_batch_size"):
            if getattr(self.data, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1")
        if self.schedule.epochs <= 0:
            raise ConfigError("schedule.epochs must be > 0")
        if not (self.schedule.content_enabled or self.schedule.motion_enabled):
            raise ConfigError("schedule.content_enabled and schedule.motion_enabled cannot both be false")
        if self.schedule.motion_enabled and not self.data.motion:
            raise ConfigError("data.motion is empty but schedule.motion_enabled is true")
        if not self.schedule.content_enabled and self.schedule.motion_start_epoch > 0:
            raise ConfigError(
                "schedule.content_enabled = false leaves the steps before schedule.motion_start_epoch "
                f"({self.schedule.motion_start_epoch}) with nothing to train: set schedule.motion_start_epoch = 0"
            )
        if len(self.optim.betas) != 2:
            raise ConfigError("optim.betas needs 2 values")
        self.model.resolve()  # an unknown variant or a refused override fails here, not in the trainer

    def _validate_numbers(self) -> None:
        """Learning rates, weight decay, every loss weight and the epoch marks must be finite and
        >= 0 (a NaN learning rate would otherwise only show up as a run of skipped steps); counts
        must be in range."""
        for key in _NON_NEGATIVE_FLOATS:
            section, name = key.split(".")
            _check_non_negative(key, getattr(getattr(self, section), name))
        for f in fields(LossSection):  # every loss weight, present and future (LevelWeights check their own)
            value = getattr(self.loss, f.name)
            if isinstance(value, float):
                _check_non_negative(f"loss.{f.name}", value)
        for i, beta in enumerate(self.optim.betas):
            if not (math.isfinite(beta) and 0.0 <= beta < 1.0):
                raise ConfigError(f"optim.betas[{i}] must be in [0, 1), got {beta}")
        if not (math.isfinite(self.schedule.epochs) and self.schedule.epochs > 0):
            raise ConfigError(f"schedule.epochs must be a finite number > 0, got {self.schedule.epochs}")
        for key, minimum, meaning in _INT_MINIMUMS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value < minimum:
                raise ConfigError(f"{key} must be >= {minimum}{meaning}, got {value}")

    def _validate_sizes(self) -> None:
        """Every image size the model sees must be at least MIN_INPUT_SIZE on each side (the
        coarsest feature map has stride 32); say which key is too small, not what broke later."""
        size = self.data.content.get("size") if isinstance(self.data.content, dict) else None
        if _is_int(size) and size < MIN_INPUT_SIZE:
            raise ConfigError(f"data.content.size = {size}: {_TOO_SMALL}")
        for i, spec in enumerate(self.data.motion):
            if not isinstance(spec, dict):
                continue  # the dataset builder reports the type
            for name in ("crop", "size"):
                pair = spec.get(name)
                if isinstance(pair, list) and len(pair) == 2 and all(_is_int(v) for v in pair):
                    if min(pair) < MIN_INPUT_SIZE:
                        raise ConfigError(f"data.motion[{i}].{name} = {pair}: {_TOO_SMALL}")
        if self.data.eval_synthetic_pairs > 0:
            pair = self.data.eval_synthetic_size
            if len(pair) != 2 or min(pair) < MIN_INPUT_SIZE:
                raise ConfigError(f"data.eval_synthetic_size = {pair}: needs 2 values (height, width); {_TOO_SMALL}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready values under its file keys (what :func:`load_config` reads)."""
        return to_dict(self)


_NON_NEGATIVE_FLOATS = (
    "optim.lr_encoder",
    "optim.lr_expander",
    "optim.lr_flow_head",
    "optim.end_lr",
    "optim.weight_decay",
    "optim.warmup_epochs",
    "optim.grad_clip",
    "optim.flow_head_warmup_epochs",
    "schedule.motion_start_epoch",
    "schedule.vc_start_epoch",
    "schedule.occlusion_start_epoch",
)
# (key, minimum, what the minimum means)
_INT_MINIMUMS = (
    ("schedule.steps_per_epoch", 0, " (0: one pass over the content data)"),
    ("loss.vc_max_samples", 0, " (0: every position)"),
    ("data.content_max_per_device", 0, " (0: no cap)"),
    ("data.motion_max_per_device", 0, " (0: no cap)"),
    ("data.num_workers", -1, " (0: load in the training process, -1: auto)"),
    ("data.eval_synthetic_pairs", 0, " (0: off)"),
    ("run.checkpoint_every", 0, " (0: no checkpoints)"),
    ("run.keep_last", 0, " (0: keep all)"),
    ("run.log_every", 1, ""),
    ("run.max_nonfinite_in_row", 1, ""),
    ("run.max_steps", 0, " (0: the whole schedule)"),
    ("run.threads", 0, " (0: OMP_NUM_THREADS when set, else half the CPUs)"),
)
_TOO_SMALL = (
    f"height and width must be at least {MIN_INPUT_SIZE} pixels, the model's smallest input "
    "(its coarsest feature map has stride 32)"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_non_negative(key: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a finite number >= 0, got {value}")


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a shipped config by name (``paper``, ``demo``, ``video-demo``) or a TOML file path,
    apply ``key=value`` overrides, type-check and validate it."""
    data, stem = read_toml(name_or_path)
    data.setdefault("name", stem)
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(TrainConfig, data)
    cfg.validate()
    return cfg
