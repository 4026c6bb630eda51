"""Workload inputs on the board: binary PPM frames (raw RGB, readable with the standard library).

The controller renders the suite's photograph into frames once (``harness.workloads``); the runner
decodes them into memory before any timer starts, so ``preprocess_ms`` measures the model's own
preprocessing only, never file I/O or image decoding.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import List

from .protocol import ProtocolError, WorkloadSpec


@dataclass(frozen=True)
class Frame:
    width: int
    height: int
    rgb: bytes  # height * width * 3 bytes, row-major


@dataclass(frozen=True)
class WorkloadInputs:
    name: str
    kind: str  # "image" or "video"
    frames: List[Frame]
    prompt: str
    fps: float
    input_sha256: str


def _read_token(data: bytes, pos: int) -> "tuple[bytes, int]":
    """Next whitespace-separated header token of a PPM, skipping '#' comments."""
    length = len(data)
    while pos < length:
        ch = data[pos : pos + 1]
        if ch == b"#":
            while pos < length and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
        elif ch.isspace():
            pos += 1
        else:
            break
    start = pos
    while pos < length and not data[pos : pos + 1].isspace() and data[pos : pos + 1] != b"#":
        pos += 1
    return data[start:pos], pos


def decode_ppm(data: bytes, where: str = "frame") -> Frame:
    """Decode a binary PPM (P6, maxval 255) following the Netpbm format rules."""
    magic, pos = _read_token(data, 0)
    if magic != b"P6":
        raise ProtocolError("%s: not a binary PPM (P6) file (magic %r)" % (where, magic[:8]))
    values = []
    for _ in range(3):
        token, pos = _read_token(data, pos)
        if not token.isdigit():
            raise ProtocolError("%s: bad PPM header token %r" % (where, token[:16]))
        values.append(int(token))
    width, height, maxval = values
    if maxval != 255 or width <= 0 or height <= 0:
        raise ProtocolError(
            "%s: unsupported PPM (%dx%d, maxval %d); need 8-bit RGB" % (where, width, height, maxval)
        )
    pos += 1  # exactly one whitespace byte separates the header from the raster
    expected = width * height * 3
    raster = data[pos : pos + expected]
    if len(raster) != expected:
        raise ProtocolError(
            "%s: truncated PPM raster (%d of %d bytes)" % (where, len(raster), expected)
        )
    return Frame(width=width, height=height, rgb=bytes(raster))


def encode_ppm(frame: Frame) -> bytes:
    return b"P6\n%d %d\n255\n" % (frame.width, frame.height) + frame.rgb


def input_digest(frames: List[Frame], prompt: str) -> str:
    """sha256 over every frame's size and pixels, then the prompt (UTF-8)."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(b"%dx%dx3\n" % (frame.width, frame.height))
        digest.update(frame.rgb)
    digest.update(b"prompt\n")
    digest.update(prompt.encode("utf-8"))
    return digest.hexdigest()


def load_inputs(spec: WorkloadSpec, base_dir: str = ".") -> WorkloadInputs:
    """Decode the workload's frames (relative paths are under ``base_dir``) and check them
    against the digest the controller computed."""
    frames = []
    for index, name in enumerate(spec.frames):
        path = os.path.join(base_dir, name)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ProtocolError(
                "workload %r frame %d: cannot read %s: %s" % (spec.name, index, path, exc)
            ) from exc
        frames.append(decode_ppm(data, where="workload %r frame %d" % (spec.name, index)))
    digest = input_digest(frames, spec.prompt)
    if spec.input_sha256 and digest != spec.input_sha256:
        raise ProtocolError(
            "workload %r: inputs on this machine hash to %s, the controller sent %s; redeploy inputs"
            % (spec.name, digest[:12], spec.input_sha256[:12])
        )
    return WorkloadInputs(
        name=spec.name,
        kind=spec.kind,
        frames=frames,
        prompt=spec.prompt,
        fps=spec.fps,
        input_sha256=digest,
    )
