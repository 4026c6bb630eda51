"""index.html: one self-contained file (inline CSS, PNGs as data: URIs, no external URL).

Rendered by jinja2 with autoescape on: every string that came from a board, a model or a config
(device names, prompts, model output, errors) is escaped, never trusted as markup.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from ..analysis.noise import NOISE_NOTE
from .plots import Plot, power_plots
from .tables import (
    DEFINITIONS_INTRO,
    ENERGY_NOTE,
    METRIC_DEFINITIONS,
    POWER_PHASES,
    SUMMARY_METHOD_NOTE,
    ReportData,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
_CODE = re.compile(r"`([^`]+)`")


def codespans(text: str) -> Markup:
    """Escape ``text``, then turn `backtick` spans into <code> elements."""
    parts = _CODE.split(str(text))
    out = []
    for index, part in enumerate(parts):
        out.append(Markup("<code>%s</code>") % part if index % 2 else escape(part))
    return Markup("").join(out)


@dataclass
class _Figure:
    title: str
    uri: Optional[str]
    caption: str
    notes: List[str]
    details: List[str]


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters["codespans"] = codespans
    return env


def _figure(plot: Plot) -> _Figure:
    return _Figure(plot.title, png_data_uri(plot.png) if plot.png else None, plot.caption, plot.notes, plot.details)


def render_html(data: ReportData, plots: List[Plot]) -> str:
    """The report page as one string.

    The power-over-time figures are drawn here from ``data.telemetry`` rather than passed in with
    ``plots``: only the HTML embeds images (summary.md lists the same traces as text), and the
    caller's ``all_plots`` sees the measurements frame, which does not carry telemetry.
    """
    template = environment().get_template(TEMPLATE)
    return template.render(
        run=data.run,
        data=data,
        tel=data.telemetry,
        power_figures=[_figure(p) for p in power_plots(data.telemetry.power)],
        power_phases=POWER_PHASES,
        energy_note=ENERGY_NOTE,
        plots=[_figure(p) for p in plots],
        definitions_intro=DEFINITIONS_INTRO,
        definitions=METRIC_DEFINITIONS,
        method_note=SUMMARY_METHOD_NOTE,
        noise_note=NOISE_NOTE,
    )
