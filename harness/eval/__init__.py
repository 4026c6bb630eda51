"""Accuracy through lm-eval, generated on the board: tasks, the board LM, scoring and reports.

Controller side only (lm-eval, statsmodels, datasets: the `eval` extra). The board side is
``harness/runner/accuracy.py``, standard library only.
"""
