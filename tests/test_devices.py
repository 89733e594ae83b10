"""mcjepa.utils.devices.resolve_device: the one device resolver (training, mcjepa-eval, mcjepa-flow, benchmarks)."""

import pytest
import torch

from mcjepa.utils.devices import DeviceError, resolve_device


def test_auto_and_plain_names_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto", 0) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"--device='cuda' but CUDA is not available on this machine"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"run.device='gpu': expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu", option="run.device")


def test_cuda_follows_local_rank_only_when_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", 1) == torch.device("cuda:1")
    assert resolve_device("cuda", 1) == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="no such GPU; available devices: cpu, cuda:0, cuda:1"):
        resolve_device("cuda:2")
