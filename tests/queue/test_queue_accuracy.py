"""An accuracy suite through the queue: `bench submit --suite vqa-quant` and a real `bench worker`
score the board's answers with lm-eval into the shared PostgreSQL store, as `bench run` does.

The board is a loopback sshd "board" running the reference backend, whose emulated answer policy
says "yes" to every question; the truth is the easy-VQA data itself (suites/tasks/easy_vqa/test.jsonl,
shipped with the easy-vqa package): a question scores 1 exactly when "yes" is its reference answer.
"""

from __future__ import annotations

import json

import pytest

from .conftest import LAB, Team

pytestmark = [pytest.mark.queue, pytest.mark.journey]

LIMIT = 24


def test_an_accuracy_suite_is_scored_by_the_worker_into_the_store(team: Team) -> None:
    pytest.importorskip("lm_eval", reason="the vqa-quant suite needs the [eval] extra")
    suite = team.root / "suites" / "vqa-quant.yaml"
    suite.write_text(suite.read_text().replace("  task: easy_vqa\n", "  task: easy_vqa\n  limit: %d\n" % LIMIT)
                     .replace("repetitions: 5", "repetitions: 1"))
    jobs = team.submit("--suite", "vqa-quant", "--devices", "ax650n")
    run_id = jobs[0]["run_id"]
    proc = team.bench("worker", "--lab", LAB, "--once", "--poll", "0.3", "--board-poll", "0.2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = team.jobs()[jobs[0]["job_id"]]
    assert job["state"] == "succeeded", job

    docs = [json.loads(line) for line in (team.root / "suites" / "tasks" / "easy_vqa" / "test.jsonl")
            .read_text().splitlines()[:LIMIT]]
    truth = sum(1 for d in docs if "yes" in d["answers"])
    assert 0 < truth < LIMIT  # the subset can tell a right answer from a wrong one
    rows = team.sql("SELECT data FROM accuracy_results WHERE run_id = %s AND device = 'ax650n'", (run_id,))
    assert len(rows) == 1
    result = json.loads(rows[0][0])
    assert (result["n"], result["correct"], result["n_failed"]) == (LIMIT, truth, 0)
    assert result["accuracy"] == pytest.approx(truth / LIMIT)
    assert "exact_match %.1f%% (n=%d)" % (100 * truth / LIMIT, LIMIT) in job["why"]
    samples = team.sql("SELECT count(*) FROM accuracy_samples WHERE run_id = %s", (run_id,))
    assert samples == [(LIMIT,)]
    # the run is finished only after its scores are in, so readers of a finished run see them
    assert team.sql("SELECT status FROM runs WHERE run_id = %s", (run_id,)) == [("finished",)]
    report = team.bench("report", run_id, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
