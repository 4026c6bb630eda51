"""What `bench run` shows while it runs and when it ends, at any width and through a pipe.

On a terminal the boards' progress is a live table redrawn a few times a second (each update only
records the board's new state, so an update costs the same for 1 board or 10,000); through a pipe
(a CI log) every change of state, repetition or message is one line, and nothing is redrawn.
"""

from __future__ import annotations

import datetime
import threading
from typing import Dict, List, Optional, Sequence

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from ..analysis.noise import NOISY_CV, NOT_A_BASIS, is_noisy
from ..terminal import TerminalTable, num_col, say, show, text_col

# the live view lists at most this many boards: the busiest first, then a count of the rest by state
LIVE_ROWS = 30
LIVE_NOTE = "last TTFT / tok/s: the latest repetition (the summary at the end gives medians)"


def _rep(progress: object) -> str:
    answered = getattr(progress, "answered", "")
    if answered:
        return "answered " + answered
    if getattr(progress, "repetition", None) is None:
        return ""
    return "%d/%s" % (progress.repetition + 1, progress.total or "?")


def _num(value: Optional[float], digits: int) -> str:
    return "" if value is None else ("%." + str(digits) + "f") % value


def progress_table(rows: Sequence[object], width: int) -> RenderableType:
    """The live view: full columns when they fit, fewer when they do not, never split cells."""
    shown = sorted(rows, key=lambda p: (p.state in ("finished", "failed"), p.device))[:LIVE_ROWS]
    full = TerminalTable(["device", "state", "workload", "variant", "rep", num_col("last TTFT ms"),
                          num_col("last tok/s"), num_col("stored"), num_col("errors"), text_col("message")],
                         title="edge-VLM bench", caption=LIVE_NOTE)
    for p in shown:
        full.add_row(p.device, p.state, p.workload, p.variant, _rep(p), _num(p.last_ttft_ms, 1),
                     _num(p.last_decode_tps, 2), str(p.stored), str(p.errors), p.message)
    table = full
    if full.unsplittable_width() > width:
        table = TerminalTable(["device", "state", "rep", num_col("last TTFT ms"), text_col("message")],
                              title="edge-VLM bench", caption=LIVE_NOTE)
        for p in shown:
            table.add_row(p.device, p.state, _rep(p), _num(p.last_ttft_ms, 1), p.message)
    body: RenderableType = table.table() if table.unsplittable_width() <= width else table.records()
    hidden = len(rows) - len(shown)
    if hidden <= 0:
        return body
    states: Dict[str, int] = {}
    for p in rows:
        states[p.state] = states.get(p.state, 0) + 1
    more = Text("%d more board(s); all boards by state: %s" % (
        hidden, ", ".join("%s %d" % item for item in sorted(states.items()))))
    return Group(body, more)


class ProgressView:
    """Follows `DeviceProgress` updates from the controller's threads (a context manager)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: Dict[str, object] = {}
        self.lock = threading.Lock()
        self.live: Optional[Live] = None
        self.last_line: Dict[str, tuple] = {}
        self.last_message: Dict[str, str] = {}

    def __enter__(self) -> "ProgressView":
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False,
                             get_renderable=self._render)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.console.print()  # the live table ends with a newline before what follows

    def _render(self) -> RenderableType:
        with self.lock:
            rows = list(self.rows.values())
        return progress_table(rows, self.console.width)

    def update(self, progress: object) -> None:
        with self.lock:
            self.rows[progress.device] = progress
        if self.live is None:
            self._line(progress)

    def _line(self, p: object) -> None:
        key = (p.state, p.workload, p.variant, _rep(p), p.message, p.errors)
        if self.last_line.get(p.device) == key:
            return
        self.last_line[p.device] = key
        parts = [datetime.datetime.now().strftime("%H:%M:%S"), p.device, p.state]
        parts += [x for x in (p.workload, p.variant, _rep(p)) if x]
        if p.last_ttft_ms is not None:
            parts.append("last TTFT %.1f ms" % p.last_ttft_ms)
        if p.last_decode_tps is not None:
            parts.append("%.2f tok/s" % p.last_decode_tps)
        if p.errors:
            parts.append("%d error(s)" % p.errors)
        if p.message and p.message != self.last_message.get(p.device):
            parts.append("- " + p.message)
        self.last_message[p.device] = p.message
        self.console.print(Text("  ".join(parts)), soft_wrap=True)


def outcome_table(run_id: str, outcomes: Sequence[object]) -> TerminalTable:
    table = TerminalTable(["device", "state", num_col("stored"), num_col("failed"), text_col("error")],
                          title="outcome of run %s" % run_id)
    for o in outcomes:
        table.add_row(o.device, o.state, str(o.stored), str(o.errors), o.error or "")
    return table


def medians_table(summary: List[dict]) -> Optional[TerminalTable]:
    if not summary:
        return None
    table = TerminalTable(["device", "workload", "variant", num_col("TTFT ms"), num_col("decode tok/s"),
                           num_col("e2e ms"), num_col("n"), text_col("noise")],
                          title="medians over measured repetitions (warm-up excluded)")
    index = {(s["device"], s["workload"], s["variant"], s["metric"]): s for s in summary}
    for key in sorted({(s["device"], s["workload"], s["variant"]) for s in summary}):
        def med(metric: str) -> str:
            item = index.get(key + (metric,))
            return "%.2f" % item["median"] if item and item.get("median") is not None else "-"
        n = index.get(key + ("ttft_ms",), {}).get("n", 0)
        table.add_row(str(key[0]), str(key[1]), str(key[2]), med("ttft_ms"), med("decode_tps"), med("e2e_ms"),
                      str(n), noise_cell([index.get(key + (m,)) or {} for m in ("ttft_ms", "decode_tps", "e2e_ms")]))
    return table


def noise_cell(items: Sequence[dict]) -> str:
    """"noisy (CV 46%)" past the CV threshold, "3/5 disturbed" when other work disturbed
    repetitions (analysis/noise.py), "ok" otherwise, "-" without an interference record."""
    cvs = [item.get("cv") for item in items if item.get("cv") is not None]
    parts = []
    if any(is_noisy(cv) for cv in cvs):
        parts.append("noisy (CV %.0f%%)" % (100 * max(cvs)))
    first = items[0] if items else {}
    if first.get("n_disturbed"):
        parts.append("%d/%d disturbed" % (first["n_disturbed"], first.get("n_interference_checked", 0)))
    if parts:
        return ", ".join(parts)
    return "ok" if first.get("n_interference_checked") else "-"


NOISE_FOOTNOTE = ("noise: noisy = CV over %.0f%%, %s; disturbed = other processes used >= 10%% of the CPU "
                  "(or steal >= 5%%) during the repetition; details in the report" % (100 * NOISY_CV, NOT_A_BASIS))


def accuracy_table(task: str, metric: str, results: List[dict]) -> TerminalTable:
    table = TerminalTable(["device", "variant", num_col("accuracy"), num_col("95% CI"), num_col("n")],
                          title="accuracy (%s, %s)" % (task, metric))
    for item in results:
        acc = item.get("accuracy")
        ci = (item.get("ci_low"), item.get("ci_high"))
        table.add_row(str(item.get("device")), str(item.get("variant")), "%.3f" % acc if acc is not None else "-",
                      "%.3f-%.3f" % ci if None not in ci else "-", str(item.get("n", "")))
    return table


def print_end(console: Console, run_id: str, outcomes: Sequence[object], summary: List[dict],
              failed_messages: Sequence[str]) -> None:
    show(console, outcome_table(run_id, outcomes))
    for message in list(failed_messages)[:10]:
        say(console, "  failed: " + message)
    medians = medians_table(summary)
    if medians is not None:
        show(console, medians)
        say(console, NOISE_FOOTNOTE)
