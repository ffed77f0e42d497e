"""Bring weights of the authors' PyTorch implementation into our parameter trees.

Layout of their `state_dict` (see tests/data/README.md):
* `policy.time_embedding.weight [K, 16]`, `policy.mlp.{0,2,4}.{weight,bias}`,
  `policy.score_head.*`, `policy.eps_head.*`  (torch Linear weights are `[out, in]`);
* `critic.linear1..3.*` (Q1) and `critic.linear4..6.*` (Q2);
* `safety_critics.nn1..3.weight [M, in, out]`, `.bias [M, out]` (already `[in, out]`).

`.npz` files are read with numpy alone; `.pth` files need torch (`pip install torch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

Arrays = Mapping[str, np.ndarray]


def _dense(arrays: Arrays, name: str) -> dict[str, jnp.ndarray]:
    """A torch Linear `[out, in]` as a flax Dense `{"kernel": [in, out], "bias": [out]}`."""
    return {
        "kernel": jnp.asarray(np.asarray(arrays[f"{name}.weight"], np.float32).T),
        "bias": jnp.asarray(np.asarray(arrays[f"{name}.bias"], np.float32)),
    }


def score_params_from_torch(arrays: Arrays, prefix: str = "policy") -> dict[str, Any]:
    """ScoreNet params from `policy.*` arrays. A missing eps head (VE-only checkpoints)
    is zero-filled, since the VE-SDE agent never reads it."""
    params = {
        "time_embedding": {
            "embedding": jnp.asarray(
                np.asarray(arrays[f"{prefix}.time_embedding.weight"], np.float32)
            )
        },
        "hidden_0": _dense(arrays, f"{prefix}.mlp.0"),
        "hidden_1": _dense(arrays, f"{prefix}.mlp.2"),
        "hidden_2": _dense(arrays, f"{prefix}.mlp.4"),
        "score_head": _dense(arrays, f"{prefix}.score_head"),
    }
    if f"{prefix}.eps_head.weight" in arrays:
        params["eps_head"] = _dense(arrays, f"{prefix}.eps_head")
    else:
        params["eps_head"] = {
            "kernel": jnp.zeros_like(params["score_head"]["kernel"]),
            "bias": jnp.zeros_like(params["score_head"]["bias"]),
        }
    return {"params": params}


def critic_params_from_torch(arrays: Arrays, prefix: str = "critic") -> dict[str, Any]:
    """Double-Q params (leading member axis 2) from `critic.linear1..6.*`."""
    members = [
        {
            "hidden_0": _dense(arrays, f"{prefix}.linear{1 + 3 * m}"),
            "hidden_1": _dense(arrays, f"{prefix}.linear{2 + 3 * m}"),
            "out": _dense(arrays, f"{prefix}.linear{3 + 3 * m}"),
        }
        for m in range(2)
    ]
    stacked = {
        layer: {
            leaf: jnp.stack([mem[layer][leaf] for mem in members]) for leaf in ("kernel", "bias")
        }
        for layer in members[0]
    }
    return {"params": {"members": stacked}}


def cost_critic_params_from_torch(arrays: Arrays, prefix: str = "safety_critics") -> dict[str, Any]:
    """Cost-ensemble params from `safety_critics.nn1..3.*` (`[M, in, out]` weights)."""
    layers = {}
    for ours, theirs in (("hidden_0", "nn1"), ("hidden_1", "nn2"), ("out", "nn3")):
        layers[ours] = {
            "kernel": jnp.asarray(np.asarray(arrays[f"{prefix}.{theirs}.weight"], np.float32)),
            "bias": jnp.asarray(np.asarray(arrays[f"{prefix}.{theirs}.bias"], np.float32)),
        }
    return {"params": {"members": layers}}


def load_torch_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read a state dict as `{name: ndarray}` from `.npz` (numpy only) or `.pth` (torch)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    try:
        import torch  # noqa: PLC0415 - optional dependency, only for .pth files
    except ImportError as err:
        raise ImportError(
            f"reading {path.name} needs PyTorch: `pip install torch`, or save the state "
            "dict's arrays as .npz with numpy and pass that instead"
        ) from err
    state = torch.load(path, map_location="cpu", weights_only=True)
    flat: dict[str, np.ndarray] = {}

    def visit(prefix: str, obj: Any) -> None:
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                visit(f"{prefix}.{key}" if prefix else str(key), value)
        elif hasattr(obj, "detach"):
            flat[prefix] = obj.detach().cpu().numpy()

    visit("", state)
    return flat
