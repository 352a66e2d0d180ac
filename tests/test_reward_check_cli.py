"""`rgvlm reward-check` in a subprocess, as a user's shell runs it."""

from __future__ import annotations

import json

import pytest

from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.cli_support import rgvlm


@pytest.fixture()
def labelled(sample_ws: Workspace) -> Workspace:
    label_sample(sample_ws)
    return sample_ws


# raw loops on the first subtask of every task, so six tasks solve in about a second
RAW = ("reward-check", "--reward", "sparse+reference", "--vlm-reward", "raw", "--tasks-per-length", "1")


def test_json_prints_exactly_one_object_with_the_documented_keys(labelled: Workspace) -> None:
    done = rgvlm("-w", str(labelled.root), *RAW, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert isinstance(doc, dict)
    assert {"tasks", "optimal_completes", "expert_return", "other_return", "verdict"} <= set(doc)
    assert doc["reward_source"] == "sparse+reference@raw"
    assert doc["tasks"] == 6 and doc["optimal_completes"] < 1
    assert doc["other_return"] > doc["expert_return"]
    assert "reference labeller" in doc["scorer"]


def test_human_output_has_the_table_and_the_verdict_in_words(labelled: Workspace) -> None:
    done = rgvlm("-w", str(labelled.root), *RAW)
    assert done.returncode == 0, done.stderr
    assert "reward check: sparse+reference@raw" in done.stdout
    assert "sparse+reference@raw pays loops: the optimal policy completes 0 of 6 tasks" in done.stdout
    assert "non-expert segments earn more than expert ones" in done.stdout
    assert "took " in done.stdout


def test_an_unknown_reward_source_is_one_red_line_and_exit_1(labelled: Workspace) -> None:
    done = rgvlm("-w", str(labelled.root), "reward-check", "--reward", "rgvlm:nope", "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: no label run 'nope'")
