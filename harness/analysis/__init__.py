"""Analysis of stored measurements: summaries over repetitions (``stats``) and, later, regressions,
accuracy and roofline views. Controller side: numpy, scipy and pandas are available here."""

from .stats import Summary, measurements_frame, summarize, summary_frame

__all__ = ["Summary", "measurements_frame", "summarize", "summary_frame"]
