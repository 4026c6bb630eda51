"""Build the runner as one zipapp named by its content hash; upload it only where it is missing."""

from __future__ import annotations

import hashlib
import io
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List

from .transport import Transport, TransportError

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # harness/
_MAIN = b"import sys\nfrom harness.runner.__main__ import main\nsys.exit(main())\n"
# Runs on the board with its own python (>= 3.8): prints the file's sha256, or "missing".
HASH_SNIPPET = (
    "import hashlib,sys\n"
    "try:\n"
    " f=open(sys.argv[1],'rb')\n"
    "except OSError:\n"
    " print('missing');sys.exit(0)\n"
    "h=hashlib.sha256()\n"
    "for b in iter(lambda:f.read(1<<20),b''):h.update(b)\n"
    "print(h.hexdigest())\n"
)


@dataclass(frozen=True)
class RunnerArtifact:
    data: bytes
    sha256: str

    @property
    def filename(self) -> str:
        return "runner-%s.pyz" % self.sha256[:16]


@dataclass(frozen=True)
class DeployResult:
    remote_path: str
    uploaded_bytes: int


def _runner_files() -> List[Path]:
    files = [_PACKAGE_ROOT / "__init__.py"]
    runner = _PACKAGE_ROOT / "runner"
    files += sorted(p for p in runner.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts)
    return files


def build_runner() -> RunnerArtifact:
    """A deterministic zip (sorted names, fixed timestamps): same sources, same hash."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = [("__main__.py", _MAIN)]
        for path in _runner_files():
            name = "harness/" + path.relative_to(_PACKAGE_ROOT).as_posix()
            entries.append((name, path.read_bytes()))
        for name, content in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    data = buffer.getvalue()
    return RunnerArtifact(data=data, sha256=hashlib.sha256(data).hexdigest())


# coreutils' / busybox's sha256sum where the board has one (a millisecond; starting python costs
# 30-100 ms of a small board's CPU), the board's python otherwise. The file goes in on stdin, so
# sha256sum never escapes an unusual file name in its output.
_HASH_SCRIPT = (
    "[ -e \"$2\" ] || { echo missing; exit 0; }\n"
    "if command -v sha256sum >/dev/null 2>&1 && out=$(sha256sum < \"$2\" 2>/dev/null); then\n"
    "  printf '%s\\n' \"${out%% *}\"; exit 0\n"
    "fi\n"
    "exec \"$1\" -c \"$3\" \"$2\"\n"
)


def remote_sha256(transport: Transport, python: str, path: str, timeout_s: float) -> str:
    """The sha256 of ``path`` computed on the board, or ``missing``."""
    result = transport.run(["sh", "-c", _HASH_SCRIPT, "sh", python, path, HASH_SNIPPET], timeout_s=timeout_s)
    result.check("hashing %s on %s" % (path, transport.name))
    return result.text().strip()


def ensure_runner(
    transport: Transport, python: str, workdir: str, artifact: RunnerArtifact, timeout_s: float
) -> DeployResult:
    """Upload the runner unless the board already holds this exact hash; verify on the board."""
    remote_path = posixpath.join(workdir, "runners", artifact.filename)
    if remote_sha256(transport, python, remote_path, timeout_s) == artifact.sha256:
        return DeployResult(remote_path, 0)
    transport.put_bytes(artifact.data, remote_path, mode=0o644)
    found = remote_sha256(transport, python, remote_path, timeout_s)
    if found != artifact.sha256:
        raise TransportError(
            "runner upload to %s is corrupt: sha256 on the board %s, expected %s"
            % (remote_path, found[:16], artifact.sha256[:16])
        )
    return DeployResult(remote_path, len(artifact.data))
