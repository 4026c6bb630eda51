"""Render a suite's workloads into the frames the runner reads (controller side, uses Pillow).

The image workload is a centre crop of the photograph; the video workload is a documented pan
(suites/media/README.md). Both are deterministic, and their pixels are hashed so every result
names exactly what it measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from PIL import Image

from .config.suites import Suite, WorkloadConfig
from .runner.protocol import WorkloadSpec
from .runner.workloads import Frame, encode_ppm, input_digest

Box = Tuple[int, int, int, int]


def pan_boxes(width: int, height: int, frames: int, window_fraction: float = 0.75) -> List[Box]:
    """Square windows sliding in equal steps from the top-left to the bottom-right corner."""
    side = max(1, int(round(min(width, height) * window_fraction)))
    span_x, span_y = width - side, height - side
    boxes = []
    for index in range(frames):
        t = index / (frames - 1) if frames > 1 else 0.0
        left, top = int(round(span_x * t)), int(round(span_y * t))
        boxes.append((left, top, left + side, top + side))
    return boxes


def centre_box(width: int, height: int) -> Box:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def render_frames(source: Path, workload: WorkloadConfig) -> List[Frame]:
    with Image.open(source) as opened:
        photo = opened.convert("RGB")
    width, height = photo.size
    boxes = (
        [centre_box(width, height)]
        if workload.kind == "image"
        else pan_boxes(width, height, workload.frames)
    )
    frames = []
    for box in boxes:
        image = photo.crop(box).resize(tuple(workload.size), Image.Resampling.BICUBIC)
        frames.append(Frame(width=image.width, height=image.height, rgb=image.tobytes()))
    return frames


@dataclass
class PreparedWorkload:
    spec: WorkloadSpec  # frames named relative to the run's input directory
    files: List[Tuple[str, bytes]]  # (relative name, PPM bytes) to place on the device


def prepare_workloads(suite: Suite) -> List[PreparedWorkload]:
    prepared = []
    for workload in suite.config.workloads:
        frames = render_frames(suite.source_path(workload), workload)
        prompt = workload.prompt if workload.prompt is not None else suite.config.prompt
        files = [
            ("%s-%03d.ppm" % (workload.name, index), encode_ppm(frame))
            for index, frame in enumerate(frames)
        ]
        spec = WorkloadSpec(
            name=workload.name,
            kind=workload.kind,
            frames=[name for name, _ in files],
            prompt=prompt,
            input_sha256=input_digest(frames, prompt),
            fps=workload.fps,
            params=dict(workload.params),
            output_tokens=workload.output_tokens,
            concurrency=workload.concurrency,
        )
        prepared.append(PreparedWorkload(spec=spec, files=files))
    return prepared
