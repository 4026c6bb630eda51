"""A reusable fake sysfs tree for the fuzz tests (hypothesis examples share one directory per test)."""

from __future__ import annotations

import os
import tempfile
from typing import Dict, Union


class FakeTree:
    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fuzz-sysfs-")
        self.root = self._dir.name

    def write(self, files: Dict[str, Union[str, bytes]]) -> str:
        for rel, content in files.items():
            path = os.path.join(self.root, rel.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        return self.root

    def close(self) -> None:
        self._dir.cleanup()
