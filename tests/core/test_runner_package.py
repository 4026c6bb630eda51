"""The runner ships as one zipapp that needs only the standard library and Python >= 3.8."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from harness.farm.deploy import build_runner, ensure_runner
from harness.farm.transport import LocalTransport

REPO = Path(__file__).resolve().parents[2]


def test_zipapp_is_deterministic_and_named_by_hash() -> None:
    first, second = build_runner(), build_runner()
    assert first.sha256 == second.sha256 and first.data == second.data
    assert first.filename == "runner-%s.pyz" % first.sha256[:16]
    names = zipfile.ZipFile(BytesIO(first.data)).namelist()
    assert "__main__.py" in names and "harness/runner/protocol.py" in names
    assert not any(n.startswith(("harness/cli", "harness/farm", "harness/store")) for n in names)


def test_zipapp_runs_with_the_standard_library_only(tmp_path: Path) -> None:
    artifact = build_runner()
    pyz = tmp_path / artifact.filename
    pyz.write_bytes(artifact.data)
    # -I -S: no site-packages, no user paths: only the standard library can be imported
    proc = subprocess.run([sys.executable, "-I", "-S", str(pyz), "info"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["runner_hash"] == artifact.sha256
    assert "reference" in info["backends"] and "transformers" in info["backends"]
    assert info["engines"]["torch"]["ok"] is False  # proves site-packages were really out of reach


def test_upload_only_when_the_hash_is_missing(tmp_path: Path) -> None:
    artifact = build_runner()
    transport = LocalTransport()
    first = ensure_runner(transport, sys.executable, str(tmp_path), artifact, timeout_s=60)
    assert first.uploaded_bytes == len(artifact.data)
    again = ensure_runner(transport, sys.executable, str(tmp_path), artifact, timeout_s=60)
    assert again.uploaded_bytes == 0
    Path(first.remote_path).write_bytes(b"corrupted")
    repaired = ensure_runner(transport, sys.executable, str(tmp_path), artifact, timeout_s=60)
    assert repaired.uploaded_bytes == len(artifact.data)
    assert Path(first.remote_path).read_bytes() == artifact.data


def test_runner_source_is_python38_compatible() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    proc = subprocess.run([vermin, "-t=3.8-", "--violations", "--no-tips", str(REPO / "harness" / "runner"),
                           str(REPO / "harness" / "__init__.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
