"""Audit -> Reward check: does a reward keep the task's optimal policy, before anyone trains on it?

Wires widgets to `rgvlm_core.reward_check.check_reward` (torch-free: this runs in the app process) and
lays out what it found: the verdict in words, expert against other returns by subtask kind, the solve
of each simulator task, and a link to the data's worst detour on the Episodes page. Results are kept
in the session per (source, mapping, lambda, tasks per length): the solve takes seconds, not a job.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from rgvlm_app.text import md_code, md_escape
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.rewards import DEFAULT_MAPPING, MAPPING_HELP, MAPPINGS
from rgvlm_core.reward_check import SCORER, CheckConfig, TaskRow, check_reward
from rgvlm_core.workspace import StoreReader

# -- session keys of the tab, all here with their defaults ----------------------------------------------
SOURCE = "audit.reward.source"  # the reward source checked (rl.dataset syntax, without @MAPPING)
MAPPING = "audit.reward.mapping"  # how its scores become rewards
LAMBDA = "audit.reward.lambda"  # the weight of the VLM reward
TASKS = "audit.reward.tasks"  # simulator tasks per length
RESULTS = "audit.reward.results"  # key -> the check's JSON document, this session
RUN = "audit.reward.run"  # the button
DEFAULTS: dict[str, Any] = {MAPPING: DEFAULT_MAPPING, LAMBDA: 1.0, TASKS: 2}
EPISODES_PAGE = "pages/episodes.py"
TAB_NAME = "Reward check"
SPARSE = "sparse"
_HELP = {name: f.metadata["help"] for name, f in CheckConfig.__dataclass_fields__.items()}
INTRO = (
    "A reward that pays every step can make delaying completion optimal: loops pay, and no training "
    "fixes that. This check measures (a) the mean discounted return of completed subtask segments of "
    "expert trajectories against the others, from the run's own labels, and (b) whether the optimal "
    "policy of sampled simulator tasks under the reward completes them (an exact solve)."
)
HONEST = (
    f"The solve's scorer is {SCORER}: a label run's own scores exist only on the data's steps, which "
    "part (a) measures. So (b) judges the mapping, (a) the labels."
)


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault(RESULTS, {})


def source_options(runs: list[dict[str, Any]]) -> list[str]:
    """sparse, then sparse+VLM and VLM alone for every label run (CLIP runs under their own name)."""
    out = [SPARSE]
    for run in reversed(runs):  # newest first
        head = "clip" if run["labeller"] == "clip" else "rgvlm"
        out += [f"sparse+{head}:{run['run_id']}", f"{head}:{run['run_id']}"]
    return out


def _label_runs(reader: StoreReader) -> list[dict[str, Any]]:
    return reader.rows("SELECT run_id, labeller FROM label_runs ORDER BY created_at")


def pickers(reader: StoreReader) -> tuple[str, str | None, float, int]:
    """The reward source, mapping (None for sparse), lambda and tasks per length."""
    options = source_options(_label_runs(reader))
    if st.session_state.get(SOURCE) not in options:
        st.session_state[SOURCE] = options[1] if len(options) > 1 else options[0]
    left, middle, right, last = st.columns([3, 2, 1, 1])
    source = str(left.selectbox("Reward source", options, key=SOURCE))
    is_sparse = source == SPARSE
    mapping = middle.selectbox(
        "Mapping",
        MAPPINGS,
        key=MAPPING,
        disabled=is_sparse,
        format_func=lambda m: f"{m}: {MAPPING_HELP[m]}",
        help="How the labeller's scores become rewards (labeling/rewards.py).",
    )
    lam = right.number_input(
        "Lambda", min_value=0.0, step=0.1, key=LAMBDA, disabled=is_sparse, help=_HELP["lam"]
    )
    tasks = last.number_input(
        "Tasks per length", min_value=1, max_value=20, step=1, key=TASKS, help=_HELP["tasks_per_length"]
    )
    return source, None if is_sparse else str(mapping), float(lam), int(tasks)


def _run(
    reader: StoreReader, source: str, mapping: str | None, lam: float, tasks: int
) -> dict[str, Any] | None:
    """The check, with its progress shown while it solves; None after showing why it cannot run."""
    with st.status("Solving simulator tasks…", expanded=True) as status:
        bar = st.progress(0.0)

        def shown(done: int, total: int, row: TaskRow) -> None:
            bar.progress(
                done / total, text=f"{done} of {total} tasks · {row.length} subtasks: {row.solve.status}"
            )

        try:
            check = check_reward(reader, source, mapping, lam, tasks_per_length=tasks, progress=shown)
        except RGVLMError as exc:
            status.update(label="The check could not run", state="error")
            st.error(md_escape(str(exc)))
            return None
        status.update(
            label=f"Solved {len(check.tasks)} tasks in {check.seconds:.1f} s",
            state="complete",
            expanded=False,
        )
    return check.to_json()


def reward_check_section(reader: StoreReader) -> None:
    """The tab: pickers, the button, and the result for the chosen settings when there is one."""
    init_state()
    st.caption(INTRO)
    source, mapping, lam, tasks = pickers(reader)
    key = f"{source}|{mapping}|{lam:g}|{tasks}"
    results: dict[str, Any] = st.session_state[RESULTS]
    if st.button("Run the check again" if key in results else "Run the check", key=RUN, type="primary"):
        doc = _run(reader, source, mapping, lam, tasks)
        if doc is not None:
            results[key] = doc
    doc = results.get(key)
    if doc is None:
        st.info("Choose a reward source and run the check: about a second per simulator task.")
        return
    show_result(doc)


def show_result(doc: dict[str, Any]) -> None:
    """The verdict in words, the returns by kind, the solve of each task, and the example episode."""
    solve_line, returns_line, *_ = doc["verdict"]
    verdict = st.error if doc["pays_loops"] else (st.success if doc["pays_loops"] is False else st.warning)
    verdict(md_escape(solve_line))
    returns = doc["returns"]
    (st.warning if returns and returns["other_return"] > returns["expert_return"] else st.info)(
        md_escape(returns_line)
    )
    st.caption(md_escape(HONEST))
    if returns:
        st.markdown("**Mean discounted return of completed segments, by subtask kind**")
        st.dataframe(returns["by_kind"], hide_index=True, key="audit.reward.by_kind")
        example_link(doc)
    st.markdown(f"**Simulator tasks solved** (seed {doc['seed']})")
    st.caption(md_escape(doc["verdict"][3]))
    st.dataframe(solve_rows(doc["task_rows"]), hide_index=True, key="audit.reward.tasks")


def solve_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per task, as shown: its optimal and expert steps, states explored, and the loop."""
    out = []
    for row in rows:
        loops = [s["loop"] for s in row["subtasks"] if s["loop"]]
        out.append(
            {
                "length": row["length"],
                "task type": row["task_type"],
                "status": row["status"],
                "optimal steps": row["optimal_length"],
                "expert steps": row["expert_length"],
                "states": sum(s["states"] for s in row["subtasks"]),
                "loop": ", ".join(loops[0]) if loops else "",
                "goal": row["goal"],
            }
        )
    return out


def example_link(doc: dict[str, Any]) -> None:
    """A link to the non-expert segment that beats its kind's mean expert return by most: a paid detour
    when the others earn more than the experts, else only a short segment (said as such)."""
    example, worst = doc["example_episode"], (doc["returns"] or {}).get("worst_offender")
    if example is None or worst is None:
        st.caption("No non-expert segment earns more than the mean expert return of its kind.")
        return
    returns = doc["returns"]
    paid = returns["other_return"] > returns["expert_return"]
    lead = "Example of a paid detour" if paid else "The non-expert segment furthest above its kind's experts"
    steps = f"{worst['steps']} step" + ("" if worst["steps"] == 1 else "s")
    params = {"episode": example["episode"], "step": str(example["step"])}
    if example.get("run"):
        params["run"] = example["run"]
    st.page_link(
        EPISODES_PAGE,
        label=(
            f"{lead}: a {md_escape(worst['behaviour'])} {md_escape(worst['kind'])} segment earning "
            f"{worst['return']:.2f} in {steps} (experts: {worst['expert_mean_of_kind']:.2f})"
        ),
        icon=":material/movie:",
        query_params=params,
    )
    st.caption(
        f"Episode {md_code(example['episode'])}, subtask {worst['subtask']}, from step {example['step']}."
    )
