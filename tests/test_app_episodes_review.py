"""The Episodes page as a person auditing rewards uses it (AppTest): the Filters panel, the list and
the shown episode, the one side-by-side table, overrides, subtask progress, task-only episodes, and
workspaces where simulator and ALFRED episodes mix with runs that label only some of them.
"""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app.text import md_escape
from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.labeling.store import add_override, effective_labels
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import LABEL_RUNS, LABELS
from tests.alfred_factory import write_test_trial, write_trajectory
from tests.test_app_episodes import EPISODE, labelled, open_page, step_heading  # noqa: F401 (fixture)

FILTERS = "episodes.w.filters"
HIGHLIGHT = ":orange-background["
ALFRED_RUN = "alfred-only"
_MIXED: list[tuple[Path, list[str]]] = []


def listed_ids(at: AppTest) -> list[str]:
    """The episode ids the sidebar list shows."""
    table = next(df.value for df in at.dataframe if "episode" in df.value.columns)
    return list(table["episode"])


def shown_episode(at: AppTest) -> str:
    return next(c.value for c in at.caption if "`" in c.value).split("`")[1]


def filters_panel(at: AppTest) -> Any:
    panels = [e for e in at.get("expander") if "filter" in e.label.lower()]
    assert len(panels) == 1
    return panels[0]


def side_table(at: AppTest) -> Any:
    """The one side-by-side table (st.table) as pandas."""
    assert len(at.table) == 1, f"{len(at.table)} tables"
    return at.table[0].value


def plain(cell: str) -> str:
    """A table cell without the current row's highlight."""
    return cell[len(HIGHLIGHT) : -1] if cell.startswith(HIGHLIGHT) else cell


# -- Filters panel and list -------------------------------------------------------------------------
def test_the_filters_panel_keeps_its_label_when_a_filter_is_picked(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws)
    before = filters_panel(at).label
    at.multiselect(key="episodes.w.n_subtasks").set_value([6]).run()
    at.selectbox(key="episodes.w.order").set_value("lowest mean score").run()
    assert filters_panel(at).label == before  # a new label would redraw the panel closed
    active = " ".join(c.value for c in at.caption)
    assert "6 subtasks" in active and "sorted by lowest mean score" in active  # shown outside the panel


def test_after_a_filter_change_the_shown_episode_is_one_of_the_listed(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE)  # 5 subtasks
    at.multiselect(key="episodes.w.n_subtasks").set_value([6]).run()
    listed = listed_ids(at)
    assert listed and EPISODE not in listed
    assert shown_episode(at) == listed[0]
    assert at.query_params["episode"] == listed[0]
    assert step_heading(at).startswith("#### Step 0 ·")
    at.text_input(key="episodes.w.text").input(listed[-1].split("/")[-1]).run()  # search, another filter
    assert shown_episode(at) in listed_ids(at)


# -- the side-by-side table -------------------------------------------------------------------------
def test_one_table_aligns_both_runs_by_step_with_scores_difference_and_reasons(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    add_override(ws, runs[0], EPISODE, 6, 1, "the knife is not in the sink")
    at = open_page(monkeypatch, ws, episode=EPISODE, step="7", run=runs[0], vs=runs[1])
    table = side_table(at)
    scores = ["A score", "A run score", "B score", "B run score", "A progress", "B progress", "B − A"]
    assert list(table.columns) == [" ", "step", "action", *scores, "A reason", "B reason"]
    reader = ws.reader()
    a = {r["t"]: r for r in effective_labels(reader, runs[0], [EPISODE]).to_pylist()}
    b = {r["t"]: r for r in effective_labels(reader, runs[1], [EPISODE]).to_pylist()}
    rows = [{k: plain(str(v)) for k, v in row.items()} for row in table.to_dict("records")]
    assert [int(r["step"]) for r in rows] == list(range(5, 15))  # the current subtask's steps, in order
    for row in rows:
        t = int(row["step"])
        assert (row["A score"], row["B score"]) == (str(a[t]["score"]), str(b[t]["score"]))
        assert row["A run score"] == str(a[t]["run_score"])
        # the reference runs answer the progress question; an override changes scores, never progress
        assert (row["A progress"], row["B progress"]) == (str(a[t]["progress"]), str(b[t]["progress"]))
        diff = b[t]["score"] - a[t]["score"]
        assert row["B − A"] == (f"{diff:+d}" if diff else "0")
        assert row["B reason"] == md_escape(b[t]["reason"] or "")
    six = next(r for r in rows if r["step"] == "6")
    assert six["A score"] == "1" and six["A run score"] == str(a[6]["run_score"])  # the run's own, shown
    assert six["A reason"].startswith(md_escape("override: the knife is not in the sink"))
    current = table.to_dict("records")[2]
    assert all(str(v).startswith(HIGHLIGHT) for v in current.values() if v)  # step 7, highlighted
    assert not any(str(v).startswith(HIGHLIGHT) for r in table.to_dict("records")[3:] for v in r.values())


def test_reasons_show_in_full_and_literally_in_the_table(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    hostile = "**Bold** <img src=x onerror=alert(1)> [link](http://x) " + "because the apple " * 30
    _copy_run(ws, runs[1], "verbose", {3: hostile})
    at = open_page(monkeypatch, ws, episode=EPISODE, step="3", run=runs[0], vs="verbose")
    rows = side_table(at).to_dict("records")
    cell = plain(next(r["B reason"] for r in rows if plain(str(r["step"])) == "3"))
    assert cell == md_escape(hostile)  # whole, and escaped: the table renders Markdown
    assert len(cell) > 500


def _copy_run(ws: Workspace, run_id: str, new_id: str, reasons: dict[int, str]) -> None:
    """A new run with `run_id`'s labels of EPISODE, some of them with other reasons."""
    reader = ws.reader()
    run = reader.rows("SELECT * FROM label_runs WHERE run_id = ?", [run_id])[0]
    labels = reader.rows("SELECT * FROM labels WHERE run_id = ? AND episode_id = ?", [run_id, EPISODE])
    for row in labels:
        row["run_id"] = new_id
        row["reason"] = reasons.get(row["t"], row["reason"])
    run["run_id"] = new_id
    ws.commit(
        {
            LABEL_RUNS.name: pa.Table.from_pylist([run], schema=LABEL_RUNS.schema),
            LABELS.name: pa.Table.from_pylist(labels, schema=LABELS.schema),
        }
    )


# -- overrides --------------------------------------------------------------------------------------
def test_a_refused_override_keeps_the_typed_score_and_says_why(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="3")
    at.number_input[0].set_value(2)
    next(b for b in at.button if b.label == "Save override").click().run()
    assert any("needs a reason" in e.value for e in at.error)
    assert at.number_input[0].value == 2
    next(t for t in at.text_input if t.label == "Reason (required)").input("the apple is still dirty")
    next(b for b in at.button if b.label == "Save override").click().run()
    assert not at.error
    stored = {r["t"]: r for r in effective_labels(ws.reader(), runs[0], [EPISODE]).to_pylist()}
    assert (stored[3]["score"], stored[3]["override_reason"]) == (2, "the apple is still dirty")
    assert next(t for t in at.text_input if t.label == "Reason (required)").value == ""


# -- subtasks ---------------------------------------------------------------------------------------
def subtask_marks(at: AppTest) -> list[str]:
    """The first character of each subtask line (✓ done, ▶ current, ○ to come)."""
    text = next(m.value for m in at.markdown if m.value.lstrip("- *").startswith(("✓", "▶", "○", "✗")))
    return [line.lstrip("- *")[0] for line in text.splitlines()]


@pytest.mark.parametrize(
    ("step", "marks"),
    [
        ("0", "▶○○○○"),  # nothing is done before the first action
        ("1", "▶○○○○"),  # the first subtask's last step is still to be taken
        ("2", "✓▶○○○"),  # ... and done once it was
        ("7", "✓✓▶○○"),
        ("24", "✓✓✓✓▶"),  # the last step: the last subtask ends with this step's action
    ],
)
def test_a_subtask_is_done_only_after_its_last_step_was_taken(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    marks: str,
) -> None:
    ws, _ = labelled  # EPISODE's subtasks: steps 0-1, 2-4, 5-14, 15-16, 17-24, all completed
    at = open_page(monkeypatch, ws, episode=EPISODE, step=step)
    assert "".join(subtask_marks(at)) == marks


# -- mixed datasets, runs that label only some episodes, task-only episodes -------------------------
@pytest.fixture()
def mixed(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Workspace, list[str]]:
    """The labelled sample plus synthetic ALFRED episodes (train and a test split), the ALFRED ones
    labelled by a run of their own only (built once per session)."""
    if not _MIXED:
        ws, runs = labelled
        template = tmp_path_factory.mktemp("episodes-mixed") / "ws"
        shutil.copytree(ws.root, template)
        data = tmp_path_factory.mktemp("alfred-data")
        write_trajectory(data, "train")
        write_test_trial(data, "tests_seen")
        mixed_ws = Workspace.open(template)
        collections.deque(import_alfred(mixed_ws, data, ImportConfig()), maxlen=0)
        config = RunConfig(name=ALFRED_RUN, filters=EpisodeFilter(datasets=("alfred",)))
        collections.deque(label_run(mixed_ws, ReferenceLabeller(), config), maxlen=0)
        _MIXED.append((template, runs))
    template, runs = _MIXED[0]
    shutil.copytree(template, tmp_path / "mixed")
    return Workspace.open(tmp_path / "mixed"), runs


def alfred_episode(ws: Workspace, task_only: bool = False) -> str:
    return str(
        ws.reader().scalar(
            "SELECT min(episode_id) FROM episodes WHERE dataset = 'alfred' AND task_only = ?", [task_only]
        )
    )


def test_mixed_datasets_are_named_and_one_can_be_picked_in_the_filters(
    mixed: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = mixed
    at = open_page(monkeypatch, ws)
    assert any(md_escape("Dataset: all (alfred, sim)") in c.value for c in at.caption)
    table = next(df.value for df in at.dataframe if "episode" in df.value.columns)
    assert set(table["dataset"]) == {"alfred", "sim"}
    at.multiselect(key="episodes.w.datasets").set_value(["sim"]).run()
    assert any(md_escape("Dataset: sim") in c.value for c in at.caption)
    assert all(e.startswith("sim:") for e in listed_ids(at))
    assert shown_episode(at).startswith("sim:")


def test_a_run_without_labels_for_the_episode_names_the_runs_that_label_it(
    mixed: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = mixed
    episode = alfred_episode(ws)
    at = open_page(monkeypatch, ws, episode=episode, run=runs[0])
    notes = " ".join(i.value for i in at.info)
    assert f"Run {md_escape(runs[0])} has no labels for this episode" in notes
    assert md_escape(ALFRED_RUN) in notes and md_escape(runs[1]) not in notes
    at.button(key=f"episodes.w.switch_run:{ALFRED_RUN}").click().run()
    assert at.session_state["episodes.run"] == ALFRED_RUN
    assert at.query_params["run"] == ALFRED_RUN
    assert not any("has no labels" in i.value for i in at.info)


def test_a_task_only_episode_shows_its_goal_and_stored_instructions(
    mixed: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = mixed
    episode = alfred_episode(ws, task_only=True)
    at = open_page(monkeypatch, ws, episode=episode)
    stored = ws.reader().rows("SELECT goal, instructions FROM episodes WHERE episode_id = ?", [episode])[0]
    assert md_escape(stored["goal"]) in at.subheader[0].value
    text = " ".join(m.value for m in at.markdown)
    assert all(md_escape(i) in text for i in stored["instructions"])
    assert "No subtasks" not in text
