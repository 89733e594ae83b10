"""Evaluation protocols of the MC-JEPA paper (its experiments, Sec. 4; docs/evaluation.md) and their metrics.

* :mod:`.metrics`: EPE (pooled and per image), occluded / non-occluded EPE, Fl-all, mIoU,
  DAVIS J and F.
* :mod:`.flow_eval` + :mod:`.baselines`: optical flow on Sintel, KITTI 2015, FlyingChairs, the
  synthetic and real-texture sets and any ``.flo`` folder; zero / DIS / Farnebäck reference rows.
* :mod:`.segmentation`: linear head on frozen (or fine-tuned) pyramid features; VOC,
  Cityscapes, ADE20k.
* :mod:`.davis`: DAVIS 2017 label propagation, (J&F)m.
* :mod:`.probes`: k-NN and linear probes on the pooled embedding.
* :mod:`.real_pairs`: photometric warp error on real frame pairs without ground truth.

The command line is ``mcjepa-eval`` (:mod:`mcjepa.cli.eval`).
"""

from mcjepa.eval.baselines import BASELINES, dis_flow, farneback_flow, get_baseline, zero_flow
from mcjepa.eval.davis import PropagationConfig, evaluate_davis, propagate_sequence
from mcjepa.eval.flow_eval import FLOW_DATASETS, FlowSample, evaluate_flow, model_method, open_flow_dataset
from mcjepa.eval.metrics import (
    FlowMetricAccumulator,
    confusion_matrix,
    db_boundary_f,
    db_region_iou,
    endpoint_error,
    fl_outliers,
    miou_from_confusion,
    seg2bmap,
)
from mcjepa.eval.probes import evaluate_probes, extract_embeddings, knn_classify, linear_probe, open_probe_dataset
from mcjepa.eval.segmentation import (
    SEG_DATASETS,
    LinearSegHead,
    SegmentationModel,
    SegTrainConfig,
    evaluate_segmentation,
    open_segmentation_dataset,
    train_segmentation,
)

__all__ = [
    "BASELINES",
    "FLOW_DATASETS",
    "SEG_DATASETS",
    "FlowMetricAccumulator",
    "FlowSample",
    "LinearSegHead",
    "PropagationConfig",
    "SegmentationModel",
    "SegTrainConfig",
    "confusion_matrix",
    "db_boundary_f",
    "db_region_iou",
    "dis_flow",
    "endpoint_error",
    "evaluate_davis",
    "evaluate_flow",
    "evaluate_probes",
    "evaluate_segmentation",
    "extract_embeddings",
    "farneback_flow",
    "fl_outliers",
    "get_baseline",
    "knn_classify",
    "linear_probe",
    "miou_from_confusion",
    "model_method",
    "open_flow_dataset",
    "open_probe_dataset",
    "open_segmentation_dataset",
    "propagate_sequence",
    "seg2bmap",
    "train_segmentation",
    "zero_flow",
]
