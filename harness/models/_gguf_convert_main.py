"""Run llama.cpp's own ``convert_hf_to_gguf.py`` on one of our small Qwen2.5-VL directories.

    python -m harness.models._gguf_convert_main LLAMA_SRC HF_DIR OUT_FILE OUTTYPE [--mmproj]

A separate process per file: the converter keeps module state between runs. Two patches, both
only for the small models made here (random-weight presets, the canary), never for real ones:
  - their tokenizers are BPEs trained here with Qwen2's split regex, so the converter's table of
    known pre-tokenizer fingerprints cannot know them: an unknown fingerprint is declared "qwen2"
    (a known one is kept);
  - their vision towers have fewer than 4 blocks, so the tensor-name map is widened to reach the
    patch merger's ``merger.mlp.2``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main(argv: list) -> None:
    llama, hf_dir, out_file, outtype = Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3]
    mmproj = "--mmproj" in argv[4:]
    sys.path[:0] = [str(llama), str(llama / "gguf-py")]
    import conversion.base as base  # noqa: E402 - the tree's own modules, importable only now
    import conversion.qwenvl as qwenvl
    import gguf

    known_pre = base.TextModel.get_vocab_base_pre

    def pre_or_qwen2(self, tokenizer):  # type: ignore[no-untyped-def]
        try:
            return known_pre(self, tokenizer)
        except NotImplementedError:
            return "qwen2"

    base.TextModel.get_vocab_base_pre = pre_or_qwen2
    init = qwenvl.Qwen2VLVisionModel.__init__

    def init_wide(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        init(self, *args, **kwargs)
        self.tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, max(self.block_count, 4))

    qwenvl.Qwen2VLVisionModel.__init__ = init_wide
    script = str(llama / "convert_hf_to_gguf.py")
    sys.argv = [script, str(hf_dir), "--outfile", str(out_file), "--outtype", outtype] + (["--mmproj"] if mmproj else [])
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
