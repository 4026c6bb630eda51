"""Fuzz: the devices.yaml and suite loaders (harness/config). Property: a loaded inventory/suite or a
ConfigError (a BenchError: one line naming the file) - never another exception; 1 MB in <= 1 s of CPU;
alias bombs, self-references and deep nesting refused at once, in bounded memory."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config.devices import load_devices
from harness.config.suites import load_suite
from harness.config.yaml_lines import DEVICES_LIMITS, SMALL_CONFIG_LIMITS, ConfigError
from harness.errors import BenchError

from .adversarial import FUZZ_SETTINGS, MAX_SECONDS_PER_MB, mutated, shapes
from .conftest import timed

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
DEVICE_SAMPLES = [(REPO / "devices.yaml").read_text()]
SUITE_SAMPLES = [p.read_text() for p in sorted((REPO / "suites").glob("*.yaml"))]
LOADERS = {"load_devices": load_devices, "load_suite": load_suite}
MAX_VALUES = {"load_devices": DEVICES_LIMITS.max_values, "load_suite": SMALL_CONFIG_LIMITS.max_values}

# pieces of YAML syntax, spliced at random: anchors, aliases, merges, tags, flow and block
# collections, scalars YAML's resolvers turn into ints, floats, timestamps and nulls
_TOKENS = ["[", "]", "{", "}", ", ", ": ", "- ", "\n", "\n  ", "\n    - ", "&a ", "*a", "&b ", "*b", "<<: ",
           "!!int ", "!!binary ", "!!str ", "!!python/object ", "? ", "'", '"', "#", "|\n  ", ">\n  ", "~",
           "2024-13-45", "2001-12-14t21:59:43.10-05:00", "9" * 70, "0x1F", "0o17", "1e999", ".nan", "-.inf",
           "190:20:30", "devices", "name", "models", "workloads", "source", "workdir: ../x", "\t", "\x00",
           "\ufeff", "%YAML 1.1\n", "---\n", "...\n", "\u2028", "é"]
token_text = st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "media").mkdir()
        (Path(tmp) / "media" / "grace_hopper.jpg").write_bytes(b"\xff\xd8 not a real jpeg, only a file")
        yield Path(tmp)


def _load(name: str, folder: Path, text: str) -> object:
    path = folder / ("fuzz-%s.yaml" % name)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return LOADERS[name](path)
    except ConfigError as exc:
        assert isinstance(exc, BenchError) and exc.exit_code == 2
        assert str(exc).startswith(str(path)), str(exc)
        return exc


def _check(name: str, folder: Path, text: str, what: str = "") -> float:
    _, spent = timed(name, _load, name, folder, text, what=what or "%d chars" % len(text))
    return spent


@FUZZ_SETTINGS
@given(text=st.one_of(mutated(DEVICE_SAMPLES), token_text))
def test_devices_loader_any_text(workdir: Path, text: str) -> None:
    _check("load_devices", workdir, text)


@FUZZ_SETTINGS
@given(text=st.one_of(mutated(SUITE_SAMPLES), token_text))
def test_suite_loader_any_text(workdir: Path, text: str) -> None:
    _check("load_suite", workdir, text)


@settings(FUZZ_SETTINGS, max_examples=40)
@given(fanout=st.integers(2, 12), levels=st.integers(3, 12), flow=st.booleans())
def test_alias_bombs_refused_at_once(workdir: Path, fanout: int, levels: int, flow: bool) -> None:
    names = ["n%d" % i for i in range(levels)]
    lines = ["%s: &%s [%s]" % (names[0], names[0], ", ".join(['"lol"'] * fanout))]
    for prev, name in zip(names, names[1:]):
        refs = ["*" + prev] * fanout
        lines.append("%s: &%s [%s]" % (name, name, ", ".join(refs)) if flow
                     else "%s: &%s\n%s" % (name, name, "\n".join("  - " + r for r in refs)))
    text = "\n".join(lines) + "\n"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in LOADERS:
        result, spent = timed(name, _load, name, workdir, text, what="alias bomb %d^%d" % (fanout, levels))
        if fanout ** levels > 2 * MAX_VALUES[name]:
            assert isinstance(result, ConfigError) and "(aliases expanded)" in str(result)
        assert spent < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # < 100 MB grown


@settings(FUZZ_SETTINGS, max_examples=30)
@given(depth=st.integers(65, 20_000), opener=st.sampled_from(["[", "{a: ", "- ", "block"]))
def test_deep_nesting_refused_at_once(workdir: Path, depth: int, opener: str) -> None:
    if opener == "block":
        text = "".join("%sk%d:\n" % (" " * i, i) for i in range(min(depth, 3000)))
    else:
        text = opener * depth
    for name in LOADERS:
        result, spent = timed(name, _load, name, workdir, text, what="nesting %r x %d" % (opener, depth))
        assert isinstance(result, ConfigError)
        assert spent < 1.0


def test_self_references_and_issue_reproducers(workdir: Path) -> None:
    cases = {
        "[ x 494": "[" * 494,
        "self alias": "a: &a [*a]\n",
        "self alias in a mapping": "devices: &d\n  - {x: *d}\n",
        "merge of itself": "a: &a {<<: *a}\n",
        "4300-digit int": "port: " + "9" * 4300 + "\n",
        "bad timestamp": "devices: 2024-13-45\n",
        "unhashable key": "? [a, b]\n: c\n",
        "python tag": "a: !!python/object:os.system ls\n",
        "NUL": "devices:\x00\n",
    }
    for what, text in cases.items():
        for name in LOADERS:
            result, spent = timed(name, _load, name, workdir, text, what=what)
            assert isinstance(result, ConfigError), (what, result)
            assert spent < 1.0


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_one_megabyte_shapes_in_linear_time(workdir: Path, name: str) -> None:
    sample = (DEVICE_SAMPLES if name == "load_devices" else SUITE_SAMPLES)[0].splitlines()[3]
    extra = [("1 MB of flow sequence", "a: [" + "1, " * 333_000 + "]\n"),
             ("1 MB of keys", "".join("k%d: 1\n" % i for i in range(120_000))),
             ("1 MB quoted string", 'a: "' + "\\u00e9" * 170_000 + '"\n'),
             ("1 MB of anchors", "".join("k%d: &a%d 1\n" % (i, i) for i in range(80_000))),
             ("just over the size cap", "# " + "x" * (1 << 20))]
    for what, text in shapes(sample) + extra:
        spent = _check(name, workdir, text, what=what)
        assert spent <= MAX_SECONDS_PER_MB * max(1.0, len(text) / 1e6), (what, spent)
