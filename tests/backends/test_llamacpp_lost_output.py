"""Runs whose output llama-mtmd-cli lost at exit are re-run, then reported; never an empty answer.

The real CLI prints everything, tokens included, through llama.cpp's log thread, whose queue is
not flushed at exit (ggml-org/llama.cpp issue #22142; PR #25504 flushes it for one case and says
why it is not fixed in general). With ``-t 2`` on this 2-CPU machine the thread got no CPU while
the model ran: 18 of 30 runs of the canary F16 GGUF exited with code 0 after the "experimental
CLI" warning, with neither the answer nor the perf lines (strace: the log thread's last write
came after the main thread's exit_group); with ``-t 1``, 0 of 30. Before this was handled, each
such answer was scored as an empty, wrong answer: the canary's Q8_0 "agreed" with F16 on 42 of
60 questions in CI, and on 60 of 60 once lost answers were re-run.

The stand-in CLI (fixtures/llamacpp_mtmd_cli_standin.py, ``lose_output_runs``) reproduces that
ending so the backend's handling can be checked deterministically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest

from harness.runner.backends.base import BackendError
from harness.runner.protocol import GenerationSpec

from .fixtures.runner_spec import inputs
from .test_llamacpp import FAST, MODEL_DIR, N_TOKENS, _backend, spy_argvs, standin_cli


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _load_info(options: Dict[str, Any]) -> Any:
    backend = _backend(options, MODEL_DIR)
    try:
        return backend.load()
    finally:
        backend.close()


def test_a_run_that_lost_its_output_is_rerun_and_says_so(tmp_path: Path) -> None:
    backend = _backend(standin_cli(tmp_path, lose_output_runs=2), MODEL_DIR)
    backend.load()
    try:
        raw = backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
    finally:
        backend.close()
    # the figures are the third run's, complete; the two lost runs are named in the warnings
    assert raw.n_output_tokens == N_TOKENS and len(raw.token_times) == N_TOKENS
    assert raw.output_text == "".join("tok%d " % i for i in range(N_TOKENS))
    assert any(w.startswith("re-run 2 time(s): llama-mtmd-cli exited with its output lost before the perf print "
                            "(llama.cpp #22142)") for w in raw.warnings), raw.warnings
    assert backend.lost_output_reruns == 2


def test_a_lost_answer_is_rerun_never_scored_as_empty(tmp_path: Path) -> None:
    backend = _backend(standin_cli(tmp_path, lose_output_runs=3, default_answer="circle", **FAST), MODEL_DIR)
    backend.load()
    try:
        assert backend.answer(inputs("image"), "Which shape?", 8) == "circle"
        assert backend.lost_output_reruns == 3
        assert backend.answer(inputs("image"), "Which shape?", 8) == "circle"  # the next run is whole at once
        assert backend.lost_output_reruns == 3
    finally:
        backend.close()


@pytest.mark.parametrize("what", ["run", "answer"])
def test_output_lost_on_every_try_is_an_error_naming_the_cause(tmp_path: Path, what: str) -> None:
    options = dict(standin_cli(tmp_path, lose_output_runs=100, default_answer="circle", **FAST),
                   lost_output_retries=2)
    backend = _backend(options, MODEL_DIR)
    backend.load()
    try:
        with pytest.raises(BackendError) as caught:
            if what == "run":
                backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
            else:
                backend.answer(inputs("image"), "Which shape?", 8)
    finally:
        backend.close()
    message = str(caught.value)
    assert message.startswith("llamacpp backend: llama-mtmd-cli exited with code 0 but its output ended before "
                              "the perf print in 3 of 3 runs (llama.cpp's log thread loses what it has not printed "
                              "at exit, llama.cpp #22142: use fewer threads than CPUs)"), message
    assert "For normal use cases, please use the standard llama-cli" in message  # its last output
    assert (tmp_path / "standin.json.runs").read_text() == "3"


def test_no_retries_when_asked_for_none(tmp_path: Path) -> None:
    backend = _backend(dict(standin_cli(tmp_path, lose_output_runs=1, **FAST), lost_output_retries=0), MODEL_DIR)
    backend.load()
    try:
        with pytest.raises(BackendError, match="in 1 of 1 runs"):
            backend.run(inputs("image"), GenerationSpec(output_tokens=2))
        assert backend.run(inputs("image"), GenerationSpec(output_tokens=2)).n_output_tokens == 2
    finally:
        backend.close()


def test_default_threads_leave_the_log_thread_a_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_argvs(monkeypatch)
    cpus = _usable_cpus()
    backend = _backend(standin_cli(tmp_path, **FAST), MODEL_DIR)
    info = backend.load()
    try:
        backend.run(inputs("image"), GenerationSpec(output_tokens=2))
    finally:
        backend.close()
    assert seen[0][seen[0].index("-t") + 1] == str(max(1, cpus - 1))
    assert info.extra["threads"] == max(1, cpus - 1)
    assert info.extra["threads_note"] == "default: %d usable CPUs - 1" % cpus

    every_cpu = _load_info(dict(standin_cli(tmp_path, **FAST), threads=cpus))
    assert every_cpu.extra["threads"] == cpus
    assert every_cpu.extra["threads_note"].startswith("set to %d on %d usable CPUs: llama.cpp's log thread gets "
                                                      "no CPU while the model runs" % (cpus, cpus))
    assert _load_info(dict(standin_cli(tmp_path, **FAST), threads=1)).extra["threads_note"] == (
        "set" if cpus > 1 else every_cpu.extra["threads_note"])
    with pytest.raises(BackendError, match="lost_output_retries must be a non-negative integer"):
        _backend(dict(standin_cli(tmp_path), lost_output_retries=-1), MODEL_DIR)
