"""Overview: what the workspace holds, by split, task type and number of subtasks (one dataset at a time)."""

import streamlit as st

from rgvlm_app.home_widgets import dataset_name, dataset_picker, glance
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader, workspace_path
from rgvlm_app.text import md_code, md_escape
from rgvlm_core import charts
from rgvlm_core.catalog import dataset_counts, recent_imports, workspace_counts
from rgvlm_core.episodes import ALFRED_TASK_TYPES

require_navigation()

st.title("RG-VLM Studio")
st.caption(f"Workspace {md_code(str(workspace_path()))}")

reader = store_reader()
if reader is None:
    st.stop()
counts = workspace_counts(reader)

cols = st.columns(5)
cols[0].metric("Episodes", f"{counts['episodes']:,}")
cols[1].metric("Trajectories", f"{counts['trajectories']:,}")
cols[2].metric("Steps", f"{counts['steps']:,}")
cols[3].metric("Label runs", f"{counts['label_runs']:,}")
cols[4].metric("Training runs", f"{counts['train_runs']:,}")

if counts["by_dataset"]:
    st.caption(
        "Datasets: "
        + ", ".join(f"{md_escape(dataset_name(k))} ({v:,} episodes)" for k, v in counts["by_dataset"].items())
        + (
            " — the bundled sample, made by the simulator's generator"
            if set(counts["by_dataset"]) == {"sim"}
            else ""
        )
    )

glance(reader, counts, workspace_path())

if counts["episodes"] == 0:
    st.info(
        "This workspace is empty. Import an ALFRED-format folder from a terminal:\n\n"
        "`rgvlm import PATH/TO/json_2.1.0`"
    )
    st.stop()

st.subheader("Episodes")
sizes = counts["by_dataset"]
dataset = dataset_picker(sizes, default=max(sizes, key=lambda d: sizes[d]))
part = dataset_counts(reader, dataset) if dataset else counts
name = dataset_name(dataset) if dataset else "all datasets"
st.caption(f"{md_escape(name)}: {part['episodes']:,} of {counts['episodes']:,} episodes")
of = f" · {charts.plotly_escape(name)}"

left, right = st.columns(2)
left.plotly_chart(
    charts.count_bars(
        part["by_split"],
        title="Episodes by split" + of,
        x_title="split",
        colours=charts.SPLIT_COLOURS,
        order=list(charts.SPLIT_COLOURS),
    ),
    key="by_split",
)
right.plotly_chart(
    charts.count_bars(
        part["by_n_subtasks"],
        title="Episodes by number of subtasks" + of,
        x_title="subtasks",
        colours=charts.SEQUENCE,
    ),
    key="by_n_subtasks",
)
st.plotly_chart(
    charts.count_bars(
        part["by_task_type"],
        title="Episodes by task type" + of,
        x_title="task type",
        colours=charts.TASK_TYPE_COLOURS,
        order=list(ALFRED_TASK_TYPES),
        horizontal=True,
    ),
    key="by_task_type",
)
if part["task_only_episodes"]:
    st.caption(
        f"{part['task_only_episodes']:,} task-only episodes (ALFRED test splits: a goal and "
        "instructions, no steps) are counted by split and task type but have no subtask count."
    )

st.subheader("Imports")
for row in recent_imports(reader):
    label = (
        f"{row['started_at']:%Y-%m-%d %H:%M} · {md_escape(row['source'])} · "
        f"{row['trajectories']:,} trajectories, "
        f"{row['episodes']:,} episodes, {row['steps']:,} steps · {row['skipped']:,} already present · "
        f"{row['refused']:,} refused"
    )
    with st.expander(label, expanded=False):
        if row["errors"]:
            st.text("\n".join(row["errors"]))
        else:
            st.caption("Nothing was refused.")
