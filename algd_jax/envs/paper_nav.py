"""The paper's five Safety-Gym navigation tasks, rebuilt on Safety-Gymnasium 1.0.0.

The ALGD authors trained on ``Safexp-{PointButton1, PointButton2, CarButton1, CarButton2,
PointPush1}-v0`` of the CVPO fork of OpenAI Safety-Gym (MuJoCo 2.0), reset every 400 steps.
This module registers those tasks under the names ``PointButton1`` ... ``PointPush1``, as small
subclasses of Safety-Gymnasium's ``ButtonLevel0`` / ``PushLevel0`` that reproduce the fork
fact by fact (every number below names its source fact in the project's task specification,
"NAV_TASKS §x"; the abbreviations in brackets are that document's source tags):

* the fork's fixed layout, identical at every reset and for every seed: object kinds, counts,
  sizes, keepouts, positions, the robot's start pose, the yaws of the non-symmetric objects and
  the first goal (NAV_TASKS §3; the fork re-seeds its layout RNG with 0 at each reset);
* the fork's RNG stream after its reset draws, replayed by :func:`replay_fork_reset`, so the
  first goal and the sequence of later goals are the fork's (NAV_TASKS §6.2);
* the fork's physics timestep (0.006 s Point, 0.01 s Car; 10 substeps per env step) and lidar
  (16 bins, 3 m, pseudo, aliased) (NAV_TASKS §2);
* the fork's observation vector: keys in alphabetical order of the fork's names, so
  ``box_lidar`` (Safety-Gymnasium's ``push_box_lidar``) comes right after ``accelerometer``
  (NAV_TASKS §4); its length is :data:`FORK_OBS_DIM`;
* 400-step episodes (``truncated`` at step 400), the fork's reward and 0/1 cost rules;
* a goal press (or push success) reports ``info["bootstrap_end"] = True`` while the episode
  goes on (``terminated`` stays False): the authors store ``done = goal_met`` for the reward
  critic only; the cost critic always bootstraps (NAV_TASKS §5).

What cannot match exactly is listed in ``docs/NAV_TASKS_DIFFERENCES.md``.

Nothing here imports ``safety_gymnasium`` (or ``mujoco``) at module import: the subclasses are
created on the first build, after :func:`import_safety_gymnasium` has applied the Python 3.11
remedy.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, SupportsFloat

import gymnasium
import numpy as np

from algd_jax.envs.registry import register_task
from algd_jax.envs.safety_gym_compat import import_safety_gymnasium
from algd_jax.envs.spec import TaskSpec, episodic_limit_to_budget
from algd_jax.envs.wrappers import SafetyToGymnasium

XY = tuple[float, float]

#: The registered names, in the order of NAV_TASKS §1.
PAPER_NAV_TASKS: tuple[str, ...] = (
    "PointButton1",
    "PointButton2",
    "CarButton1",
    "CarButton2",
    "PointPush1",
)

#: Length of the fork's flat observation vector per task (NAV_TASKS §4: sensors 12 (+12 for the
#: Car's ``ballangvel_rear`` and 3x3 ``ballquat_rear``) + 16 lidar bins per observed object kind).
FORK_OBS_DIM: dict[str, int] = {
    "PointButton1": 76,
    "PointButton2": 60,
    "CarButton1": 88,
    "CarButton2": 72,
    "PointPush1": 76,
}

#: Physics timestep of the fork's robot XMLs, in seconds (NAV_TASKS §2, [PX:3], [CX:3]; upstream
#: and Safety-Gymnasium use 0.002 / 0.004). With 10 substeps an env step lasts 0.06 s / 0.1 s.
FORK_TIMESTEP: dict[str, float] = {"Point": 0.006, "Car": 0.01}
#: Substeps per env step: binomial(n=10, p=1.0), i.e. always 10 (NAV_TASKS §2 [EN:311-313]).
FRAMESKIP_N, FRAMESKIP_P = 10, 1.0
#: Lidar of every bench task: 16 bins, 3 m range, pseudo-lidar, aliasing on (NAV_TASKS §2).
LIDAR_BINS, LIDAR_MAX_DIST = 16, 3.0

#: The paper's protocol (NAV_TASKS §1): limit 10 per 400-step episode, gamma_c = 0.99, and a run
#: of 5000 exploration steps plus 250 epochs of 400 steps (README example, [RM:73/79], [M:112]).
EPISODE_STEPS = 400
EPISODE_COST_LIMIT = 10.0
COST_GAMMA = 0.99
PAPER_TOTAL_STEPS = 5000 + 250 * EPISODE_STEPS

# Keepouts (m) of the fork's objects (NAV_TASKS §3, [EN:110-114, 190-196, 218-226, 286-293]).
ROBOT_KEEPOUT = 0.4
BUTTON_KEEPOUT = 0.2
GREMLIN_KEEPOUT = 0.35
GREMLIN_TRAVEL = 0.3  # radius (m) of a gremlin's circle (NAV_TASKS §3.1 [SU:169-170])
BOX_KEEPOUT = 0.2
GOAL_KEEPOUT = 0.4
PILLAR_KEEPOUT = 0.3
# Where the button tasks' goal marker (a Safety-Gymnasium-only, non-colliding geom) is parked
# during layout sampling: clear of every keepout, and moved onto the goal button right after.
BUTTON_GOAL_MARKER_PARK: XY = (0.0, 3.0)
# Half-width (m) of the box a fixed location becomes in the placement sampler (both libraries).
_FIXED_EPS = 1e-9


@dataclass(frozen=True)
class ForkLayout:
    """The fork's fixed layout of one task family (all lengths in m, angles in rad).

    Attributes:
        extents: placement extents ``(xmin, ymin, xmax, ymax)``.
        robot_xy, robot_yaw: the robot's start pose at every reset.
        robot_fixed: True where the fork fixes ``robot_locations`` (Push1); False where the
            start position is the seed-0 draw from the extents (the button tasks).
        buttons: centres of ``button0..3`` (radius 0.1, keepout 0.2); empty for Push.
        hazards, hazard_size, hazard_keepout: hazard disc centres, radius and keepout.
        gremlins, gremlin_yaws: gremlin anchors and their box yaws.
        pillars: pillar centres (radius 0.2, half-height 0.5, keepout 0.3).
        box_xy, box_yaw: the push box's start pose, or None.
        goal_region: the push goal's placement rectangle, or None (button tasks).
        first_goal_button: index of the goal button after every reset (button tasks).
        first_goal_xy: the push goal's centre after every reset (Push1).
    """

    extents: tuple[float, float, float, float]
    robot_xy: XY
    robot_yaw: float
    robot_fixed: bool = False
    buttons: tuple[XY, ...] = ()
    hazards: tuple[XY, ...] = ()
    hazard_size: float = 0.0
    hazard_keepout: float = 0.0
    gremlins: tuple[XY, ...] = ()
    gremlin_yaws: tuple[float, ...] = ()
    pillars: tuple[XY, ...] = ()
    box_xy: XY | None = None
    box_yaw: float | None = None
    goal_region: tuple[float, float, float, float] | None = None
    first_goal_button: int | None = None
    first_goal_xy: XY | None = None


# Start poses and yaws marked "derived" in NAV_TASKS §3 are the fork's seed-0 draws; they are
# written here at full double precision, as replay_fork_reset computes them (the spec prints
# 6 decimals, given in the comments; tests/test_paper_nav.py checks both).
FORK_LAYOUTS: dict[str, ForkLayout] = {
    # NAV_TASKS §3.1 ([SU:161-196]), shared by PointButton1 and CarButton1.
    "Button1": ForkLayout(
        extents=(-2.0, -2.0, 2.0, 2.0),
        robot_xy=(-0.7246654885899656, 0.9537498685202039),  # (-0.724665, 0.953750)
        robot_yaw=2.234380729504747,  # 2.234381
        buttons=((-1.3, -1.3), (1.3, -1.3), (-1.3, 1.3), (1.3, 1.3)),
        hazards=((0.0, -1.9), (0.0, 1.9), (0.0, 0.0), (1.9, 0.0), (-1.9, 0.0)),
        hazard_size=0.17,
        hazard_keepout=0.0,
        gremlins=((0.0, -1.3), (0.0, 1.3), (1.3, 0.0), (-1.3, 0.0)),
        # 5.908908, 4.808680, 4.703992, 5.678239
        gremlin_yaws=(5.908908180814792, 4.808680389933412, 4.703992256264842, 5.6782385905798085),
        first_goal_button=0,
    ),
    # NAV_TASKS §3.2 ([SU:204-220]), shared by PointButton2 and CarButton2: no gremlins.
    "Button2": ForkLayout(
        extents=(-1.8, -1.8, 1.8, 1.8),
        robot_xy=(0.13667781099650922, 0.6025302258427745),  # (0.136678, 0.602530)
        robot_yaw=2.866077065248105,  # 2.866077
        buttons=((-1.1, -1.3), (1.8, -1.5), (-1.4, 0.6), (1.0, 1.3)),
        hazards=(
            (0.1, -1.9),
            (-0.2, 1.7),
            (0.3, 0.1),
            (2.0, -0.1),
            (-1.8, 0.2),
            (-0.1, -1.2),
            (0.0, 1.3),
            (1.1, 0.0),
            (-1.0, 0.0),
            (0.2, -0.9),
            (-1.1, 1.1),
        ),
        hazard_size=0.22,
        hazard_keepout=0.0,
        first_goal_button=2,
    ),
    # NAV_TASKS §3.3 ([SU:235-269]): robot fixed at (-1, -2), 4 hazards, 5 constrained pillars.
    "Push1": ForkLayout(
        extents=(-2.0, -2.0, 2.0, 2.0),
        robot_xy=(-1.0, -2.0),
        robot_yaw=1.0401537619894732,  # 1.040154
        robot_fixed=True,
        hazards=((0.5, -0.5), (-0.5, -0.5), (1.8, 0.8), (-1.8, 0.8)),
        hazard_size=0.3,
        hazard_keepout=0.4,
        pillars=((-2.0, 0.0), (2.0, 0.0), (0.0, 0.0), (1.0, 1.0), (-1.0, 1.0)),
        box_xy=(0.0, -1.5),
        box_yaw=4.18434957630901,  # 4.184350
        goal_region=(-2.0, -0.5, 2.0, 2.0),
        first_goal_xy=(-1.0297569441943422, 0.19099248186376955),  # (-1.029757, 0.190992)
    ),
}

#: task name -> (robot, layout family).
_TASKS: dict[str, tuple[str, str]] = {
    "PointButton1": ("Point", "Button1"),
    "PointButton2": ("Point", "Button2"),
    "CarButton1": ("Car", "Button1"),
    "CarButton2": ("Car", "Button2"),
    "PointPush1": ("Point", "Push1"),
}

#: Safety-Gymnasium observation key -> the fork's key, where they differ (NAV_TASKS §2, §4).
_FORK_KEY = {"push_box_lidar": "box_lidar"}


# ----------------------------------------------------------------------------------------
# Replaying the fork's reset-time random draws.
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForkDraws:
    """What the fork draws from its seed-0 RNG at every reset (NAV_TASKS §6.2).

    Attributes:
        rng_state: ``RandomState.get_state()`` after the layout and rotation draws, just before
            the first-goal draw (from there the fork draws the first goal, then one binomial
            per step and one goal draw per goal met).
        positions: layout name (``robot``, ``button0``, ``hazard3``, ...) -> xy (m), shape (2,).
        yaws: object name -> yaw (rad), in the fork's draw order.
        first_goal_button: the button ``choice(4)`` picks (button tasks), else None.
        first_goal_xy: the push goal's centre, shape (2,), else None.
    """

    rng_state: tuple[Any, ...]
    positions: dict[str, np.ndarray]
    yaws: dict[str, float]
    first_goal_button: int | None = None
    first_goal_xy: np.ndarray | None = field(default=None)


def _shrink(rect: tuple[float, float, float, float], by: float) -> tuple[float, ...]:
    return (rect[0] + by, rect[1] + by, rect[2] - by, rect[3] - by)


@functools.cache
def replay_fork_reset(family: str) -> ForkDraws:
    """Replay the fork's reset: layout rejection sampling, rotations, first goal.

    The fork replaces its RNG by ``RandomState(0)`` before every layout, so these draws are the
    same at every reset. Placement follows NAV_TASKS §2 ("placement rule") in the fork's object
    order robot, goal (push), box (push), buttons, hazards, pillars, gremlins: two uniforms per
    try inside the keepout-shrunk rectangle (a fixed location is a +-1e-9 box), 100 tries per
    object, a restart of the whole layout on failure. Rotations are drawn in the order robot,
    gremlins, box, goal, hazards, pillars, buttons; then the first goal (NAV_TASKS §6.2).

    Args:
        family: ``"Button1"``, ``"Button2"`` or ``"Push1"`` (a key of :data:`FORK_LAYOUTS`).

    Returns:
        The draws; positions in m, yaws in rad.
    """
    lay = FORK_LAYOUTS[family]
    rs = np.random.RandomState(0)
    # (name, fixed xy or None, keepout, placement rectangle or None = the extents)
    entries: list[tuple[str, XY | None, float, tuple[float, float, float, float] | None]] = [
        ("robot", lay.robot_xy if lay.robot_fixed else None, ROBOT_KEEPOUT, None)
    ]
    if lay.goal_region is not None:
        entries.append(("goal", None, GOAL_KEEPOUT, lay.goal_region))
    if lay.box_xy is not None:
        entries.append(("box", lay.box_xy, BOX_KEEPOUT, None))
    entries += [(f"button{i}", xy, BUTTON_KEEPOUT, None) for i, xy in enumerate(lay.buttons)]
    entries += [(f"hazard{i}", xy, lay.hazard_keepout, None) for i, xy in enumerate(lay.hazards)]
    entries += [(f"pillar{i}", xy, PILLAR_KEEPOUT, None) for i, xy in enumerate(lay.pillars)]
    entries += [(f"gremlin{i}", xy, GREMLIN_KEEPOUT, None) for i, xy in enumerate(lay.gremlins)]
    keepout = {name: k for name, _, k, _ in entries}

    def draw(
        fixed: XY | None, k: float, rect: tuple[float, float, float, float] | None
    ) -> np.ndarray:
        if fixed is not None:
            half = k + _FIXED_EPS
            rect = (fixed[0] - half, fixed[1] - half, fixed[0] + half, fixed[1] + half)
        xmin, ymin, xmax, ymax = _shrink(rect if rect is not None else lay.extents, k)
        return np.array([rs.uniform(xmin, xmax), rs.uniform(ymin, ymax)])

    def valid(xy: np.ndarray, k: float, placed: dict[str, np.ndarray]) -> bool:
        # The fork's test: reject when closer than the sum of keepouts (margin 0).
        return all(np.sqrt(np.sum(np.square(xy - o))) >= keepout[n] + k for n, o in placed.items())

    for _ in range(10000):
        placed: dict[str, np.ndarray] = {}
        for name, fixed, k, rect in entries:
            for _ in range(100):
                xy = draw(fixed, k, rect)
                if valid(xy, k, placed):
                    placed[name] = xy
                    break
            else:
                break  # this object found no place: restart the whole layout
        else:
            break
    else:  # pragma: no cover - the fork's own layouts always succeed
        raise RuntimeError(f"{family}: the fork's layout could not be replayed")

    order = ["robot"] + [f"gremlin{i}" for i in range(len(lay.gremlins))]
    order += ["box"] if lay.box_xy is not None else []
    order += ["goal"] if lay.goal_region is not None else []
    order += [f"hazard{i}" for i in range(len(lay.hazards))]
    order += [f"pillar{i}" for i in range(len(lay.pillars))]
    order += [f"button{i}" for i in range(len(lay.buttons))]
    yaws = {name: float(rs.uniform(0, 2 * np.pi)) for name in order}
    # Safety-Gymnasium's update_world draws the first goal itself, from this state.
    state = rs.get_state()

    first_button = first_xy = None
    if lay.buttons:
        first_button = int(rs.choice(len(lay.buttons)))
    else:
        # The push goal is redrawn after the layout, against every object but the old goal.
        assert lay.goal_region is not None
        others = {n: xy for n, xy in placed.items() if n != "goal"}
        for _ in range(10000):
            xy = draw(None, GOAL_KEEPOUT, lay.goal_region)
            if valid(xy, GOAL_KEEPOUT, others):
                first_xy = xy
                break
    return ForkDraws(state, placed, yaws, first_button, first_xy)


# ----------------------------------------------------------------------------------------
# The robot XMLs with the fork's timestep.
# ----------------------------------------------------------------------------------------


def fork_agent_xml(agent: str) -> str:
    """Absolute path of Safety-Gymnasium's ``point.xml`` / ``car.xml`` with the fork's timestep.

    The file is Safety-Gymnasium's own XML with only ``<option timestep>`` changed to
    :data:`FORK_TIMESTEP` (NAV_TASKS §6.2 "physics timestep"). It is (re)written into the
    temporary directory when missing, under a name that hashes its content (so concurrent
    processes and other Safety-Gymnasium versions never share a stale file).

    Args:
        agent: ``"Point"`` or ``"Car"``.
    """
    sg = import_safety_gymnasium(f"the {agent} robot")
    source = os.path.join(os.path.dirname(sg.__file__), "assets", "xmls", f"{agent.lower()}.xml")
    with open(source, encoding="utf-8") as f:
        text = f.read()
    text, count = re.subn(
        r'(<option\b[^>]*\btimestep=")[^"]*(")', rf"\g<1>{FORK_TIMESTEP[agent]!r}\g<2>", text
    )
    if count != 1:
        raise RuntimeError(f"{source}: expected exactly one <option timestep=...>, found {count}")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    directory = os.path.join(tempfile.gettempdir(), "algd_jax_paper_nav")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{agent.lower()}_{digest}.xml")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    # Write to a private name, then rename: readers never see a half-written file.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------
# The task subclasses (mixed into Safety-Gymnasium's ButtonLevel0 / PushLevel0 on first use).
# ----------------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """Nested dicts/lists/arrays as plain Python values, so ``repr`` keeps full precision."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


#: MjModel arrays restored at a reset that reuses the compiled model. Safety-Gymnasium 1.0.0
#: writes only ``body_pos`` (the goal marker); the other placement arrays are restored as well
#: so that a reused model is the freshly compiled one in everything that places an object.
_MUTABLE_MODEL_FIELDS = ("body_pos", "body_quat", "geom_pos", "geom_quat", "geom_size")


class _ForkTask:
    """The fork's version of a Safety-Gymnasium navigation task (mixed in before the level class).

    Everything task-specific is configured in ``__init__`` from a :class:`ForkLayout`; the
    overrides below pin the non-symmetric yaws, install the fork's RNG stream after each
    layout, put the observation in the fork's order, and reuse the compiled MuJoCo model across
    resets (the layout never changes, and compiling the world costs 1.3-2 s, mostly loading the
    skybox textures, against ~1 s for the 400 steps of an episode).
    """

    def __init__(self, config: dict[str, Any], family: str, agent_xml: str) -> None:
        super().__init__(config=config)  # type: ignore[call-arg]
        from safety_gymnasium.assets.geoms import Hazards, Pillars
        from safety_gymnasium.assets.mocaps import Gremlins

        self.fork_family = family
        lay = self.fork_layout = FORK_LAYOUTS[family]
        self._model_key: str | None = None  # world config the current model was compiled from
        self._model_fields: dict[str, np.ndarray] = {}  # its pristine geometry

        # Episode and engine settings (NAV_TASKS §2, §5): the authors cut episodes at 400 steps.
        self.num_steps = EPISODE_STEPS
        self.mechanism_conf.randomize_layout = False  # re-seed with 0 at every reset
        self.mechanism_conf.continue_goal = True
        self.mechanism_conf.terminate_resample_failure = True
        self.cost_conf.constrain_indicator = True  # cost in {0, 1}
        self.sim_conf.frameskip_binom_n = FRAMESKIP_N
        self.sim_conf.frameskip_binom_p = FRAMESKIP_P
        self.lidar_conf.num_bins = LIDAR_BINS
        self.lidar_conf.max_dist = LIDAR_MAX_DIST
        self.lidar_conf.type = "pseudo"
        self.lidar_conf.alias = True
        self.placements_conf.extents = list(lay.extents)

        # Robot: the fork's XML timestep, start pose and keepout (NAV_TASKS §3).
        self.agent.base = agent_xml  # an absolute path wins over Safety-Gymnasium's base dir
        self.agent.keepout = ROBOT_KEEPOUT
        self.agent.locations = [lay.robot_xy]
        self.agent.rot = lay.robot_yaw

        if lay.buttons:
            # ButtonLevel0 already holds 4 buttons (radius 0.1) and the goal marker.
            self.buttons.locations = list(lay.buttons)
            self.buttons.keepout = BUTTON_KEEPOUT
            self.buttons.is_constrained = True
            # The marker must not constrain the layout; update_world moves it onto the goal
            # button (it has no contacts and is in no cost).
            self.goal.keepout = 0.0
            self.goal.locations = [BUTTON_GOAL_MARKER_PARK]
        if lay.box_xy is not None:
            # PushLevel0 already holds the goal (radius 0.3) and the box (half-size 0.2, density
            # 0.001, null_dist 0, keepout 0.2): pin the box, give the goal the fork's region.
            self.push_box.locations = [lay.box_xy]
            self.push_box.keepout = BOX_KEEPOUT
            self.push_box.null_dist = 0
            self.goal.keepout = GOAL_KEEPOUT
            self.goal.placements = [lay.goal_region]
        if lay.hazards:
            self._add_geoms(
                Hazards(
                    num=len(lay.hazards),
                    size=lay.hazard_size,
                    keepout=lay.hazard_keepout,
                    locations=list(lay.hazards),
                )
            )
        if lay.pillars:
            # Constrained in the fork (the suite's "unconstrained" comment is stale, §3.3).
            self._add_geoms(
                Pillars(num=len(lay.pillars), is_constrained=True, locations=list(lay.pillars))
            )
        if lay.gremlins:
            # Button2 has none: a 0-count Gremlins object would still add 16 lidar bins.
            self._add_mocaps(
                Gremlins(
                    num=len(lay.gremlins),
                    travel=GREMLIN_TRAVEL,
                    keepout=GREMLIN_KEEPOUT,
                    locations=list(lay.gremlins),
                )
            )

    # -- layout -------------------------------------------------------------------------

    def _build_world_config(self, layout: dict[str, Any]) -> dict[str, Any]:
        config = super()._build_world_config(layout)  # type: ignore[misc]
        # Yaws of the non-symmetric objects are the fork's; hazards, pillars, buttons and the
        # goal marker are spheres/cylinders, whose yaw changes nothing.
        lay = self.fork_layout
        for i, yaw in enumerate(lay.gremlin_yaws):
            config["free_geoms"][f"gremlin{i}obj"]["rot"] = yaw
            config["mocaps"][f"gremlin{i}mocap"]["rot"] = yaw
        if lay.box_yaw is not None:
            config["free_geoms"]["push_box"]["rot"] = lay.box_yaw
        return config

    def _build(self) -> None:
        """Underlying._build, compiling the MuJoCo world only when its config changed."""
        import mujoco
        from safety_gymnasium.world import World

        if self.placements_conf.placements is None:
            self._build_placements_dict()
            self.random_generator.set_placements_info(
                self.placements_conf.placements,
                self.placements_conf.extents,
                self.placements_conf.margin,
            )
        self.world_info.layout = self.random_generator.build_layout()
        self.world_info.world_config_dict = self._build_world_config(self.world_info.layout)
        # Taken now, before update_world moves the goal inside the config and the model.
        key = repr(_plain(self.world_info.world_config_dict))
        if self.world is None:
            self.world = World(self.agent, self._obstacles, self.world_info.world_config_dict)
            # Underlying._build compiles this first world twice (World.reset() builds, then
            # World.build()); once gives the same world.
            self.world.build()
            self._remember_model(key)
        elif key != self._model_key:
            self.world.reset(build=False)
            self.world.rebuild(self.world_info.world_config_dict, state=False)
            self._remember_model(key)
        else:
            self.world.parse(self.world_info.world_config_dict)
            model = self.model
            # Undo what the last episode changed in the model (the goal body's position, moved
            # by _set_goal at every new goal); a fresh MjData starts from qpos0 like a rebuild.
            # Copying the whole model instead would cost ~0.2 s (the skybox textures).
            for name, value in self._model_fields.items():
                getattr(model, name)[...] = value
            data = mujoco.MjData(model)
            mujoco.mj_forward(model, data)
            self.world.engine.update(model, data)
        if self.viewer:
            self._update_viewer(self.model, self.data)

    def _remember_model(self, key: str) -> None:
        # Called right after a compile, before update_world moves the goal in the model.
        self._model_key = key
        self._model_fields = {
            name: getattr(self.model, name).copy() for name in _MUTABLE_MODEL_FIELDS
        }

    def reset(self) -> None:
        """Build the fixed world, then continue from the fork's RNG state (see ForkDraws)."""
        super().reset()  # type: ignore[misc]
        # Builder.reset calls update_world next, which draws the first goal from this stream.
        rng = np.random.RandomState()
        rng.set_state(replay_fork_reset(self.fork_family).rng_state)
        self.random_generator.random_generator = rng

    def simulation_forward(self, action: np.ndarray) -> bool:
        """Step the physics; a diverged simulation is a fatal error (NAV_TASKS §6.3 item 3).

        The fork ended the episode without a cost (the authors' loop then fails); MuJoCo 2.3
        would silently reset the state and carry on, so raise instead of training on it.
        """
        import mujoco

        exception = super().simulation_forward(action)  # type: ignore[misc]
        bad = [
            mujoco.mjtWarning.mjWARN_BADQPOS,
            mujoco.mjtWarning.mjWARN_BADQVEL,
            mujoco.mjtWarning.mjWARN_BADQACC,
            mujoco.mjtWarning.mjWARN_BADCTRL,
        ]
        if exception or any(self.data.warning[int(w)].number for w in bad):
            raise RuntimeError(
                f"the MuJoCo simulation of {self.fork_family} became unstable "
                f"(action {np.asarray(action).tolist()})"
            )
        return exception

    # -- observation --------------------------------------------------------------------

    def build_observation_space(self) -> None:
        """Safety-Gymnasium's spaces, then a flat Box in the fork's key order (NAV_TASKS §4)."""
        super().build_observation_space()  # type: ignore[misc]
        spaces = self.obs_info.obs_space_dict.spaces
        # The fork flattens its observation dict in sorted key order (NAV_TASKS §4 [EN:1240]).
        self.fork_obs_keys = sorted(spaces, key=lambda k: _FORK_KEY.get(k, k))
        if self.observation_flatten:
            low = [np.asarray(spaces[k].low, np.float64).ravel() for k in self.fork_obs_keys]
            high = [np.asarray(spaces[k].high, np.float64).ravel() for k in self.fork_obs_keys]
            self.observation_space = gymnasium.spaces.Box(
                np.concatenate(low), np.concatenate(high), dtype=np.float64
            )

    def fork_observation(self) -> OrderedDict[str, np.ndarray]:
        """The observation dict under the fork's names, in the fork's (alphabetical) order.

        Sensors are raw MuJoCo readings (accelerometer in m/s^2, velocimeter m/s, gyro rad/s,
        magnetometer, Car: ``ballangvel_rear`` rad/s, ``ballquat_rear`` a 3x3 rotation matrix);
        each ``*_lidar`` has 16 bins in [0, 1].
        """
        flatten, self.observation_flatten = self.observation_flatten, False
        try:
            raw = super().obs()  # type: ignore[misc]
        finally:
            self.observation_flatten = flatten
        return OrderedDict((_FORK_KEY.get(k, k), raw[k]) for k in self.fork_obs_keys)

    def obs(self) -> np.ndarray | OrderedDict[str, np.ndarray]:
        """The fork's flat observation, shape ``(FORK_OBS_DIM[task],)``, float64."""
        fork = self.fork_observation()
        if not self.observation_flatten:
            return fork
        return np.concatenate([np.asarray(v, np.float64).ravel() for v in fork.values()])


class _ForkBuilder:
    """Safety-Gymnasium's ``Builder`` that instantiates a :class:`_ForkTask` by task name."""

    def __init__(self, task_name: str, render_mode: str | None = None) -> None:
        agent, family = _TASKS[task_name]
        # Read by _get_task, which Builder.__init__ calls.
        self._fork = (family, fork_agent_xml(agent))
        super().__init__(  # type: ignore[call-arg]
            task_id=task_name, config={"agent_name": agent}, render_mode=render_mode
        )

    def _get_task(self) -> Any:
        family, agent_xml = self._fork
        task_class = _sg_classes()["Push" if family == "Push1" else "Button"]
        task = task_class(config=self.config, family=family, agent_xml=agent_xml)
        task.build_observation_space()
        return task


@functools.cache
def _sg_classes() -> dict[str, type]:
    """Create the Safety-Gymnasium subclasses (needs the package, so on first use only)."""
    import_safety_gymnasium("the paper's navigation tasks")
    from safety_gymnasium.builder import Builder
    from safety_gymnasium.tasks.safe_navigation.button.button_level0 import ButtonLevel0
    from safety_gymnasium.tasks.safe_navigation.push.push_level0 import PushLevel0

    def make(name: str, bases: tuple[type, ...], doc: str) -> type:
        return type(name, bases, {"__module__": __name__, "__doc__": doc})

    return {
        "Button": make("ForkButtonTask", (_ForkTask, ButtonLevel0), "The fork's Button1/2."),
        "Push": make("ForkPushTask", (_ForkTask, PushLevel0), "The fork's Push1."),
        "Builder": make("ForkBuilder", (_ForkBuilder, Builder), _ForkBuilder.__doc__ or ""),
    }


# ----------------------------------------------------------------------------------------
# The gymnasium env and the registry entries.
# ----------------------------------------------------------------------------------------


class PaperNavEnv(gymnasium.Wrapper):
    """The paper's step contract on top of the adapted Safety-Gymnasium env.

    * ``reset(seed=...)`` ignores the seed: the fork's layout, start pose and goals do not
      depend on it (the fork re-seeds with 0 at every reset; NAV_TASKS §2, §5).
    * ``step(action)``, action shape ``(2,)`` in [-1, 1] (any array-like), returns
      ``(obs, reward, terminated, truncated, info)`` with ``info["cost"]`` in {0, 1} and
      ``info["bootstrap_end"]``: True on the step a goal is met (button pressed / box in the
      goal), where the authors store ``done = True`` for the reward critic while the episode
      goes on with a new goal (NAV_TASKS §5). ``terminated`` stays False then.
    """

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        del seed  # the layout is seed-independent; Safety-Gymnasium rejects a seed here
        return self.env.reset(seed=None, options=options)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        # Safety-Gymnasium 1.0.0 needs an ndarray under numpy 2 (a list fails to convert).
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, np.float64))
        info["bootstrap_end"] = bool(info.get("goal_met", False))
        return obs, reward, terminated, truncated, info


def _make_paper_nav(spec: TaskSpec, render_mode: str | None = None) -> gymnasium.Env:
    import_safety_gymnasium(f"task {spec.name!r}")
    builder = _sg_classes()["Builder"](spec.name, render_mode=render_mode)
    return PaperNavEnv(SafetyToGymnasium(builder))


def _paper_nav_spec(name: str) -> TaskSpec:
    robot, family = _TASKS[name]
    return TaskSpec(
        name=name,
        family="navigation",
        obs_dim=FORK_OBS_DIM[name],
        act_dim=2,
        action_low=(-1.0, -1.0),
        action_high=(1.0, 1.0),
        max_episode_steps=EPISODE_STEPS,
        cost_kind="navigation",
        # h = 10 (1 - 0.99**400) / (0.01 * 400) = 2.45512 (NAV_TASKS §1 [A:70-75]).
        cost_budget=episodic_limit_to_budget(EPISODE_COST_LIMIT, EPISODE_STEPS, COST_GAMMA),
        episode_cost_limit=EPISODE_COST_LIMIT,
        eval_cost="sum",  # undiscounted episode cost (NAV_TASKS §1 [M:54])
        epoch_steps=EPISODE_STEPS,
        cost_mask="none",  # the cost critic always bootstraps (NAV_TASKS §5 [A:197-198])
        cost_gamma=COST_GAMMA,
        requires="safety-gymnasium",
        description=(
            f"the paper's Safexp-{name}-v0 (CVPO fork of Safety-Gym) on Safety-Gymnasium: fixed "
            f"{family} layout, {robot} dt={FORK_TIMESTEP[robot]} s, cost 0/1 per step, "
            f"limit {EPISODE_COST_LIMIT:g} per {EPISODE_STEPS}-step episode"
        ),
        env_id=f"Safexp-{name}-v0",
        paper_total_steps=PAPER_TOTAL_STEPS,
    )


for _name in PAPER_NAV_TASKS:
    register_task(_paper_nav_spec(_name), _make_paper_nav)
