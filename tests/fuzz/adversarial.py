"""Inputs every reader gets: the issue's reproducers and the size/shape limits, plus hypothesis strategies
that mutate real samples."""

from __future__ import annotations

from typing import Callable, List, Tuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: CPU seconds one reader may spend on 1 MB of text (the issue's bound)
MAX_SECONDS_PER_MB = 1.0

FUZZ_SETTINGS = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: for readers driven through a fake sysfs tree (file writes cost more per example)
FS_SETTINGS = settings(max_examples=50, deadline=None, database=None, derandomize=True,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NON_ASCII_DIGITS = "\u0663\u00b2\u0969\uff13\U0001d7d9"  # Arabic-Indic 3, superscript 2, Devanagari 3, fullwidth 3, math 1
DIGITS_400 = "9" * 400


def shapes(sample: str) -> List[Tuple[str, str]]:
    """(name, text) of the fixed adversarial inputs, built around one real ``sample`` line."""
    one_mb = (sample + "\n") * (1_000_000 // (len(sample) + 1) + 1)
    return [
        ("1 MB of real lines", one_mb[:1_000_000]),
        ("1 MB single line of the sample repeated", (sample + " ") * (1_000_000 // (len(sample) + 1))),
        ("40,000-char line of one letter", "a" * 40_000),
        ("40,000-char line of digits", "7" * 40_000),
        ("40,000 spaces", " " * 40_000),
        ("40,000 newlines", "\n" * 40_000),
        ("40,000 carriage returns", "\r" * 40_000),
        ("sample with a 400-digit number", _replace_first_number(sample, DIGITS_400)),
        ("sample with non-ASCII digits", _replace_first_number(sample, NON_ASCII_DIGITS)),
        ("400-digit number alone", DIGITS_400),
        ("non-ASCII digits alone", NON_ASCII_DIGITS),
        ("NUL bytes and invalid surrogates", "\x00" * 100 + "\udcff" * 10),
        ("1 MB of the sample's first word repeated", (sample.split()[0] + " ") * (1_000_000 // (len(sample.split()[0]) + 1))),
        ("1 MB of the sample's first 20 chars repeated without spaces", (sample[:20].replace(" ", "") * 60_000)[:1_000_000]),
    ]


def _replace_first_number(text: str, by: str) -> str:
    for i, ch in enumerate(text):
        if ch.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            return text[:i] + by + text[j:]
    return text + " " + by


_ALPHABET = st.sampled_from(list("0123456789 \t\r\n%@/[],:=()|.-_mWCKBMGxX") + list(NON_ASCII_DIGITS)
                            + ["\u00e9", "\u2588", "\x1b[0m", "\x1b[31m", "\u00af", "\ufffd", "\x00"])


def mutated(samples: List[str]) -> st.SearchStrategy:
    """A real sample with random edits: characters inserted, deleted, replaced, pieces duplicated,
    or two samples spliced; or fully random text."""

    def edit(base: str, ops: List[Tuple[int, int, str, int]]) -> str:
        text = base
        for kind, pos, piece, count in ops:
            if not text:
                text = piece
                continue
            pos %= len(text) + 1
            if kind == 0:
                text = text[:pos] + piece + text[pos:]
            elif kind == 1:
                text = text[:pos] + text[pos + count % 40:]
            elif kind == 2:
                text = text[:pos] + piece + text[pos + len(piece):]
            else:  # duplicate a slice
                end = min(len(text), pos + count % 200)
                text = text[:end] + text[pos:end] * (1 + count % 5) + text[end:]
        return text

    op = st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.lists(_ALPHABET, min_size=1, max_size=8).map("".join),
                   st.integers(0, 1000))
    from_sample = st.builds(edit, st.sampled_from(samples), st.lists(op, max_size=12))
    spliced = st.builds(lambda a, b, cut: a[:cut % (len(a) + 1)] + b[cut % (len(b) + 1):],
                        st.sampled_from(samples), st.sampled_from(samples), st.integers(0, 10_000))
    random_text = st.text(max_size=400)
    return st.one_of(from_sample, from_sample, spliced, random_text)


def finite_or_none(value: object) -> bool:
    import math

    if value is None or isinstance(value, (str, bool)):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return True


def check_linear(run: Callable[[str], object], sample: str, timed_run: Callable[[str, str], float]) -> None:
    """Every fixed shape within MAX_SECONDS_PER_MB (scaled to 1 MB: shorter inputs get the same bound)."""
    for name, text in shapes(sample):
        spent = timed_run(text, name)
        assert spent <= MAX_SECONDS_PER_MB, "%s took %.2f s CPU" % (name, spent)
