"""`rgvlm export minari NAME`: the exported dataset as a Minari dataset (the offline-RL dataset standard).

One Minari episode per exported episode (export.collect), in export order:
- observations: a Dict of "state" (a Box: the env's state space for simulator data, unbounded pooled
  features for ALFRED) and "instruction" (a Text: the subtask's instruction), one more than steps, the
  last being the state after the last step with that step's instruction;
- actions: Discrete indices into the metadata's `action_tokens`;
- rewards under the reward source; terminations = the trainer's done (a subtask completed: an episode
  can hold several, see export.collect); truncations = cut off before completing the task;
- infos, one more than steps as Minari stores them (entry 0 for the first observation, entry i+1 after
  step i): `action_mask` (valid actions in that observation, the env's info["action_mask"]),
  `subtask_idx`, `vlm_reward_missing`.
The dataset metadata's key "rgvlm" holds the provenance (export.collect.provenance) and `episode_ids`
(the workspace episode of Minari episode i).

Storage is Minari's arrow format: pyarrow is already a dependency; its hdf5 format would need h5py.
Simulator exports name the env `rgvlm/Household-v0` at the data's level, so `recover_environment()`
works where rgvlm-studio is installed; the eval env is the same with held-out phrasings (what `rgvlm
evaluate` uses). A dataset is built under a hidden folder of the dataset root and renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_core.errors import RGVLMError
from rgvlm_core.export.collect import ExportData
from rgvlm_core.export.files import replace_dir, temp_beside

ROOT_ENV = "MINARI_DATASETS_PATH"  # Minari's own variable for its dataset root
MINARI_INSTALL = 'pip install "rgvlm-studio[minari]" (or pip install "minari>=0.5")'
DATA_FORMAT = "arrow"
_VERSIONED = re.compile(r"-v\d+$")


def require_minari() -> Any:
    """The minari module, or an RGVLMError saying how to install it (it is an optional extra)."""
    try:
        import minari
    except ImportError:
        raise RGVLMError(
            f"`rgvlm export minari` needs the minari package, which is not installed; {MINARI_INSTALL}"
        ) from None
    return minari


def dataset_root(root: Path | None) -> Path:
    """Where Minari datasets live: `root`, else MINARI_DATASETS_PATH, else ~/.minari/datasets; always
    absolute (Minari 0.5 measures a dataset under a relative root at a doubled path, and fails)."""
    if root is None:
        env = os.environ.get(ROOT_ENV)
        root = Path(env) if env else Path.home() / ".minari" / "datasets"
    return root.expanduser().absolute()


@dataclasses.dataclass(frozen=True)
class MinariTarget:
    """A dataset id (always versioned) under a dataset root."""

    dataset_id: str
    root: Path

    @property
    def path(self) -> Path:
        return self.root / self.dataset_id


def minari_target(name: str, root: Path | None, *, force: bool = False) -> MinariTarget:
    """Check NAME and the output before any work. A NAME without `-vN` gets `-v0` (Minari ids carry a
    version). An existing dataset is an error without `force`; with it, only a Minari dataset (its
    data/metadata.json present) is replaced, so `--force` cannot delete a folder of something else."""
    require_minari()
    from minari.dataset.minari_dataset import parse_dataset_id

    dataset_id = name if _VERSIONED.search(name) else f"{name}-v0"
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise RGVLMError(
            f"dataset name {name!r} is not a Minari id; use (namespace/)name(-vVERSION) of letters, digits, "
            "- and _ (e.g. rgvlm/household-sparse-v0)"
        ) from None
    target = MinariTarget(dataset_id, dataset_root(root))
    if target.path.exists():
        if not force:
            raise RGVLMError(
                f"Minari dataset {dataset_id!r} already exists at {target.path}; pass --force to replace it, "
                "or choose another name or version"
            )
        if not (target.path / "data" / "metadata.json").is_file():
            raise RGVLMError(
                f"{target.path} is not a Minari dataset (no data/metadata.json), so --force does not replace "
                "it; choose another name"
            )
    return target


def write_minari(
    data: ExportData, target: MinariTarget, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Write the Minari dataset; returns its folder (load it with `minari.load_dataset(target.dataset_id)`
    where MINARI_DATASETS_PATH is `target.root`). `progress(done, total)` is called after each episode."""
    minari = require_minari()
    tmp = temp_beside(target.root / "rgvlm-export")
    try:
        with _datasets_path(tmp), warnings.catch_warnings():
            # Minari warns about every optional field left empty (author, e-mail, code permalink)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"minari(\.|$)")
            dataset = minari.create_dataset_from_buffers(
                target.dataset_id,
                [],  # episodes are added below, one at a time
                data_format=DATA_FORMAT,
                observation_space=observation_space(data),
                action_space=_action_space(data),
                description=_description(data),
                algorithm_name=_behaviour(data),
                **_env_kwargs(data),
            )
            _add_episodes(dataset.storage, data, progress)
            ids = [e["episode_id"] for e in data.episodes]
            dataset.storage.update_metadata({"rgvlm": {**data.metadata, "episode_ids": ids}})
        _adopt_namespaces(tmp, target)
        replace_dir(tmp / target.dataset_id, target.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target.path


def _add_episodes(storage: Any, data: ExportData, progress: Callable[[int, int], None] | None) -> None:
    """Add the episodes through the storage's own `update_episodes`, then record the dataset's size once.

    Minari 0.5's arrow storage re-measures the whole dataset folder after every episode it adds
    (`get_size` walks every file), which makes adding n episodes O(n^2): 702 s for 4,000 episodes.
    The measurement is stood down while they are added (an instance attribute shadows the method)
    and taken once at the end, so the stored metadata is what Minari would have written.
    """
    total = len(data.episodes)

    def reported() -> Iterator[Any]:
        for k, buffer in enumerate(episode_buffers(data)):
            yield buffer
            if progress is not None:
                progress(k + 1, total)

    storage.get_size = lambda: 0.0
    try:
        storage.update_episodes(reported())
    finally:
        del storage.get_size
    storage.update_metadata({"dataset_size": storage.get_size()})


@contextlib.contextmanager
def _datasets_path(path: Path) -> Iterator[None]:
    """Minari reads its root from the environment only: point it at `path` for the block."""
    before = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = before


def _adopt_namespaces(tmp: Path, target: MinariTarget) -> None:
    """Give the real root the namespace folders (and their metadata files) Minari made in `tmp`."""
    parts = target.dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        namespace = Path(*parts[:depth])
        made = tmp / namespace / "namespace_metadata.json"
        (target.root / namespace).mkdir(parents=True, exist_ok=True)
        if made.is_file() and not (target.root / namespace / made.name).exists():
            shutil.copyfile(made, target.root / namespace / made.name)


def episode_buffers(data: ExportData) -> Iterator[Any]:
    """One EpisodeBuffer per exported episode (the module docstring says what each field holds)."""
    from minari.data_collector import EpisodeBuffer

    a = data.arrays
    instructions = data.instructions()
    for k in range(len(data.episodes)):
        rows = data.rows_of(k)
        last = rows.stop - 1
        yield EpisodeBuffer(
            id=k,
            observations={
                "state": np.concatenate([a.states[rows], a.next_states[last : last + 1]]),
                "instruction": [*instructions[rows], instructions[last]],
            },
            actions=a.actions[rows],
            rewards=a.rewards[rows],
            terminations=data.terminal[rows],
            truncations=data.truncated[rows],
            # 1-D infos go as lists: Minari's arrow storage cannot read back a 1-D numpy info array
            infos={
                "action_mask": np.concatenate([a.masks[rows], data.final_masks[k : k + 1]]),
                "subtask_idx": [*data.subtask_idx[rows].tolist(), int(data.subtask_idx[last])],
                "vlm_reward_missing": [False, *data.missing[rows].tolist()],
            },
        )


def observation_space(data: ExportData) -> Any:
    """Dict(state: Box, instruction: Text). Simulator data takes the env's spaces; a Text space is
    widened to the data's instructions where one is longer or uses other characters (ALFRED's are
    human-written)."""
    from gymnasium import spaces

    env = _sim_env(data)
    if env is not None:
        box, text = env.observation_space["state"], env.observation_space["instruction"]
    else:
        box = spaces.Box(-np.inf, np.inf, (data.arrays.states.shape[1],), np.float32)
        text = None
    return spaces.Dict({"state": box, "instruction": _text_space(data.arrays.instructions, text)})


def _text_space(texts: list[str], base: Any) -> Any:
    from gymnasium import spaces

    longest = max((len(t) for t in texts), default=1)
    chars = set("".join(texts))
    if base is not None and longest <= base.max_length and chars <= set(base.character_set):
        return base
    known = set(base.character_set) if base is not None else set()
    return spaces.Text(
        max_length=max(longest, base.max_length if base is not None else 1),
        min_length=0 if any(not t for t in texts) else 1,
        charset="".join(sorted(chars | known)),
    )


def _action_space(data: ExportData) -> Any:
    from gymnasium import spaces

    return spaces.Discrete(data.arrays.n_actions)


def _household_level(data: ExportData) -> str | None:
    """The household env level (subgoal or low) the data's states come from; None for other data (ALFRED
    features, or a level no household env builds)."""
    from rgvlm_core.sim.env import LEVELS

    level = str(data.arrays.info.get("level", "subgoal"))
    return level if data.arrays.info.get("states") == "sim" and level in LEVELS else None


def _sim_env(data: ExportData) -> Any:
    """The household env the data's states come from (its spaces), or None."""
    from rgvlm_core.sim.env import make_household

    level = _household_level(data)
    return None if level is None else make_household(level)


def _env_kwargs(data: ExportData) -> dict[str, Any]:
    """create_dataset_from_buffers' env, eval_env and requirements for household data (else none)."""
    if _household_level(data) is None:
        return {}
    import gymnasium

    import rgvlm_core
    from rgvlm_core.rl.dataset import dataset_floor_plans
    from rgvlm_core.sim.env import ENV_ID

    kwargs: dict[str, Any] = {"level": str(data.arrays.info.get("level", "subgoal"))}
    plans = dataset_floor_plans(data.arrays.info)
    if plans:
        kwargs["floor_plans"] = list(plans)
    spec = gymnasium.spec(ENV_ID)
    return {
        "env": dataclasses.replace(spec, kwargs=kwargs),
        "eval_env": dataclasses.replace(spec, kwargs={**kwargs, "phrasing": "unseen"}),
        "requirements": [f"rgvlm-studio=={rgvlm_core.__version__}"],
    }


def _behaviour(data: ExportData) -> str:
    """What acted in the data (Minari's algorithm_name): the behaviours of the trajectories and counts."""
    counts: dict[str, int] = {}
    for ep in data.episodes:
        key = str(ep.get("behaviour") or "unknown")
        counts[key] = counts.get(key, 0) + 1
    mix = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    source = "rgvlm simulator data generator" if data.metadata.get("states") == "sim" else "ALFRED"
    return f"{source} (episodes by behaviour: {mix})"


def _description(data: ExportData) -> str:
    m = data.metadata
    runs = m.get("label_runs") or []
    labels = (
        f" Labels: run {runs[0]['run_id']} by {runs[0]['labeller_is']}."
        if runs
        else " No label run: the data's own sparse reward."
    )
    return (
        f"RG-VLM Studio export of {m['episodes']} {m['states']} episodes ({m['steps']} steps) with the "
        f"reward {m['reward_source']}.{labels} A termination marks a completed subtask (several per "
        "episode); metadata['rgvlm'] holds the provenance and the workspace episode ids."
    )


__all__ = [
    "DATA_FORMAT",
    "MINARI_INSTALL",
    "ROOT_ENV",
    "MinariTarget",
    "dataset_root",
    "episode_buffers",
    "minari_target",
    "observation_space",
    "require_minari",
    "write_minari",
]
