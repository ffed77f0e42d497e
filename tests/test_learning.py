"""Learning correctness: ALGD trained on a task with a known answer reaches it (issue 6, part 1).

The task is the two-mode bandit ``ToyTwoModeBandit`` (``algd_jax/envs/toy.py``): a safe lane
(peak reward R_L = 10 at a_L = -0.5, no cost) and a fast lane (peak R_R = 12 at +0.5, cost
C = 4 per step), budget h = 0.4 on the expected per-step cost. Known answers, closed form:

* unconstrained optimum: the fast lane, return 12, cost 4 > h;
* constrained optimum over all policies: V* = R_L + (h / C)(R_R - R_L) = 10.2, the mixture
  with 10 % of the mass on a_R; best single action a_L = -0.5 with return R_L = 10;
* ALGD's own fixed point, the constrained Boltzmann policy exp(-L_A / beta) at beta = 1:
  multiplier 0, return 9.52, cost 0.04 (`TwoModeBandit.boltzmann_optimum`).

The learning test trains ALGD from three seeds with the fused loop of
``algd_jax.training.on_device`` (the agent's own `_update_many`, vmapped over seeds, with a
replay of the policy's own actions; the configuration is `bandit_agent_config`: reference
defaults except the paper's sigma range, small networks and faster critics) and checks the
last quarter of training. Summaries over the last quarter rather than the last iteration,
because ALGD's policy here has brief excursions away from the safe peak (a few tens of
iterations, rarer as training goes on; reported in the README's stability notes); the
mean-cost check still counts every excursion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from algd_jax.envs import get_task, make_env
from algd_jax.envs.toy import DEFAULT_BANDIT, TASK_NAME, TwoModeBandit
from algd_jax.training.on_device import BanditRun, bandit_agent_config, train_bandit

SEEDS = [0, 1, 2]
RUN = BanditRun(iterations=800)  # 800 x U=4 = 3200 updates per seed

# Thresholds on the last quarter (iterations 600..799) of each seed's run, and why:
COST_TOLERANCE = 0.0
"""Mean expected cost E_pi[c] over the last quarter <= h + 0: the budget itself (observed
0.000 on these seeds, <= 0.015 on seeds 3..5, against h = 0.4; any lane split that earns
more than R_L costs more than h)."""
RETURN_TOLERANCE = 0.2
"""Median E_pi[r] within 20 % of V* = 10.2, i.e. >= 8.16 (observed 9.73..9.76 on these
seeds, 8.67..9.76 on seeds 3..5). The slack covers the 0.2 that a single-mode policy cannot
earn (V* is a mixture), the Boltzmann entropy (~beta / 2 per mode: ALGD's exact fixed point
is 9.52) and the residual chain noise; with the cost check it still excludes every policy
that earns by entering the fast lane and the initial/threshold-hedging policies (~4)."""
EVAL_ACTION_TOLERANCE = 0.05
"""Median deterministic-sampler action within 0.05 of a_L = -0.5 (observed -0.509..-0.519 on
seeds 0..5): the evaluation policy (the training loop's deterministic sampler) sits on the
best single feasible action, with return >= 10 (1 - 0.05^2 / 0.5^2) = 9.9 and cost 0."""
MULTIPLIER_VARIANCE = 2e-3
"""Variance of lambda over the last quarter (observed <= 6e-4; LGD's is 0.015..0.018 over the
same window). Adam moves log(lambda) by at most ~3e-4 per update, so this bounds drift and
oscillation; it does not mean lambda has reached ALGD's ideal 0: it peaks near 0.95 while
the replay's average cost (early violations included) is above h, then decays slowly."""


@pytest.fixture(scope="module")
def algd_run() -> dict[str, np.ndarray]:
    _, traces = train_bandit(bandit_agent_config("algd"), SEEDS, RUN)
    return traces


@pytest.fixture(scope="module")
def algd_bf16_run() -> dict[str, np.ndarray]:
    _, traces = train_bandit(bandit_agent_config("algd", precision="bf16"), SEEDS, RUN)
    return traces


def _last_quarter(trace: np.ndarray) -> np.ndarray:
    return trace[:, -(trace.shape[1] // 4) :]


def test_known_optimum_in_closed_form_matches_a_fine_grid() -> None:
    bandit = DEFAULT_BANDIT
    opt = bandit.constrained_optimum()
    assert opt.value == pytest.approx(10.2) and opt.multiplier == pytest.approx(0.5)
    assert opt.fast_lane_mass == pytest.approx(0.1) and opt.cost == pytest.approx(bandit.budget)
    grid = bandit.envelope_optimum()
    assert grid.value == pytest.approx(opt.value, abs=1e-9)
    assert grid.multiplier == pytest.approx(opt.multiplier, abs=1e-6)
    # the unconstrained optimum violates the budget; the best single action is the safe peak
    assert bandit.unconstrained_optimum().cost > bandit.budget
    assert bandit.reward(np.array([[bandit.safe_mode]]))[0] == pytest.approx(10.0)
    assert bandit.cost(np.array([[bandit.safe_mode]]))[0] == 0.0
    assert bandit.cost(np.array([[bandit.fast_mode]]))[0] == pytest.approx(4.0)
    # the augmented Lagrangian's Boltzmann policy is feasible at lambda = 0; the standard
    # Lagrangian's needs lambda ~ 1 (both at beta = 1, the agent's temperature)
    algd = bandit.boltzmann_optimum(1.0, "augmented", rho=1.0)
    lgd = bandit.boltzmann_optimum(1.0, "lagrangian")
    assert algd.multiplier == 0.0 and algd.cost <= bandit.budget
    assert lgd.multiplier > 0.9 and lgd.cost == pytest.approx(bandit.budget, abs=1e-6)
    assert 9.0 < algd.value < opt.value and 9.0 < lgd.value < opt.value


def test_other_budgets_move_the_optimum_as_the_closed_form_says() -> None:
    for budget in (0.0, 1.0, 3.0):
        bandit = TwoModeBandit(budget=budget)
        expected = 10.0 + budget / 4.0 * 2.0
        assert bandit.constrained_optimum().value == pytest.approx(expected)
        assert bandit.envelope_optimum().value == pytest.approx(expected, abs=1e-9)


def test_task_is_registered_and_steps_as_a_one_step_episode() -> None:
    spec = get_task(TASK_NAME)
    assert spec.family == "toy" and spec.max_episode_steps == 1
    assert spec.cost_budget == DEFAULT_BANDIT.budget
    env = make_env(TASK_NAME, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (1,) and float(obs[0]) == 0.0
    _, reward, terminated, _, info = env.step(np.array([DEFAULT_BANDIT.fast_mode], np.float32))
    assert terminated and reward == pytest.approx(12.0) and info["cost"] == pytest.approx(4.0)


def test_algd_learns_the_constrained_optimum(algd_run: dict[str, np.ndarray]) -> None:
    _assert_learned_the_constrained_optimum(algd_run)


@pytest.mark.slow
def test_algd_bf16_learns_the_constrained_optimum(algd_bf16_run: dict[str, np.ndarray]) -> None:
    """The same known answer, and the same assertions, with bfloat16 matrix products."""
    _assert_learned_the_constrained_optimum(algd_bf16_run)


def _assert_learned_the_constrained_optimum(algd_run: dict[str, np.ndarray]) -> None:
    bandit = DEFAULT_BANDIT
    v_star = bandit.constrained_optimum().value
    for name, trace in algd_run.items():
        assert np.all(np.isfinite(trace)), f"{name} is not finite"

    cost = _last_quarter(algd_run["cost"]).mean(axis=1)
    ret = np.median(_last_quarter(algd_run["return"]), axis=1)
    action = np.median(_last_quarter(algd_run["eval_action"]), axis=1)
    lam = _last_quarter(algd_run["multiplier"])
    report = (
        f"per seed {SEEDS}: last-quarter mean cost {np.round(cost, 4)} (h={bandit.budget}), "
        f"median return {np.round(ret, 3)} (V*={v_star}), median eval action "
        f"{np.round(action, 3)} (a_L={bandit.safe_mode}), lambda mean "
        f"{np.round(lam.mean(1), 3)} var {lam.var(1)}"
    )
    assert np.all(cost <= bandit.budget + COST_TOLERANCE), report
    assert np.all(np.abs(ret - v_star) <= RETURN_TOLERANCE * v_star), report
    assert np.all(np.abs(action - bandit.safe_mode) <= EVAL_ACTION_TOLERANCE), report
    assert np.all(lam.var(axis=1) <= MULTIPLIER_VARIANCE), report
    # and it learned: the untrained policy straddles the threshold (cost ~2, return ~4)
    assert np.all(algd_run["cost"][:, 0] > 1.0) and np.all(algd_run["return"][:, 0] < 6.0)


#: SAC-family baselines on the bandit (`experiments.toy_figure.toy_config`: small networks,
#: M = 2, the bandit schedule above): the best feasible expected return of their
#: tanh-Gaussian policy is R_L = 10 (tests/test_baselines.py, TANH_GAUSSIAN_TOY_OPTIMUM),
#: below V* = 10.2. Observed on seeds 0-2 (2026-12-02, 2 shared vCPUs), last-quarter mean
#: cost / median return / eval action: CAL 0.14-0.16 / 7.64-7.74 / -0.62; SAC-Lag
#: 0.28-0.35 / 7.54-7.61 / -0.57; SAC-AugLag 0.13-0.14 / 7.91-7.95 / -0.60; RCRL 0.000 /
#: 9.55-9.56 / -0.505. The return stays below the optimum by what the entropy target (-1
#: nat) costs a Gaussian spread around the safe peak (RCRL's log-std may go down to -5 and
#: its actor is ELU). RCRL runs with the other baselines' learning rates (toy_config): with
#: its official ones (actor 2e-5, lambda(s) 6e-7, decaying linearly over the 3200 updates)
#: it stays where it starts, cost 1.78-1.80 (infeasible) and return 6.95-6.99 (observed on
#: the same seeds and day), so that setting cannot pass this test in this many updates.
BASELINE_RETURN_BOUND = 7.0
"""Median E_pi[r] over the last quarter >= 7.0 = 0.7 of the tanh-Gaussian optimum 10: above
every policy that hedges across the threshold (~4-7 at the start) and below what the
entropy target allows a Gaussian on the safe peak."""


@pytest.mark.slow  # about 2-3 min per algorithm on 2 cores
@pytest.mark.parametrize("algo", ["cal", "sac-lag", "sac-auglag", "rcrl"])
def test_baselines_learn_a_feasible_policy_on_the_toy(algo: str) -> None:
    from experiments.toy_figure import toy_config

    _, traces = train_bandit(toy_config(algo), SEEDS, RUN, algo=algo)
    bandit = DEFAULT_BANDIT
    cost = _last_quarter(traces["cost"]).mean(axis=1)
    ret = np.median(_last_quarter(traces["return"]), axis=1)
    report = f"{algo} seeds {SEEDS}: cost {np.round(cost, 3)}, return {np.round(ret, 3)}"
    assert np.all(np.isfinite(traces["return"])) and np.all(np.isfinite(traces["cost"])), report
    assert np.all(cost <= bandit.budget + COST_TOLERANCE), report
    assert np.all(ret >= BASELINE_RETURN_BOUND), report
    assert np.all(ret <= 10.0 + 1e-6), report  # no tanh-Gaussian does better (the optimum)


#: PPO-Lag on the bandit through the on-policy loop (`experiments.run` with
#: `experiments.toy_figure.PPO_TOY_FLAGS`: OmniSafe's defaults but for the rollout, 16 envs x
#: 128 steps, 30 rollouts). Its Gaussian clipped to the box has the same best feasible return as
#: a tanh-Gaussian, the safe peak R_L = 10 (tests/test_baselines.py). Observed on seed 0
#: (2026-12-02, 2 shared vCPUs): train cost 1.98 -> 0.00 within 40k env steps, return 5.2
#: -> 9.90, the multiplier up to 0.44 and then down, the deterministic evaluation at 10.00.


@pytest.mark.slow  # about 2 min on 2 cores
def test_ppo_lag_learns_a_feasible_policy_on_the_toy(tmp_path: Path) -> None:
    import csv

    from experiments.run import main
    from experiments.toy_figure import PPO_TOY_FLAGS

    assert main([*PPO_TOY_FLAGS, "--seeds", *map(str, SEEDS), "--run-dir", str(tmp_path)]) == 0
    bandit = DEFAULT_BANDIT
    for seed in SEEDS:
        with (tmp_path / f"seed{seed}" / "progress.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        last = rows[-len(rows) // 4 :]
        cost = np.mean([float(r["train/episode_cost"]) for r in last])
        ret = np.median([float(r["train/episode_return"]) for r in last])
        report = f"ppo-lag seed {seed}: cost {cost:.3f}, return {ret:.3f}"
        # the first rollouts straddle the threshold: infeasible, as the SAC family's start
        assert float(rows[0]["train/episode_cost"]) > 1.0, report
        assert cost <= bandit.budget + COST_TOLERANCE, report
        assert BASELINE_RETURN_BOUND <= ret <= 10.0 + 1e-6, report
        assert float(rows[-1]["eval/cost"]) <= bandit.budget, report
