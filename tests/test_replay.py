"""Ring-buffer replay with a seed axis: wrap-around, sampling of filled rows only,
counter-seeded reproducibility (seed k draws the same rows alone or among others), bootstrap
masks and the per-seed checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from algd_jax.replay import ReplayBuffer, replay_bytes, row_bytes


def _fill(buf: ReplayBuffer, start: int, count: int, terminated_every: int = 0) -> None:
    """Insert rows whose every field encodes the global insertion index t, plus 1000 x the
    seed's position (so that rows of different seeds differ)."""
    num = buf.num_seeds
    offset = 1000.0 * np.arange(num)
    for t in range(start, start + count):
        value = t + offset
        buf.add(
            obs=np.repeat(value[:, None], buf.obs_dim, 1).astype(np.float32),
            action=np.repeat(value[:, None], buf.act_dim, 1).astype(np.float32),
            reward=value,
            cost=value + 0.5,
            next_obs=np.repeat(value[:, None] + 1, buf.obs_dim, 1).astype(np.float32),
            terminated=np.full(num, bool(terminated_every and t % terminated_every == 0)),
            truncated=np.full(num, bool(t % 7 == 0)),
        )


def test_wrap_around_overwrites_oldest_rows() -> None:
    buf = ReplayBuffer(capacity=5, obs_dim=3, act_dim=2, seeds=[0, 1])
    _fill(buf, 0, 7)
    assert len(buf) == 5 and buf.ptr == 2
    # rows 0, 1 were overwritten by transitions 5, 6; rows 2..4 still hold 2..4
    np.testing.assert_array_equal(buf.data["reward"][0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.data["reward"][1], [1005, 1006, 1002, 1003, 1004])
    np.testing.assert_array_equal(buf.data["next_obs"][0, :, 0], [6, 7, 3, 4, 5])


def test_samples_only_filled_rows_of_its_own_seed_with_block_shapes() -> None:
    buf = ReplayBuffer(capacity=100, obs_dim=3, act_dim=2, seeds=[1, 2])
    _fill(buf, 0, 10)
    batch = buf.sample_block(4, 64, step=10)
    assert batch.obs.shape == (2, 4, 64, 3) and batch.next_obs.shape == (2, 4, 64, 3)
    assert batch.action.shape == (2, 4, 64, 2)
    for array in (batch.reward, batch.cost, batch.mask_r, batch.mask_c):
        assert array.shape == (2, 4, 64)
    assert all(np.asarray(v).dtype == np.float32 for v in batch)
    # rows 10..99 are np.empty garbage: none of them may be drawn; each seed its own rows
    for k in range(2):
        drawn = set(np.unique(batch.reward[k]).tolist())
        assert drawn == {1000.0 * k + t for t in range(10)}  # 256 draws: every row shows up
    # fields of one draw stay aligned
    np.testing.assert_array_equal(batch.obs[..., 0], batch.reward)
    np.testing.assert_array_equal(batch.cost, batch.reward + 0.5)


def test_empty_buffer_refuses_to_sample() -> None:
    buf = ReplayBuffer(capacity=4, obs_dim=1, act_dim=1, seeds=[0])
    with pytest.raises(ValueError, match="empty"):
        buf.sample_block(1, 1, step=0)


def test_sampling_is_a_function_of_seed_and_step() -> None:
    alone = ReplayBuffer(capacity=50, obs_dim=2, act_dim=1, seeds=[3])
    among = ReplayBuffer(capacity=50, obs_dim=2, act_dim=1, seeds=[7, 3, 4])
    for buf in (alone, among):
        _fill(buf, 0, 50)
    for step in (50, 51):
        a = alone.sample_block(2, 16, step).reward[0]
        b = among.sample_block(2, 16, step).reward[1] - 1000.0  # seed 3 sits at position 1
        np.testing.assert_array_equal(a, b)
    x = among.sample_block(2, 16, 50).reward
    assert not np.array_equal(x[0], x[2] - 2000.0)  # other seeds draw other rows
    assert not np.array_equal(
        alone.sample_block(2, 16, 50).reward, alone.sample_block(2, 16, 51).reward
    )


def test_masks_from_terminated_truncation_option_and_cost_mask() -> None:
    kwargs = dict(capacity=30, obs_dim=1, act_dim=1, seeds=[0])
    default = ReplayBuffer(**kwargs)
    reference = ReplayBuffer(**kwargs, truncation_ends_bootstrap=True)
    navigation = ReplayBuffer(**kwargs, cost_mask="none")
    for buf in (default, reference, navigation):
        _fill(buf, 0, 30, terminated_every=3)
        batch = buf.sample_block(8, 32, step=30)
        t = batch.reward.astype(int)
        terminated = t % 3 == 0
        truncated = t % 7 == 0
        ends = terminated | truncated if buf is reference else terminated
        np.testing.assert_array_equal(batch.mask_r, 1.0 - ends)
        if buf is navigation:
            np.testing.assert_array_equal(batch.mask_c, 1.0)
        else:
            np.testing.assert_array_equal(batch.mask_c, batch.mask_r)


def test_state_round_trip_continues_identically() -> None:
    a = ReplayBuffer(capacity=8, obs_dim=2, act_dim=1, seeds=[5, 6])
    _fill(a, 0, 11)
    b = ReplayBuffer(capacity=8, obs_dim=2, act_dim=1, seeds=[5, 6])
    for k in range(2):
        b.load(k, {name: v.copy() for name, v in a.state_dict(k).items()}, ptr=a.ptr)
    _fill(a, 11, 2)
    _fill(b, 11, 2)
    for step in (13, 14):
        xa, xb = a.sample_block(3, 5, step), b.sample_block(3, 5, step)
        for u, v in zip(xa, xb, strict=True):
            np.testing.assert_array_equal(u, v)
    assert (a.ptr, a.size) == (b.ptr, b.size)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=0, obs_dim=1, act_dim=1, seeds=[0])
    with pytest.raises(ValueError, match="cost_mask"):
        ReplayBuffer(capacity=1, obs_dim=1, act_dim=1, seeds=[0], cost_mask="bogus")  # type: ignore[arg-type]
    small = ReplayBuffer(capacity=4, obs_dim=1, act_dim=1, seeds=[0])
    rows = {n: np.zeros((6, *s)) for n, s in small._row_shapes().items()}
    with pytest.raises(ValueError, match="more than --replay-size 4"):
        small.load(0, rows, ptr=0)


def test_memory_estimate() -> None:
    assert row_bytes(17, 6) == 4 * (17 + 6 + 1 + 1 + 17 + 1 + 1)
    assert replay_bytes(3, 1000, 17, 6) == 3 * 1000 * row_bytes(17, 6)
    buf = ReplayBuffer(capacity=1000, obs_dim=17, act_dim=6, seeds=[0, 1, 2])
    assert sum(v.nbytes for v in buf.data.values()) == replay_bytes(3, 1000, 17, 6)
