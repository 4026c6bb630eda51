"""Hugging Face Qwen2.5-VL directories to llama.cpp GGUF variants (F16, Q8_0, Q4_K_M), cached.

The conversion is llama.cpp's own ``convert_hf_to_gguf.py`` from the tree that
``scripts/build_llamacpp.sh`` unpacks from the pinned llama-cpp-python sdist (its ``gguf-py`` is
put on the path; the converter's other needs are in the ``[llamacpp]`` extra), and the
quantization is that build's ``llama-quantize``. Each variant is a directory the ``llamacpp``
backend takes as a model path: one ``model-<type>.gguf``, the F16 projector ``mmproj-f16.gguf``
(the vision side stays F16, as llama.cpp's published VLM GGUFs keep it) and the bench marker with
``gguf_type`` and the tensor types llama-quantize actually wrote (small models fall back from
k-quants: a row must be a multiple of 256 for Q4_K).

Results are cached under ``<cache>/<model name>-<content hash>/`` where the hash covers the model
files, the llama.cpp version and this conversion's code, so a second call costs a directory listing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

from .marker import MARKER_NAME

TYPES = ("F16", "Q8_0", "Q4_K_M")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VERSION = "0.3.36"  # llama-cpp-python, as pinned in scripts/build_llamacpp.sh
_CONVERTER = Path(__file__).with_name("_gguf_convert_main.py")
# src/llama-quant.cpp: "[%4d/%4d] %-36s - [%s], type = %6s, " then "converting to %s .. " or "size = ..."
_TENSOR_LINE = re.compile(r"\[ *\d+/ *\d+\] +\S+ +- +\[[^\]\n]*\], type = *(\w+), (?:converting to (\w+))?")


class GGUFError(RuntimeError):
    pass


@dataclass
class LlamaCppTree:
    """A built llama.cpp: the source tree (converter) and the bin directory (tools)."""

    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def tool(self, name: str) -> Path:
        return self.bin / name

    @property
    def version(self) -> str:
        return self.root.name

    def complete(self) -> bool:
        return (self.src / "convert_hf_to_gguf.py").is_file() and all(
            os.access(self.tool(t), os.X_OK) for t in ("llama-mtmd-cli", "llama-bench", "llama-quantize"))


def default_tree(version: str = DEFAULT_VERSION) -> LlamaCppTree:
    """Where scripts/build_llamacpp.sh puts it (LLAMACPP_ROOT overrides)."""
    root = os.environ.get("LLAMACPP_ROOT")
    return LlamaCppTree(Path(root) if root else REPO / ".cache" / "llamacpp" / version)


@dataclass
class GGUFVariant:
    gguf_type: str
    dir: Path
    model: Path
    mmproj: Path
    tensor_types: Dict[str, int] = field(default_factory=dict)


def _content_hash(hf_dir: Path, tree: LlamaCppTree) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in hf_dir.rglob("*") if p.is_file() and p.name != MARKER_NAME):
        digest.update(str(path.relative_to(hf_dir)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(tree.version.encode())
    digest.update(_CONVERTER.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _run(argv: Sequence[str], what: str, env: Optional[Dict[str, str]] = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise GGUFError("%s failed (exit %d): %s" % (what, proc.returncode, (proc.stdout + proc.stderr)[-2000:]))
    return proc.stdout + proc.stderr


def convert(tree: LlamaCppTree, hf_dir: Path, model_file: Path, mmproj_file: Path, outtype: str = "f16") -> None:
    """The language model and the projector, converted side by side (two processes: the
    converter keeps module state between runs, and each spends most of its time importing torch)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    for out_file, extra in ((model_file, []), (mmproj_file, ["--mmproj"])):
        argv = [sys.executable, str(_CONVERTER), str(tree.src), str(hf_dir), str(out_file), outtype] + extra
        procs.append((out_file, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 env=env)))
    for out_file, proc in procs:
        output, _ = proc.communicate()
        if proc.returncode != 0 or not out_file.is_file():
            raise GGUFError("convert_hf_to_gguf.py on %s -> %s failed (exit %s): %s"
                            % (hf_dir, out_file.name, proc.returncode, output[-2000:]))


def tensor_types(quantize_log: str) -> Dict[str, int]:
    """How many tensors llama-quantize wrote in each type, from its per-tensor lines
    ("... type = f16, converting to q8_0 .. size = ..." or, kept as is, "... size = N MiB")."""
    counts: Dict[str, int] = {}
    for match in _TENSOR_LINE.finditer(quantize_log):
        kind = (match.group(2) or match.group(1)).upper()
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def quantize(tree: LlamaCppTree, f16: Path, out_file: Path, gguf_type: str, threads: int = 2) -> Dict[str, int]:
    log = _run([str(tree.tool("llama-quantize")), str(f16), str(out_file), gguf_type, str(threads)],
               "llama-quantize %s" % gguf_type)
    return tensor_types(log)


def gguf_variants(hf_dir: Path, tree: Optional[LlamaCppTree] = None, cache: Optional[Path] = None,
                  types: Iterable[str] = TYPES) -> Dict[str, GGUFVariant]:
    """F16 / Q8_0 / Q4_K_M variant directories of ``hf_dir`` (made once, then read from the cache)."""
    tree = tree or default_tree()
    if not tree.complete():
        raise GGUFError("llama.cpp is not built at %s: run bash scripts/build_llamacpp.sh" % tree.root)
    hf_dir = Path(hf_dir)
    base = Path(cache) if cache else tree.root / "gguf"
    target = base / ("%s-%s" % (hf_dir.name, _content_hash(hf_dir, tree)))
    types = tuple(types)
    if not (target / "DONE").is_file():
        _make(hf_dir, tree, target, types)
    out = {}
    for gguf_type in types:
        directory = target / gguf_type
        info = json.loads((directory / MARKER_NAME).read_text())
        out[gguf_type] = GGUFVariant(gguf_type, directory, directory / ("model-%s.gguf" % gguf_type.lower()),
                                     directory / "mmproj-f16.gguf", info.get("gguf_tensor_types", {}))
    return out


def _make(hf_dir: Path, tree: LlamaCppTree, target: Path, types: Sequence[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        f16, mmproj = work / "model-f16.gguf", work / "mmproj-f16.gguf"
        convert(tree, hf_dir, f16, mmproj)
        marker_file = hf_dir / MARKER_NAME
        marker = json.loads(marker_file.read_text()) if marker_file.is_file() else {"weights": "real"}
        for gguf_type in types:
            directory = work / gguf_type
            directory.mkdir()
            model = directory / ("model-%s.gguf" % gguf_type.lower())
            if gguf_type == "F16":
                shutil.copyfile(f16, model)
                counts: Dict[str, int] = {}
            else:
                counts = quantize(tree, f16, model, gguf_type)
            os.link(mmproj, directory / mmproj.name)
            info = dict(marker, gguf_type=gguf_type, gguf_tensor_types=counts, mmproj_type="F16",
                        converted_from=str(hf_dir), converted_by="llama.cpp convert_hf_to_gguf.py + llama-quantize "
                                                              "(llama-cpp-python %s)" % tree.version)
            (directory / MARKER_NAME).write_text(json.dumps(info, indent=2, sort_keys=True))
        f16.unlink()
        mmproj.unlink()
        (work / "DONE").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
