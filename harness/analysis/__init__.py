"""Analysis of stored measurements: summaries over repetitions (``stats``), regressions, history,
noise, procurement. Controller side: numpy, scipy and pandas are available here.

The names below are imported on first use, so `import harness.analysis.noise` (which the CLI does
for every command) does not pay for scipy and pandas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Summary", "measurements_frame", "summarize", "summary_frame"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import stats

        return getattr(stats, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
