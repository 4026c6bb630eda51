"""Caps by kind of configuration file (issue 14): a devices file may list tens of thousands of boards,
a suite stays small; a file just past its cap is refused with one line naming it. The one-pass
builder of harness/config/yaml_lines.py gives PyYAML's data and lines, and an error in a late device
of a 10,000-device file still names its line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.inventory_scale import device_entry, devices_yaml
from harness.config import yaml_lines
from harness.config.devices import load_devices
from harness.config.suites import load_suite
from harness.config.yaml_lines import DEVICES_LIMITS, SMALL_CONFIG_LIMITS, ConfigError, ConfigLimits, load_yaml


def write(tmp_path: Path, text: str, name: str = "devices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def walked(text: str) -> dict:
    """Every key path's line, from walking PyYAML's whole node graph (the map before issue 14)."""
    lines: dict = {}
    yaml_lines._walk(yaml.compose(text, Loader=yaml.SafeLoader), (), lines)
    return lines


def aliased_values(total: int) -> str:
    """A small YAML file that expands to exactly ``total`` values through aliases (total >= 2007)."""
    # root mapping, keys a b c, the anchored list (itself + 999 values), b's and c's lists
    fixed = 1 + 3 + 1000 + 1 + 1
    copies, padding = divmod(total - fixed, 1000)
    return "a: &a [%s]\nb: [%s]\nc: [%s]\n" % (", ".join(["1"] * 999), ", ".join(["*a"] * copies),
                                              ", ".join(["2"] * padding))


@pytest.mark.parametrize("limits", [DEVICES_LIMITS, SMALL_CONFIG_LIMITS], ids=["devices", "small"])
def test_values_up_to_the_cap_load_and_one_more_is_refused(tmp_path: Path, limits: ConfigLimits) -> None:
    data, _ = load_yaml(write(tmp_path, aliased_values(limits.max_values)), limits)
    assert len(data["b"]) * 1000 + len(data["c"]) + 1006 == limits.max_values
    path = write(tmp_path, aliased_values(limits.max_values + 1))
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, limits)
    assert str(caught.value) == ("%s:3: more than %d values (aliases expanded): too large for a %s (an alias "
                                 "bomb?)" % (path, limits.max_values, limits.kind))


def test_a_devices_file_up_to_its_byte_cap_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    device = devices_yaml(1)
    padding = DEVICES_LIMITS.max_bytes - len(device) - 3
    path = write(tmp_path, "# %s\n%s" % ("x" * padding, device))
    assert path.stat().st_size == DEVICES_LIMITS.max_bytes
    assert load_devices(path).names() == ["ax650n-00000"]
    path = write(tmp_path, "# %s\n%s" % ("x" * (padding + 1), device))
    with pytest.raises(ConfigError) as caught:
        load_devices(path)
    assert str(caught.value) == "%s: larger than 33554432 bytes; this is not a devices file" % path


def test_a_suite_keeps_the_small_cap(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * SMALL_CONFIG_LIMITS.max_bytes, "suite.yaml")
    with pytest.raises(ConfigError) as caught:
        load_suite(path)
    assert str(caught.value) == "%s: larger than 1048576 bytes; this is not a configuration file" % path


def test_the_devices_caps_fit_50000_realistic_devices() -> None:
    entry = device_entry(12345)
    values = sum(1 for event in yaml.parse("devices:\n" + entry)
                 if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent))) - 2  # less root, key
    assert 50_000 * len(entry.encode()) <= DEVICES_LIMITS.max_bytes
    assert 50_000 * values <= DEVICES_LIMITS.max_values
    # and not more than twice that: a cap is a bound on what a hostile file may cost
    assert DEVICES_LIMITS.max_values < 2 * 50_000 * values


def test_a_bad_field_in_a_late_device_of_10000_names_its_line(tmp_path: Path) -> None:
    text = devices_yaml(10_000)
    lines = text.splitlines()
    port_line = lines.index("  - name: %s" % "orin-nano-09876") + 4  # name type host port
    assert lines[port_line - 1] == "    port: 22"
    lines[port_line - 1] = "    port: 70000"
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_devices(path)
    assert str(caught.value) == ("%s:%d: devices.9876.port: Input should be less than or equal to 65535"
                                 % (path, port_line))


def test_an_unknown_field_deep_in_a_late_device_names_its_line(tmp_path: Path) -> None:
    text = devices_yaml(10_000).replace("        quantization: int4\n    price_usd: 499.0\n    timeouts: "
                                        "{connect_s: 10, command_s: 120}\n    description: \"rack 249 slot 39\"",
                                        "        quantization: int4\n        colour: red\n    price_usd: 499.0\n"
                                        "    timeouts: {connect_s: 10, command_s: 120}\n"
                                        "    description: \"rack 249 slot 39\"")
    line = text.splitlines().index("        colour: red") + 1
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_devices(path)
    assert str(caught.value) == "%s:%d: devices.9999.models.1.colour: unknown field" % (path, line)
    assert load_devices(write(tmp_path, devices_yaml(10_000))).where("rtx-pc-09999") == "%s:%d" % (
        path, devices_yaml(10_000).splitlines().index("  - name: rtx-pc-09999") + 1)


# Documents the one-pass builder builds itself, and ones it leaves to PyYAML (merge keys, tags on
# collections, collections as keys): the data is PyYAML's either way.
SAME_AS_PYYAML = [
    "a: 1\nb: [x, 'y', \"z\", 2.5, true, null, ~, 0x1F, 0o17, 1e3, .nan, -.inf, 2001-12-14]\n",
    "a: &x {k: [1, 2]}\nb: *x\nc: [*x, *x]\nd: &s text\ne: *s\n",
    "base: &base {port: 22, user: bench}\ndev: {<<: *base, port: 2222}\n",
    "a: !!str 12\nb: !!int '7'\nc: !!binary aGVsbG8=\nd: !!float 1\n",
    "a: !!set {x, y}\nb: !!omap [{p: 1}, {q: 2}]\n",
    "a: 1\na: 2\n1: one\nnull: none\ntrue: yes\n",
    "- |\n  block\n  text\n- >\n  folded\n  text\n- ''\n-\n",
    "",
    "# only a comment\n",
    "--- [1, 2]\n...\n",
    "= : v\n",
]


@pytest.mark.parametrize("text", SAME_AS_PYYAML)
def test_the_data_is_pyyamls(tmp_path: Path, text: str) -> None:
    data, lines = load_yaml(write(tmp_path, text))
    assert data == yaml.safe_load(text) or (data != data and repr(data) == repr(yaml.safe_load(text)))
    if text.strip() and not text.startswith("#"):
        assert lines[()] == 1


def test_aliases_share_one_object_as_pyyaml_does(tmp_path: Path) -> None:
    data, _ = load_yaml(write(tmp_path, "a: &x {k: [1]}\nb: *x\n"))
    assert data["a"] is data["b"]


@pytest.mark.parametrize("text, message", [
    ("a: &x 1\nb: &x 2\n", ":2: invalid YAML: second occurrence"),
    ("a: *nowhere\n", ":1: invalid YAML: found undefined alias"),
    ("--- 1\n--- 2\n", ":2: invalid YAML: but found another document"),
    ("a: !!python/object:os.system x\n", ":1: invalid YAML: could not determine a constructor"),
    ("a: [1, 2\n", "invalid YAML: did not find expected ',' or ']'"),
    ("? [1, 2]\n: pair\n", ":1: invalid YAML: found unhashable key"),
])
def test_yaml_errors_are_one_line_with_pyyamls_words(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text, complete", [
    (devices_yaml(30).replace("devices:\n", "known_hosts: kh\ndevices:\n"), True),
    ("1: one\n'q': {2: x, &k key: y}\nr: [*k, [1]]\ns: {*k : z}\n", True),
    # b's children are a's: recorded under a only, so a miss there sends the question to the node graph
    ("a: &x {k: [1, {m: 2}]}\nb: *x\nc: [*x, {d: 1, d: 2}]\nd:\n  - - deep\n    - er\n", False),
], ids=["devices", "keys", "aliases"])
def test_lines_are_those_of_walking_the_whole_file(tmp_path: Path, text: str, complete: bool) -> None:
    _, lines = load_yaml(write(tmp_path, text), DEVICES_LIMITS)
    recorded = dict(lines._recorded)  # before any deeper question
    full = walked(text)
    shallow = {loc: line for loc, line in full.items() if len(loc) <= yaml_lines.EAGER_LINE_DEPTH}
    assert lines._complete is complete
    if complete:
        assert recorded == shallow
    else:
        assert recorded.items() < shallow.items()
    # every path, the recorded ones and those followed down the node graph on demand
    assert all(lines[loc] == line for loc, line in full.items())
    assert ("nowhere",) not in lines and lines.get(("devices", 10_000), 0) == 0
    assert dict(lines) == full


def test_a_late_device_line_is_recorded_without_composing_again(tmp_path: Path) -> None:
    text = devices_yaml(10_000)
    _, lines = load_yaml(write(tmp_path, text), DEVICES_LIMITS)
    assert lines[("devices", 9_876)] == text.splitlines().index("  - name: orin-nano-09876") + 1
    assert lines._root is yaml_lines._NOT_YET  # the file was parsed once
