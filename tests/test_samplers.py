"""Resumable distributed samplers, grouped batches and per-sample seeding."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from mcjepa.data.samplers import GroupedBatchSampler, ResumableDistributedSampler, sample_rng, sample_seed
from mcjepa.train.streams import PerSampleSeeded


def test_resumable_sampler_deterministic_and_disjoint():
    a = list(ResumableDistributedSampler(10, seed=3))
    b = list(ResumableDistributedSampler(10, seed=3))
    assert a == b and sorted(a) == list(range(10))
    s = ResumableDistributedSampler(10, seed=3)
    s.set_epoch(1)
    assert list(s) != a and sorted(s) == list(range(10))
    shards = [list(ResumableDistributedSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert [len(x) for x in shards] == [3, 3, 3]
    flat = [i for x in shards for i in x]
    assert len(set(flat)) == 9  # disjoint; one sample dropped
    assert flat != sorted(flat)


def test_resumable_sampler_matches_torch_distributed_sampler_unshuffled():
    for drop_last in (True, False):
        for r in range(3):
            ours = ResumableDistributedSampler(10, shuffle=False, rank=r, world_size=3, drop_last=drop_last)
            ref = DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False, drop_last=drop_last)
            assert list(ours) == list(ref) and len(ours) == len(ref)


def test_resumable_sampler_set_start_is_exact_continuation():
    s = ResumableDistributedSampler(50, seed=1, rank=1, world_size=2)
    s.set_epoch(4)
    full = list(s)
    fresh = ResumableDistributedSampler(50, seed=1, rank=1, world_size=2)
    fresh.set_epoch(4)
    fresh.set_start(7)
    assert list(fresh) == full[7:] and len(fresh) == 25 - 7
    fresh.set_epoch(5)  # a new epoch starts from its beginning
    assert len(fresh) == 25
    with pytest.raises(ValueError, match=r"\[0, 25\]"):
        fresh.set_start(26)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        ResumableDistributedSampler(10, rank=2, world_size=2)


def _run(sampler: GroupedBatchSampler, sizes: list[int]) -> list[tuple[int, list[int]]]:
    offsets = [sum(sizes[:d]) for d in range(len(sizes))]
    out = []
    for batch in sampler:
        ds = {max(d for d, o in enumerate(offsets) if i >= o) for i in batch}
        assert len(ds) == 1, f"batch mixes datasets {ds}"
        out.append((ds.pop(), batch))
    return out


def test_grouped_batches_single_dataset_deterministic_and_counts():
    sizes, repeats = [37, 11, 20], [1, 3, 2]
    s = GroupedBatchSampler(sizes, repeats, batch_size=4, seed=0)
    got = _run(s, sizes)
    assert got == _run(GroupedBatchSampler(sizes, repeats, batch_size=4, seed=0), sizes)
    assert len(got) == len(s) == 37 // 4 + 33 // 4 + 40 // 4
    assert Counter(d for d, _ in got) == {0: 9, 1: 8, 2: 10}
    assert all(len(b) == 4 for _, b in got)
    # each index of dataset 2 (repeat 2, 40 = 10 full batches) appears exactly twice
    c = Counter(i for d, b in got if d == 2 for i in b)
    assert set(c) == set(range(48, 68)) and set(c.values()) == {2}
    s.set_epoch(1)
    assert _run(s, sizes) != got


def test_grouped_batches_distributed_disjoint_equal_length():
    sizes, repeats = [30, 18], [1, 1]
    ranks = [GroupedBatchSampler(sizes, repeats, batch_size=4, seed=7, rank=r, world_size=3) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert [len(x) for x in per_rank] == [3, 3, 3]  # 7 + 4 = 11 batches, truncated to 9
    flat = [i for x in per_rank for b in x for i in b]
    assert len(flat) == len(set(flat)) == 36
    single = GroupedBatchSampler(sizes, repeats, batch_size=4, seed=7, world_size=1)
    single.set_epoch(2)
    assert len(single) == 11


def test_grouped_batches_proportional_to_size_times_repeat():
    # dataset 0: 400 samples x1, dataset 1: 20 samples x40 -> 800 virtual: expected share 2/3 of batches
    s = GroupedBatchSampler([400, 20], [1, 40], batch_size=8, seed=123)
    shares = []
    for epoch in range(5):
        s.set_epoch(epoch)
        first = [d for d, _ in s.epoch_batches()][:60]  # a window of the epoch, not the whole (exact) epoch
        shares.append(sum(first) / len(first))
    mean = sum(shares) / len(shares)
    assert abs(mean - 2 / 3) < 0.06, shares
    assert len(set(shares)) > 1  # the interleaving is random


def test_grouped_batches_resume_and_errors():
    sizes, repeats = [25, 25], [2, 1]
    s = GroupedBatchSampler(sizes, repeats, batch_size=5, seed=5, rank=0, world_size=2)
    s.set_epoch(3)
    full = list(s)
    resumed = GroupedBatchSampler(sizes, repeats, batch_size=5, seed=5, rank=0, world_size=2)
    resumed.set_epoch(3)
    resumed.set_start(4)
    assert list(resumed) == full[4:] and len(resumed) == len(full) - 4
    with pytest.raises(ValueError, match=r"repeats\[1\] must be an integer >= 1"):
        GroupedBatchSampler([10, 10], [1, 0], batch_size=2)
    with pytest.raises(ValueError, match="dataset 1 has size \\* repeat = 3 \\* 1 = 3"):
        GroupedBatchSampler([10, 3], [1, 1], batch_size=4)
    with pytest.raises(ValueError, match="one repeat per dataset"):
        GroupedBatchSampler([10, 3], [1], batch_size=4)


def test_sample_rng_reproducible_and_restores_state():
    torch.manual_seed(42)
    expected_next = torch.rand(3)
    torch.manual_seed(42)
    with sample_rng(0, 1, 5):
        a = torch.rand(4)
    with sample_rng(0, 1, 5):
        b = torch.rand(4)
    with sample_rng(0, 2, 5):
        c = torch.rand(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.rand(3), expected_next)  # outer RNG untouched
    with sample_rng(None, 1, 5):  # no seed: the ambient RNG is used
        assert not torch.equal(torch.rand(4), a)


def test_sample_rng_and_training_streams_share_one_mechanism():
    """A dataset's own seed (sample_rng) and training's PerSampleSeeded are the same seeding:
    sample_seed(seed, stream 0, epoch, index) applied by seeded_rngs to torch, NumPy and Python."""

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.rand(3), np.random.rand(), random.random()

    with sample_rng(3, 2, 7):
        alone = Draws()[7]
    in_training = PerSampleSeeded(Draws())[(7, sample_seed(3, 0, 2, 7))]
    assert torch.equal(alone[0], in_training[0]) and alone[1:] == in_training[1:]
