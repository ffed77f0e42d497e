"""Training entirely on the device, for tasks written in JAX: today the two-mode bandit
(``algd_jax.envs.toy``), through the same algorithm interface as the host loop.

It drives a registered algorithm's `act` and `update` (U updates fused in one `lax.scan`,
`algd_jax.programs.fused`) on the bandit, with a replay of the policy's own actions::

    warm-up: `warmup_iterations x pulls` uniform actions on [-1, 1] fill the replay
    for each of T iterations (lax.scan):
        a ~ pi(. | s = 0)              `pulls` draws of the stochastic sampler
        replay <- (a, r(a), c(a))      every transition terminates: mask_r = mask_c = 0
        U fused updates on [U, B] rows drawn uniformly from the replay
        measure pi on `eval_samples` fresh draws: E[r], E[c], lane masses

and the whole loop is mapped over seeds (`programs.over_seeds`), so S seeds are one compiled
program. It is the update of `algd_jax.training`'s loop without the host-side env stepping,
logging and checkpoints, so that the learning test and the figure script run several seeds
of thousands of updates in seconds on a CPU. (`algd_jax.training` can run the same task,
registered as ``ToyTwoModeBandit``, one seed at a time.)

Why uniform warm-up actions: the reference acts with the untrained diffusion policy for its
initial steps; with the paper's sigma_max = 0.1 (see `bandit_agent_config`) that policy only
covers |a| < 0.3, and critics extrapolate arbitrarily over the rest of the box.

Every random draw comes from `jax.random.key(seed)` of its seed: the learner's own key
(`init`, hence initialisation and update noise) and, for the loop (warm-up actions, acting,
replay indices, measurement draws), the same key folded with `LOOP_STREAM`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms import Algorithm, get_algorithm
from algd_jax.algorithms.algd import ALGDConfig
from algd_jax.compile_options import tuned_jit
from algd_jax.envs import get_task
from algd_jax.envs.toy import DEFAULT_BANDIT, TwoModeBandit
from algd_jax.programs import SeedAxis, fused, over_seeds, stack
from algd_jax.types import Batch

#: Stream id folded into a seed's key for the loop's own draws, so that they never coincide
#: with the agent's key (`jax.random.key(seed)`, split by the algorithm's `init`).
LOOP_STREAM = 0x70C

#: Per-iteration traces returned by `train_bandit`, each `[S, T]` (seeds x iterations).
TRACE_KEYS = (
    "return",  # E_pi[r(a)] of the stochastic policy after the iteration's updates
    "cost",  # E_pi[c(a)], expected per-step cost (cost units)
    "violation",  # max(0, E_pi[c] - h), the paper's Figure 2 violation
    "fast_mass",  # P_pi(a > t): mass in the fast lane
    "safe_mass",  # P_pi(|a - a_L| < s / 2): mass near the safe-lane peak
    "edge_mass",  # P_pi(|a| > 0.95): mass at the tanh-saturated box edges
    "eval_action",  # the deterministic sampler's action (x = 0, no noise): the loop's eval
    "eval_return",  # r(eval_action)
    "eval_cost",  # c(eval_action)
    "multiplier",  # lambda after the iteration's updates
    "replay_cost",  # mean Qc risk of the replay actions the multiplier step saw
    "critic_loss",  # double-Q TD loss (mean over the iteration's U updates)
    "cost_critic_loss",  # cost-ensemble TD loss
    "score_target_norm",  # mean |phi*| of the Monte-Carlo score target
)


@dataclass(frozen=True)
class BanditRun:
    """Schedule of one bandit training run (all counts per seed)."""

    iterations: int = 400
    """T: acting iterations after the warm-up (each: `pulls` draws, then U updates)."""
    warmup_iterations: int = 16
    """Warm-up iterations of uniform actions on the box before the first update."""
    pulls: int = 16
    """Bandit draws per iteration (like parallel envs)."""
    updates_per_iteration: int = 4
    """U: agent updates per iteration (one fused `lax.scan`)."""
    batch_size: int = 64
    """B: replay rows per update."""
    replay_size: int = 16384
    """Replay capacity in draws. By default it holds the whole run, like the reference's
    1e6 buffer over its runs: a ring that forgets the early exploration lets the critics
    drift wherever the concentrated policy no longer acts. The price is the reference's
    own: the multiplier step sees the replay's average cost, which lags the policy's."""
    eval_samples: int = 128
    """Fresh policy draws per iteration to measure E_pi[r], E_pi[c] (measurement only)."""


def bandit_agent_config(
    agent: str = "algd", bandit: TwoModeBandit = DEFAULT_BANDIT, **overrides: Any
) -> ALGDConfig:
    """The agent used on the bandit: reference defaults (beta = 1, rho = 1, K = 5, N = 4,
    Adam lr 3e-4 for actor and multiplier, hybrid actor loss, kappa = 1) except

    * the paper's noise range sigma in [1e-4, 0.1] instead of the reference's [0.01, 1]:
      with sigma_max = 1 the first reverse step (dsig2 = 0.9) times score targets of
      magnitude ~30 throws the latent into tanh saturation and the Monte-Carlo proposals
      N(a_tau, 1) leave the box, where the critics extrapolate; every seed then ends at the
      edge a = +1 (cost 4, reward 0);
    * small networks (the task is 1-D): critics and score net 64 wide, M = 2 cost critics;
    * critic learning rates 1e-3, so that the short run is not critic-limited.

    `cost_budget` is the bandit's h; `overrides` replace any field.
    """
    values: dict[str, Any] = dict(
        agent=agent,
        cost_budget=bandit.budget,
        sigma_min=1e-4,
        sigma_max=0.1,
        critic_hidden=64,
        score_hidden=64,
        ensemble_size=2,
        critic_lr=1e-3,
        cost_critic_lr=1e-3,
    )
    values.update(overrides)
    return ALGDConfig(**values).validate()


def _act(algorithm: Algorithm, state: Any, key: jax.Array, count: int) -> jax.Array:
    """`count` stochastic actions `[count, 1]` for the bandit's single state s = [0]."""
    return algorithm.act(state, jnp.zeros((count, 1), jnp.float32), key, False)


def _measure(
    algorithm: Algorithm, state: Any, key: jax.Array, samples: int, bandit: TwoModeBandit
) -> dict[str, jax.Array]:
    """E_pi[r], E_pi[c] and lane masses of the policy from `samples` fresh draws (scalars)."""
    actions = _act(algorithm, state, key, samples)
    a = actions[:, 0]
    # the evaluation policy of the training loop: the deterministic sampler
    a_eval = algorithm.act(state, jnp.zeros((1, 1), jnp.float32), key, True)
    return {
        "eval_action": a_eval[0, 0],
        "eval_return": bandit.reward(a_eval, jnp)[0],
        "eval_cost": bandit.cost(a_eval, jnp)[0],
        "return": jnp.mean(bandit.reward(actions, jnp)),
        "cost": jnp.mean(bandit.cost(actions, jnp)),
        "fast_mass": jnp.mean(a > bandit.threshold),
        "safe_mass": jnp.mean(jnp.abs(a - bandit.safe_mode) < 0.5 * bandit.half_width),
        "edge_mass": jnp.mean(jnp.abs(a) > 0.95),
    }


def _run_one(
    algorithm: Algorithm, state: Any, key: jax.Array, run: BanditRun, bandit: TwoModeBandit
) -> tuple[Any, dict[str, jax.Array]]:
    """One seed's whole run: warm-up, then T iterations. Traces are `[T]` each."""
    cap, pulls = run.replay_size, run.pulls
    ring = {
        "action": jnp.zeros((cap, 1), jnp.float32),
        "reward": jnp.zeros((cap,), jnp.float32),
        "cost": jnp.zeros((cap,), jnp.float32),
    }

    def add(ring: dict[str, jax.Array], count: jax.Array, actions: jax.Array) -> dict[str, Any]:
        index = (count + jnp.arange(pulls)) % cap
        return {
            "action": ring["action"].at[index].set(actions),
            "reward": ring["reward"].at[index].set(bandit.reward(actions, jnp)),
            "cost": ring["cost"].at[index].set(bandit.cost(actions, jnp)),
        }

    def warm(carry: tuple[dict[str, jax.Array], jax.Array], step_key: jax.Array) -> Any:
        ring, count = carry
        actions = jax.random.uniform(step_key, (pulls, 1), jnp.float32, -1.0, 1.0)
        return (add(ring, count, actions), count + pulls), None

    key, warm_key = jax.random.split(key)
    (ring, count), _ = jax.lax.scan(
        warm, (ring, jnp.zeros((), jnp.int32)), jax.random.split(warm_key, run.warmup_iterations)
    )

    u, b = run.updates_per_iteration, run.batch_size
    zeros_obs = jnp.zeros((u, b, 1), jnp.float32)
    zeros_row = jnp.zeros((u, b), jnp.float32)

    many = fused(algorithm.update)

    def iterate(carry: tuple[Any, dict[str, jax.Array], jax.Array], step_key: jax.Array):
        state, ring, count = carry
        k_act, k_idx, k_eval = jax.random.split(step_key, 3)
        ring = add(ring, count, _act(algorithm, state, k_act, pulls))
        count = count + pulls
        index = jax.random.randint(k_idx, (u, b), 0, jnp.minimum(count, cap))
        batch = Batch(
            obs=zeros_obs,
            action=ring["action"][index],
            reward=ring["reward"][index],
            cost=ring["cost"][index],
            next_obs=zeros_obs,
            # one-step episodes: every transition terminates, nothing is bootstrapped, so
            # the critics regress Q = r(a) and Qc = c(a)
            mask_r=zeros_row,
            mask_c=zeros_row,
        )
        state, metrics = many(state, batch)
        trace = _measure(algorithm, state, k_eval, run.eval_samples, bandit)
        trace["violation"] = jnp.maximum(trace["cost"] - bandit.budget, 0.0)
        # the multiplier after the last of the U updates
        trace["multiplier"] = metrics["multiplier"][-1]
        trace["replay_cost"] = jnp.mean(metrics["qc_risk"])
        for name in ("critic_loss", "cost_critic_loss", "score_target_norm"):
            trace[name] = jnp.mean(metrics[name])
        return (state, ring, count), trace

    (state, _, _), traces = jax.lax.scan(
        iterate, (state, ring, count), jax.random.split(key, run.iterations)
    )
    return state, traces


def train_bandit(
    config: Any,
    seeds: list[int],
    run: BanditRun = BanditRun(),
    bandit: TwoModeBandit = DEFAULT_BANDIT,
    algo: str | None = None,
    seed_axis: SeedAxis = "vmap",
) -> tuple[Any, dict[str, np.ndarray]]:
    """Train one learner per seed on the bandit, all seeds in one compiled program.

    `algo` names the registered algorithm (default: the one `config.agent` names); it must
    report the metrics `multiplier`, `qc_risk`, `critic_loss`, `cost_critic_loss` and
    `score_target_norm`. Returns the stacked final states (leading axis S = len(seeds)) and
    the traces of `TRACE_KEYS`, each a numpy array `[S, T]` (seed, iteration).
    """
    if run.warmup_iterations * run.pulls < run.batch_size:
        raise ValueError("the warm-up must put at least one batch of draws in the replay")
    algorithm = get_algorithm(algo if algo is not None else config.agent)
    spec = get_task("ToyTwoModeBandit")
    states = stack([algorithm.init(config, spec, jax.random.key(s)) for s in seeds])
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), LOOP_STREAM) for s in seeds])
    one = lambda st, k: _run_one(algorithm, st, k, run, bandit)  # noqa: E731
    states, traces = tuned_jit(over_seeds(one, seed_axis, 2))(states, keys)
    return states, {k: np.asarray(v) for k, v in traces.items()}


def policy_stats(
    states: Any,
    seeds: list[int],
    samples: int = 8192,
    bandit: TwoModeBandit = DEFAULT_BANDIT,
    algo: str = "algd",
) -> dict[str, np.ndarray]:
    """E_pi[r], E_pi[c] and lane masses of each seed's stochastic policy, `[S]` each, from
    `samples` draws (key: `jax.random.key(seed)` folded with `LOOP_STREAM + 1`)."""
    algorithm = get_algorithm(algo)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), LOOP_STREAM + 1) for s in seeds])
    measure = lambda st, k: _measure(algorithm, st, k, samples, bandit)  # noqa: E731
    stats = tuned_jit(jax.vmap(measure))(states, keys)
    return {k: np.asarray(v) for k, v in stats.items()}
