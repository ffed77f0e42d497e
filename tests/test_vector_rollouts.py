"""The on-policy rollout collector and programs (`algd_jax.vector_rollouts`,
`algd_jax.programs.OnPolicyPrograms`) with PPO-Lag's functions.

Two settings share every compiled program of the module:

* `DiffDriveCircle` (a registered task, pure numpy on the host), seeds 3 and 7 together and
  seed 7 alone, E = 2 envs, T = 6 steps: seed independence, exact resume, the update program.
* A counting environment of the test (observations known in closed form, a 3-step time limit,
  a termination where the reset seed says so): bootstrap values, the observation statistics
  and the episode totals, all against hand computations.
"""

from __future__ import annotations

from typing import Any, NamedTuple, SupportsFloat

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

from algd_jax.algorithms import ppo_lag as P
from algd_jax.algorithms.base import LoopInfo
from algd_jax.envs import get_task, make_env
from algd_jax.programs import on_policy_programs, stack, unstack
from algd_jax.vector_rollouts import (
    CollectorRestoreError,
    VectorCollector,
    env_step_rate,
    episode_seed,
)

T, E = 6, 2
TASK = get_task("DiffDriveCircle")
CONFIG = P.PPOLagConfig(
    steps_per_epoch=T * E,
    update_iters=2,
    minibatch_size=4,
    target_kl=1e6,
    actor_hidden=16,
    critic_hidden=16,
    episode_window=4,
)
PROGRAMS = on_policy_programs(P.ON_POLICY, "map")
SEEDS = [3, 7]


def _states(seeds: list[int], config: P.PPOLagConfig = CONFIG, spec: Any = TASK) -> Any:
    return stack([P.init(config, spec, jax.random.key(s)) for s in seeds])


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array | np.ndarray) else x, tree)


def _info(num: int, cost: float) -> LoopInfo:
    """Every seed's window full of episodes of cost `cost`, 10 update phases planned."""
    w = CONFIG.episode_window
    i32 = lambda x: jnp.full((num,), x, jnp.int32)  # noqa: E731
    return LoopInfo(
        env_step=i32(T * E),
        epoch=i32(0),
        update_step=i32(0),
        total_updates=i32(10),
        episode_costs=jnp.full((num, w), cost, jnp.float32),
        episode_discounted_costs=jnp.full((num, w), cost, jnp.float32),
        episode_returns=jnp.zeros((num, w), jnp.float32),
        episode_count=i32(w),
    )


def _collector(seeds: list[int], num_envs: int = E, host_acting: bool = True) -> VectorCollector:
    return VectorCollector(
        lambda: make_env(TASK.name), seeds, num_envs, T, TASK, PROGRAMS, host_acting=host_acting
    )


def _plain(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def _assert_same(a: Any, b: Any) -> None:
    """Bitwise equality of two pytrees of one structure (PRNG keys by their data)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(_plain(x), _plain(y))


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    """Seeds 3 and 7 together: start, rollout 1, (save), update, rollout 2; seed 7 alone the
    same; and the pair resumed from the save in fresh envs."""
    out: dict[str, Any] = {}
    for name, seeds in (("pair", SEEDS), ("alone", [7])):
        collector = _collector(seeds)
        states = collector.start(_states(seeds))
        states, r1, f1 = collector.collect(states)
        saved = (_copy(states), _copy(collector.state))
        before_update = _copy(states)
        states, metrics = PROGRAMS.update(states, r1, _info(len(seeds), 30.0))
        states, r2, f2 = collector.collect(states)
        out[name] = dict(
            r1=r1, r2=r2, f1=f1, f2=f2, saved=saved, before_update=before_update,
            metrics=metrics, states=states, collector=collector,
        )  # fmt: skip
    # Resume: fresh envs, the saved collector state (as a checkpoint gives it: numpy), the
    # saved learners; the same update, then the next rollout.
    states, cstate = out["pair"]["saved"]
    resumed = _collector(SEEDS)
    resumed.restore(jax.tree.map(np.asarray, cstate))
    states, _ = PROGRAMS.update(_copy(states), out["pair"]["r1"], _info(2, 30.0))
    states, r2, f2 = resumed.collect(states)
    out["resumed"] = dict(r2=r2, f2=f2, states=states)
    return out


def test_seed_alone_equals_the_same_seed_among_others(runs):
    pair, alone = runs["pair"], runs["alone"]
    for key in ("r1", "r2"):
        _assert_same(
            jax.tree.map(lambda x: x[1], pair[key]), jax.tree.map(lambda x: x[0], alone[key])
        )
    for key in ("f1", "f2"):
        np.testing.assert_array_equal(pair[key][1], alone[key][0])
    _assert_same(unstack(pair["states"], 1), unstack(alone["states"], 0))
    _assert_same(unstack(pair["collector"].state, 1), unstack(alone["collector"].state, 0))
    # the two seeds did differ (else the comparison says nothing)
    assert not np.array_equal(pair["r1"].obs[0], pair["r1"].obs[1])


def test_one_update_call_for_all_seeds_equals_one_call_per_seed(runs):
    pair = runs["pair"]
    for k in range(len(SEEDS)):
        one = lambda x, k=k: x[k : k + 1]  # noqa: E731
        state_k, metrics_k = PROGRAMS.update(
            jax.tree.map(one, _copy(pair["before_update"])),
            jax.tree.map(one, pair["r1"]),
            jax.tree.map(one, _info(2, 30.0)),
        )
        assert set(metrics_k) == set(P.METRIC_NAMES)
        for name in metrics_k:
            np.testing.assert_array_equal(pair["metrics"][name][k], metrics_k[name][0])
    # lambda went up by its first Adam step (J_c = 30 > d = 25), in every seed
    np.testing.assert_allclose(pair["metrics"]["multiplier"], 0.001 + 0.035, rtol=1e-4)


def test_resume_from_a_saved_collector_state_continues_bitwise(runs):
    pair, resumed = runs["pair"], runs["resumed"]
    # the save was mid-episode (100-step episodes, 6-step rollouts)
    saved = pair["saved"][1]
    assert np.all(saved.totals[..., 3] > 0)
    assert np.any(saved.actions[:, :, 1:].any(axis=-1))
    _assert_same(resumed["r2"], pair["r2"])
    for a, b in zip(resumed["f2"], pair["f2"], strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same(resumed["states"], pair["states"])


def test_restore_refuses_a_state_that_does_not_fit_or_does_not_replay(runs):
    saved = jax.tree.map(np.array, runs["pair"]["saved"][1])
    with pytest.raises(CollectorRestoreError, match="shape"):
        _collector(SEEDS, num_envs=1).restore(saved)
    with pytest.raises(CollectorRestoreError, match="belongs to seeds"):
        _collector([3, 8]).restore(saved)
    saved.obs[1, 0, 0] += 1.0
    with pytest.raises(CollectorRestoreError, match=r"env 0 of seed 7 .* did not reproduce"):
        _collector(SEEDS).restore(saved)


def test_no_program_is_compiled_again_for_a_new_run_or_rollout(runs):
    # the fixture compiled S = 1 and S = 2; the programs are shared across the process, so
    # other test modules in the same worker may have compiled further shapes already
    before = PROGRAMS.cache_sizes()
    assert min(before["update"], before["noise"], before["values"]) >= 2
    collector = _collector(SEEDS)
    states = collector.start(_states(SEEDS))
    for cost in (30.0, 10.0):
        states, rollout, _ = collector.collect(states)
        states, _ = PROGRAMS.update(states, rollout, _info(2, cost))
    assert PROGRAMS.cache_sizes() == before


# ----------------------------------------------------------------------------- counting env


class _Shape(NamedTuple):
    obs_dim: int = 8
    act_dim: int = 2
    action_low: tuple[float, ...] = (-1.0, -1.0)
    action_high: tuple[float, ...] = (1.0, 1.0)
    max_episode_steps: int = 3
    cost_gamma: float = 0.9


SHAPE = _Shape()
LIMIT = 3  # episodes are truncated after 3 steps


def _u(seed: int) -> float:
    return (seed % 1000) / 1000.0


def _obs(u: float, t: int) -> np.ndarray:
    """The counting env's observation at step t of an episode with reset value u: entry j
    is (j + 1) u - t (j mod 2)."""
    j = np.arange(8)
    return ((j + 1) * u - t * (j % 2)).astype(np.float64)


class _Counting(gymnasium.Env):
    """Observations `_obs(u, t)` with u from the reset seed (the same shapes as
    DiffDriveCircle, so the compiled programs are shared); reward = the action's first
    entry, cost = 0.5 + its second; the episode terminates after step 2 when u < 0.4."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (8,), np.float64)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.u, self.t = _u(int(seed)), 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return _obs(self.u, self.t)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        self.t += 1
        terminated = self.t == 2 and self.u < 0.4
        return self._obs(), float(action[0]), terminated, False, {"cost": 0.5 + float(action[1])}


COUNT_SEED = 11


ACTING = ("host", "compiled")


@pytest.fixture(scope="module", params=ACTING)
def counting(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Seed 11 on the counting env, acting through PPO-Lag's `HostActor` (the default) or
    the compiled per-step programs: every test of the counting env checks both."""
    collector = VectorCollector(
        lambda: TimeLimit(_Counting(), LIMIT),
        [COUNT_SEED],
        E,
        T,
        SHAPE,
        PROGRAMS,
        host_acting=request.param == "host",
    )
    states = collector.start(_states([COUNT_SEED], CONFIG, SHAPE))
    states, rollout, finished = collector.collect(states)
    return dict(
        states=states,
        rollout=rollout,
        finished=finished[0],
        collector=collector,
        host_acting=request.param == "host",
    )


def _walk(rollout: Any) -> list[dict[str, Any]]:
    """Per env, its episodes in this rollout: steps, episode index, how each ended."""
    episodes = []
    for i in range(E):
        episode, start = 0, 0
        for t in range(T):
            term, trunc = bool(rollout.terminated[0, t, i]), bool(rollout.truncated[0, t, i])
            if term or trunc:
                episodes.append(dict(env=i, episode=episode, steps=range(start, t + 1), term=term))
                episode, start = episode + 1, t + 1
    return episodes


def test_the_counting_rollout_has_terminations_and_truncations(counting):
    ends = _walk(counting["rollout"])
    assert any(e["term"] for e in ends) and any(not e["term"] for e in ends)
    for e in ends:  # terminated after 2 steps where u < 0.4, truncated after 3 elsewhere
        u = _u(episode_seed(COUNT_SEED, e["env"], e["episode"]))
        assert len(e["steps"]) == (2 if u < 0.4 else 3)


def test_episode_totals_are_the_sums_of_the_rollouts_rewards_and_costs(counting):
    rollout, finished = counting["rollout"], counting["finished"]
    ends = sorted(_walk(rollout), key=lambda e: (e["steps"][-1], e["env"]))  # finishing order
    expected = []
    for e in ends:
        rewards = np.array([rollout.reward[0, t, e["env"]] for t in e["steps"]], np.float64)
        costs = np.array([rollout.cost[0, t, e["env"]] for t in e["steps"]], np.float64)
        discounted = np.sum(costs * SHAPE.cost_gamma ** np.arange(len(costs)))
        expected.append([rewards.sum(), costs.sum(), discounted, len(costs)])
    # float32 rollout entries against the float64 totals the collector keeps
    np.testing.assert_allclose(finished, np.array(expected), rtol=1e-6, atol=1e-6)
    # the costs are what the env said: 0.5 + the second entry of the env action
    raw = rollout.raw_action[0]
    env_action = np.clip(raw, -1.0, 1.0)  # the box is [-1, 1]: scale 1, bias 0
    np.testing.assert_allclose(rollout.cost[0], 0.5 + env_action[..., 1], rtol=1e-6)
    np.testing.assert_allclose(rollout.reward[0], env_action[..., 0], rtol=1e-6)


def _pushed_rows() -> list[list[np.ndarray]]:
    """The raw observations the loop pushes into the statistics, batch by batch, in closed
    form: the first reset observations, then per step the final observations of the
    episodes that ended and the observations the step returned (reset ones there)."""
    u = lambda i, episode: _u(episode_seed(COUNT_SEED, i, episode))  # noqa: E731
    obs = _obs
    batches = [[obs(u(i, 0), 0) for i in range(E)]]
    t_in, episode = [0] * E, [0] * E
    for _ in range(T):
        finals, nexts = [], []
        for i in range(E):
            t_in[i] += 1
            u_i = u(i, episode[i])
            if (t_in[i] == 2 and u_i < 0.4) or t_in[i] == LIMIT:
                finals.append(obs(u_i, t_in[i]))
                episode[i], t_in[i] = episode[i] + 1, 0
            nexts.append(obs(u(i, episode[i]), t_in[i]))
        batches += [finals, nexts]
    return batches


def test_statistics_hold_every_observation_once_final_ones_included(counting):
    rows = np.array([r for batch in _pushed_rows() for r in batch], np.float64)
    norm = counting["states"].obs_norm
    assert int(norm.count[0]) == len(rows) == E + T * E + len(counting["finished"])
    np.testing.assert_allclose(norm.mean[0], rows.mean(axis=0), rtol=1e-5, atol=1e-6)
    var = np.asarray(norm.sumsq[0]) / (len(rows) - 1)
    np.testing.assert_allclose(var, rows.var(axis=0, ddof=1), rtol=1e-4, atol=1e-6)


def test_truncations_bootstrap_from_the_final_observations_value(counting):
    """At a truncation, next_value = V(final observation), normalised with the statistics
    right after the final observations were pushed; at the cut, V(last observation)."""
    rollout, states = counting["rollout"], counting["states"]
    state = unstack(states, 0)
    clip = CONFIG.obs_clip
    batches = _pushed_rows()
    seen = list(batches[0])
    checked = 0
    for t in range(T):
        finals, nexts = batches[1 + 2 * t], batches[2 + 2 * t]
        seen += finals
        stats = np.array(seen)
        mean, std = stats.mean(axis=0), np.maximum(stats.std(axis=0, ddof=1), 1e-2)
        ended = [i for i in range(E) if rollout.terminated[0, t, i] or rollout.truncated[0, t, i]]
        for final, i in zip(finals, ended, strict=True):
            if rollout.terminated[0, t, i]:
                continue
            obs_n = np.clip((final - mean) / std, -clip, clip).astype(np.float32)
            v_r, v_c = P.values(state, jnp.asarray(obs_n[None]))
            np.testing.assert_allclose(rollout.next_value_r[0, t, i], v_r[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(rollout.next_value_c[0, t, i], v_c[0], rtol=1e-4, atol=1e-5)
            if t + 1 < T:  # not the value of the reset observation that follows
                assert abs(rollout.next_value_r[0, t, i] - rollout.value_r[0, t + 1, i]) > 1e-4
            checked += 1
        seen += nexts
    assert checked >= 1
    # the cut: the value of the observation after the last step, as the collector keeps it
    v_last, _ = P.values(state, jnp.asarray(counting["collector"].state.obs_n[0]))
    for i in range(E):
        if not rollout.truncated[0, -1, i]:
            np.testing.assert_allclose(rollout.next_value_r[0, -1, i], v_last[i], rtol=1e-5)
    # elsewhere: the next step's value
    inner = ~(rollout.truncated[0, :-1] | rollout.terminated[0, :-1])
    np.testing.assert_array_equal(
        rollout.next_value_r[0, :-1][inner], rollout.value_r[0, 1:][inner]
    )


def test_env_step_rate_counts_every_env_step():
    rate = env_step_rate(lambda: TimeLimit(_Counting(), LIMIT), [1, 2], E, SHAPE, steps=50)
    assert rate["env_steps"] == 2 * E * 50
    assert rate["env_steps_per_s"] == pytest.approx(rate["env_steps"] / rate["seconds"])


def test_seed_alone_equals_among_others_when_episodes_end_at_different_steps(counting):
    """Seeds 11 and 12 of the counting env: their episodes end at different steps, so the
    pair's program pushes final observations for one seed while the other has none (and
    seed 12 alone takes the program without final observations there)."""
    make = lambda: TimeLimit(_Counting(), LIMIT)  # noqa: E731
    out = {}
    for name, seeds in (("pair", [11, 12]), ("alone", [12])):
        collector = VectorCollector(
            make, seeds, E, T, SHAPE, PROGRAMS, host_acting=counting["host_acting"]
        )
        states = collector.start(_states(seeds, CONFIG, SHAPE))
        states, rollout, finished = collector.collect(states)
        out[name] = (states, rollout, finished)
    (s_pair, r_pair, f_pair), (s_alone, r_alone, f_alone) = out["pair"], out["alone"]
    ends = r_pair.terminated | r_pair.truncated  # [S, T, E]
    assert np.any(ends[0].any(axis=1) != ends[1].any(axis=1))  # a step where only one ended
    _assert_same(jax.tree.map(lambda x: x[1], r_pair), jax.tree.map(lambda x: x[0], r_alone))
    np.testing.assert_array_equal(f_pair[1], f_alone[0])
    _assert_same(unstack(s_pair, 1).obs_norm, unstack(s_alone, 0).obs_norm)


def test_host_acting_equals_the_compiled_programs_up_to_float32_rounding(runs):
    """PPO-Lag's `HostActor` (numpy) against the compiled `normalize_observation` and
    `rollout_act`: the same rollout of seeds 3 and 7, the same statistics after it, to
    float32 rounding (the two sum in different orders, so not bitwise)."""
    collector = _collector(SEEDS, host_acting=False)
    states = collector.start(_states(SEEDS))
    states, rollout, finished = collector.collect(states)
    host = runs["pair"]
    for name in rollout._fields:
        np.testing.assert_allclose(
            np.asarray(getattr(rollout, name), np.float64),
            np.asarray(getattr(host["r1"], name), np.float64),
            rtol=1e-5,
            atol=1e-5,
            err_msg=name,
        )
    for a, b in zip(finished, host["f1"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    compiled_norm, host_norm = states.obs_norm, host["before_update"].obs_norm
    np.testing.assert_array_equal(compiled_norm.count, host_norm.count)
    np.testing.assert_allclose(compiled_norm.mean, host_norm.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled_norm.sumsq, host_norm.sumsq, rtol=1e-5, atol=1e-6)
