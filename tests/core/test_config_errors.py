"""Configuration errors name the file, the line and the field, and list what is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.devices import load_devices
from harness.config.suites import find_suite, load_suite
from harness.config.yaml_lines import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
devices:
  - name: emu
    type: local
    transport: local
    backend: reference
    tags: [cpu]
    models:
      - variant: emulated
        path: .
  - name: nano
    type: orin-nano
    host: 127.0.0.2
    tags: [jetson]
    backend: reference
    models:
      - variant: fp16
        path: /models/x
"""


def write(tmp_path: Path, text: str, name: str = "devices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_devices_file_is_valid() -> None:
    inventory = load_devices(REPO / "devices.yaml")
    types = {d.type for d in inventory.devices}
    assert types == {"local", "ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc"}


def test_bad_yaml_syntax_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  - name: a\n    type: [local\n")
    with pytest.raises(ConfigError) as info:
        load_devices(path)
    assert str(info.value).startswith("%s:" % path)
    assert "invalid YAML" in str(info.value)


def test_wrong_field_value_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("host: 127.0.0.2", "host: 127.0.0.2\n    port: seventy"))
    with pytest.raises(ConfigError) as info:
        load_devices(path)
    assert "%s:13: devices.1.port:" % path in str(info.value)


def test_unknown_field_and_board_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("type: orin-nano", "type: orin-mega").replace("tags: [cpu]", "tagz: [cpu]"))
    message = str(pytest.raises(ConfigError, load_devices, path).value)
    assert "%s:6: devices.0.tagz: unknown field" % path in message
    assert "%s:11: devices.1.type:" % path in message
    assert "orin-nano" in message  # the allowed values are listed


def test_password_in_devices_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("host: 127.0.0.2", "host: 127.0.0.2\n    password: hunter2"))
    message = str(pytest.raises(ConfigError, load_devices, path).value)
    assert "secrets are never stored in devices.yaml" in message
    assert "password_env" in message
    assert "hunter2" not in message


def test_unknown_device_lists_known(tmp_path: Path) -> None:
    inventory = load_devices(write(tmp_path, GOOD))
    message = str(pytest.raises(ConfigError, inventory.select, "emu,ghost").value)
    assert "unknown device 'ghost'" in message and "emu, nano" in message


def test_selectors(tmp_path: Path) -> None:
    inventory = load_devices(write(tmp_path, GOOD))
    assert [d.name for d in inventory.select("all")] == ["emu", "nano"]
    assert [d.name for d in inventory.select("tag:jetson")] == ["nano"]
    assert [d.name for d in inventory.select("type:local,emu")] == ["emu"]
    assert "tags in use: cpu, jetson" in str(pytest.raises(ConfigError, inventory.select, "tag:npu").value)
    assert "unknown board type" in str(pytest.raises(ConfigError, inventory.select, "type:tpu").value)


def test_unknown_suite_lists_known() -> None:
    message = str(pytest.raises(ConfigError, find_suite, "video-16f", REPO / "suites").value)
    assert "unknown suite 'video-16f'" in message
    assert "image" in message and "video-8f" in message


def test_suite_field_errors_and_missing_media(tmp_path: Path) -> None:
    text = (REPO / "suites" / "image.yaml").read_text()
    bad = write(tmp_path, text.replace("output_tokens: 32", "output_tokens: 1"), "image.yaml")
    message = str(pytest.raises(ConfigError, load_suite, bad).value)
    assert "generation.output_tokens" in message and ":%d:" % (text.splitlines().index("  output_tokens: 32") + 1) in message
    missing = write(tmp_path, text, "other.yaml")
    message = str(pytest.raises(ConfigError, load_suite, missing).value)
    assert "workloads.0.source: file not found" in message
