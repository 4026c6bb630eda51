"""The canary's OpenVINO IR and its NNCF variants (`bench models quantize --method nncf-int8 /
nncf-int4`) answer the same easy-VQA questions through the runner's accuracy path
(openvino_genai backend), as a board would.

Measured here on the first 40 questions: 33/40 for fp32, nncf-int8 and nncf-int4, every answer
identical to fp32's; on the whole 500-question subset 432 (fp32), 435 (int8, McNemar p 0.45),
432 (int4, p 1.0). int8 must stay >= 80%; int4 is held to what was measured with room to spare:
every question answered (status ok) and >= 75% (30/40), so a collapse fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

pytest.importorskip("lm_eval", reason="accuracy tests need the [eval] extra: bash scripts/setup-venv.sh local,dev,eval")

from harness.runner.protocol import BackendSpec, ModelSpec

from .helpers import subset_rows
from .test_runner_accuracy_backends import CANARY_IR, _answers, needs_openvino

LIMIT = 40


@needs_openvino
@pytest.mark.slow
def test_nncf_variants_answer_easy_vqa_like_fp32(tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    from harness.eval.stats import mcnemar_paired
    from harness.eval.vqa import exact_match
    from harness.models.quantize import quantize_variants

    made = {r.method: r.path for r in quantize_variants(CANARY_IR, ["nncf-int8", "nncf-int4"], tmp_path / "models")}
    rows = subset_rows(LIMIT)
    answers: Dict[str, List[str]] = {}
    scores: Dict[str, Dict[str, float]] = {}
    for variant, path in (("fp32", CANARY_IR), ("nncf-int8", made["nncf-int8"]), ("nncf-int4", made["nncf-int4"])):
        got = _answers(tmp_path / ("run-" + variant), BackendSpec("openvino_genai", {"device": "CPU"}),
                       ModelSpec(variant, str(path)), LIMIT)
        assert [a.status for a in got] == ["ok"] * LIMIT, (variant, [(a.status, a.error) for a in got])
        assert [a.request_id for a in got] == ["easy_vqa/%d" % i for i in range(LIMIT)]
        assert all(a.backend == "openvino_genai" and not a.emulated for a in got)
        answers[variant] = [a.answer for a in got]
        scores[variant] = {a.request_id: float(exact_match(a.answer, r["answers"])) for a, r in zip(got, rows)}

    accuracy = {v: sum(s.values()) / LIMIT for v, s in scores.items()}
    assert accuracy["fp32"] >= 0.8, accuracy
    assert accuracy["nncf-int8"] >= 0.8, (accuracy, list(zip(answers["nncf-int8"], answers["fp32"])))
    assert accuracy["nncf-int4"] >= 0.75, (accuracy, list(zip(answers["nncf-int4"], answers["fp32"])))
    # int8 weights barely move this model: (nearly) the same answers, no significant change
    same = sum(a == b for a, b in zip(answers["nncf-int8"], answers["fp32"]))
    assert same >= LIMIT - 2, list(zip(answers["nncf-int8"], answers["fp32"]))
    paired = mcnemar_paired(scores["fp32"], scores["nncf-int8"])
    assert paired.n_pairs == LIMIT and paired.p_value is not None and paired.p_value > 0.05
