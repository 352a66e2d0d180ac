"""The whole loop in a browser: relabel with the noisy reference, run an experiment, compare methods."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rgvlm_core.jobs import list_jobs
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app


def _set_number(page, label: str, value: int) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")


def _wait_for_job_done(page, timeout_ms: int) -> None:  # type: ignore[no-untyped-def]
    page.get_by_text("done ·", exact=False).first.wait_for(timeout=timeout_ms)


# The waits below add up to less than this limit, so a slow job fails with Playwright's message naming
# what it waited for, not with pytest-timeout's stack dump. Training jobs run on one torch thread
# (rl.threads), so the experiment no longer slows 4-16x when other work shares the cores.
@pytest.mark.timeout(600)
def test_relabel_train_and_compare_without_a_terminal(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with streamlit_app(Path(sample_ws.root)) as url, chromium_page(1400, 1200) as page:
        # 1. relabel the sample with the noisy reference labeller (the stand-in for an imperfect LVLM)
        page.goto(f"{url}/prompts")
        page.get_by_role("tab", name="Relabel").click()
        slider = page.get_by_role("slider").first
        slider.wait_for(timeout=30_000)
        slider.focus()
        for _ in range(4):  # 0.00 -> 0.20 in steps of 0.05
            page.keyboard.press("ArrowRight")
        name = page.get_by_label("Run name (empty: derived from the settings)")
        name.fill("noisy")
        name.press("Enter")
        page.get_by_text("--noise 0.2", exact=False).first.wait_for(timeout=10_000)
        page.get_by_role("button", name="Start relabelling").click()
        _wait_for_job_done(page, 120_000)

        # 2. launch a small experiment from the Training page: sparse, RG-VLM and Sparse+RG-VLM on it
        page.goto(f"{url}/training")
        methods = page.get_by_role("combobox", name="Reward sources")
        methods.wait_for(timeout=30_000)
        for option in ("RG-VLM (noisy)", "Sparse+RG-VLM (noisy)"):
            methods.click()
            page.get_by_role("option", name=option, exact=True).click()
        page.keyboard.press("Escape")
        _set_number(page, "Seeds", 2)
        _set_number(page, "Steps", 40)
        _set_number(page, "Log every", 20)
        _set_number(page, "Evaluation episodes per length", 2)
        page.get_by_role("combobox", name="Instruction encoder").click()
        page.get_by_role("option", name=re.compile("^hash")).click()
        experiment = page.get_by_label("Experiment name", exact=True)
        experiment.fill("loop")
        experiment.press("Enter")
        page.get_by_text("--name loop", exact=False).first.wait_for(timeout=10_000)
        page.get_by_role("button", name="Launch experiment").click()
        page.get_by_text("Started job", exact=False).first.wait_for(timeout=10_000)
        _wait_for_job_done(page, 360_000)
        page.screenshot(path=str(ARTIFACTS / "loop-training.png"), full_page=True)

        # 3. the Compare page shows the paper's figure for the experiment's methods
        page.goto(f"{url}/compare?experiment=loop")
        legend = page.locator(".legendtext")
        legend.first.wait_for(timeout=60_000)
        page.wait_for_timeout(1_000)
        names = set(legend.evaluate_all("els => els.map(e => e.textContent)"))
        page.screenshot(path=str(ARTIFACTS / "loop-compare.png"), full_page=True)
    assert {
        "Sparse",
        "RG-VLM (noisy, cost)",
        "Sparse+RG-VLM (noisy, cost)",
        "Expert",
        "Behaviour cloning",
    } <= names
    jobs = sorted(list_jobs(sample_ws), key=lambda j: j.started_at)
    assert [j.args[0] for j in jobs] == ["label", "experiment"] and all(j.status == "done" for j in jobs)
    assert "--noise" in jobs[0].args and jobs[0].args[jobs[0].args.index("--noise") + 1] == "0.2"
    reader = sample_ws.reader()
    methods = reader.rows("SELECT DISTINCT method FROM experiment_runs WHERE experiment_id = 'loop'")
    reader.close()
    assert {m["method"] for m in methods} == {"sparse", "bc", "rgvlm:noisy", "sparse+rgvlm:noisy"}
