"""Ring-buffer replay: wrap-around, sampling of filled rows only, seeded reproducibility,
bootstrap masks and checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from algd_jax.replay import ReplayBuffer


def _fill(buf: ReplayBuffer, start: int, count: int, terminated_every: int = 0) -> None:
    """Insert rows whose every field encodes the row's global insertion index."""
    for t in range(start, start + count):
        buf.add(
            obs=np.full(buf.obs_dim, t, np.float32),
            action=np.full(buf.act_dim, t, np.float32),
            reward=float(t),
            cost=float(t) + 0.5,
            next_obs=np.full(buf.obs_dim, t + 1, np.float32),
            terminated=bool(terminated_every and t % terminated_every == 0),
            truncated=bool(t % 7 == 0),
        )


def test_wrap_around_overwrites_oldest_rows() -> None:
    buf = ReplayBuffer(capacity=5, obs_dim=3, act_dim=2, seed=0)
    _fill(buf, 0, 7)
    assert len(buf) == 5 and buf.ptr == 2
    # rows 0, 1 were overwritten by transitions 5, 6; rows 2..4 still hold 2..4
    np.testing.assert_array_equal(buf.data["reward"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.data["obs"][:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.data["next_obs"][:, 0], [6, 7, 3, 4, 5])


def test_samples_only_filled_rows_with_block_shapes() -> None:
    buf = ReplayBuffer(capacity=100, obs_dim=3, act_dim=2, seed=1)
    _fill(buf, 0, 10)
    batch = buf.sample_block(4, 64)
    assert batch["obs"].shape == (4, 64, 3)
    assert batch["next_obs"].shape == (4, 64, 3)
    assert batch["action"].shape == (4, 64, 2)
    for key in ("reward", "cost", "mask_r", "mask_c"):
        assert batch[key].shape == (4, 64)
    assert all(v.dtype == np.float32 for v in batch.values())
    # rows 10..99 are np.empty garbage: none of them may be drawn
    assert set(np.unique(batch["reward"]).tolist()) <= set(range(10))
    # 256 draws from 10 rows: every row shows up
    assert len(np.unique(batch["reward"])) == 10
    # fields of one draw stay aligned
    np.testing.assert_array_equal(batch["obs"][..., 0], batch["reward"])
    np.testing.assert_array_equal(batch["cost"], batch["reward"] + 0.5)


def test_empty_buffer_refuses_to_sample() -> None:
    buf = ReplayBuffer(capacity=4, obs_dim=1, act_dim=1, seed=0)
    with pytest.raises(ValueError, match="empty"):
        buf.sample_block(1, 1)


def test_seeded_sampling_is_reproducible() -> None:
    a = ReplayBuffer(capacity=50, obs_dim=2, act_dim=1, seed=3)
    b = ReplayBuffer(capacity=50, obs_dim=2, act_dim=1, seed=3)
    c = ReplayBuffer(capacity=50, obs_dim=2, act_dim=1, seed=4)
    for buf in (a, b, c):
        _fill(buf, 0, 50)
    for _ in range(3):
        xa, xb, xc = (buf.sample_block(2, 16)["reward"] for buf in (a, b, c))
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa, xc)


def test_masks_from_terminated_truncation_option_and_cost_mask() -> None:
    kwargs = dict(capacity=30, obs_dim=1, act_dim=1, seed=0)
    default = ReplayBuffer(**kwargs)
    reference = ReplayBuffer(**kwargs, truncation_ends_bootstrap=True)
    navigation = ReplayBuffer(**kwargs, cost_mask="none")
    for buf in (default, reference, navigation):
        _fill(buf, 0, 30, terminated_every=3)
        batch = buf.sample_block(8, 32)
        t = batch["reward"].astype(int)
        terminated = t % 3 == 0
        truncated = t % 7 == 0
        ends = terminated | truncated if buf is reference else terminated
        np.testing.assert_array_equal(batch["mask_r"], 1.0 - ends)
        if buf is navigation:
            np.testing.assert_array_equal(batch["mask_c"], 1.0)
        else:
            np.testing.assert_array_equal(batch["mask_c"], batch["mask_r"])


def test_state_round_trip_continues_identically() -> None:
    a = ReplayBuffer(capacity=8, obs_dim=2, act_dim=1, seed=5)
    _fill(a, 0, 11)
    a.sample_block(1, 3)  # advance the generator
    b = ReplayBuffer(capacity=8, obs_dim=2, act_dim=1, seed=99)
    b.load({k: v.copy() for k, v in a.state_dict().items()}, a.meta())
    _fill(a, 11, 2)
    _fill(b, 11, 2)
    for _ in range(2):
        xa, xb = a.sample_block(3, 5), b.sample_block(3, 5)
        for key in xa:
            np.testing.assert_array_equal(xa[key], xb[key])
    assert (a.ptr, a.size) == (b.ptr, b.size)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=0, obs_dim=1, act_dim=1, seed=0)
    with pytest.raises(ValueError, match="cost_mask"):
        ReplayBuffer(capacity=1, obs_dim=1, act_dim=1, seed=0, cost_mask="bogus")  # type: ignore[arg-type]
