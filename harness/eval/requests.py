"""lm-eval tasks -> accuracy requests for the runner (controller side).

lm-eval builds its requests (``Instance``s: context, generation kwargs, images) from a task YAML;
here each becomes a runner request (``harness/runner/accuracy.py``): a prompt, its image(s) as
binary PPM files named by content hash, the token budget, and the sha256 of pixels + prompt so
the answer that comes back can be checked to belong to the request that was sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..runner.workloads import Frame, encode_ppm, input_digest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TASKS_DIR = REPO / "suites" / "tasks"
REQUESTS_FILE = "accuracy/requests.jsonl"  # under the run's inputs/ on the board
IMAGES_DIR = "accuracy/img"
DEFAULT_MAX_NEW_TOKENS = 16


@dataclass
class EvalRequest:
    """One generate_until request, as shipped to the runner."""

    id: str  # "<task>/<doc_id>": the same for every build of the same task and data
    task: str
    doc_id: int
    prompt: str
    images: List[str]  # names under the run's inputs/
    max_new_tokens: int
    until: List[str]
    input_sha256: str
    files: List[Tuple[str, bytes]] = field(default_factory=list, repr=False)

    def line(self) -> Dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "images": self.images,
                "max_new_tokens": self.max_new_tokens, "input_sha256": self.input_sha256}


def offline() -> None:
    """Tasks read local files only; a missing file must fail, never trigger a download."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@contextlib.contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """lm-eval logs every task build (and a hint about custom datasets) at INFO/WARNING; the
    run's own output says what happens. Errors still show."""
    logger = logging.getLogger("lm_eval")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def task_manager(tasks_dir: Optional[Path] = None, include_defaults: bool = False) -> Any:
    """lm-eval's TaskManager over our task YAMLs. Indexing lm-eval's ~10k built-in tasks costs
    ~10 s, so they are only included when a suite names one of them."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir or DEFAULT_TASKS_DIR), include_defaults=include_defaults)


def load_task(name: str, tasks_dir: Optional[Path] = None) -> Tuple[Any, Any]:
    """(task object, task manager) for ``name``: ours first, then lm-eval's own (online use)."""
    manager = task_manager(tasks_dir)
    if name not in manager.all_tasks:
        manager = task_manager(tasks_dir, include_defaults=True)
        if name not in manager.all_tasks:
            raise KeyError("unknown lm-eval task %r: not in %s nor in lm-eval's tasks"
                           % (name, tasks_dir or DEFAULT_TASKS_DIR))
    loaded = manager.load([name])
    return loaded["tasks"][name], manager


def image_frame(image: Any) -> Frame:
    rgb = image.convert("RGB")
    return Frame(width=rgb.width, height=rgb.height, rgb=rgb.tobytes())


def request_from_instance(instance: Any, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> EvalRequest:
    """An lm-eval generate_until Instance (context, gen_kwargs, {"visual": [PIL images]})."""
    if instance.request_type != "generate_until":
        raise ValueError("task %s asks for %s; boards answer generate_until tasks only"
                         % (instance.task_name, instance.request_type))
    args = instance.args
    context, gen_kwargs = str(args[0]), dict(args[1] or {})
    visuals = list((args[2] if len(args) > 2 else {}).get("visual") or [])
    frames = [image_frame(image) for image in visuals]
    names, files = [], []
    for frame in frames:
        data = encode_ppm(frame)
        name = "%s/%s.ppm" % (IMAGES_DIR, hashlib.sha256(data).hexdigest()[:20])
        names.append(name)
        files.append((name, data))
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        until = [until]
    return EvalRequest(
        id="%s/%s" % (instance.task_name, instance.doc_id),
        task=str(instance.task_name),
        doc_id=int(instance.doc_id),
        prompt=context,
        images=names,
        max_new_tokens=int(gen_kwargs.get("max_gen_toks", default_max_new_tokens)),
        until=[str(u) for u in until],
        input_sha256=input_digest(frames, context),
        files=files,
    )


def build_requests(task: str, tasks_dir: Optional[Path] = None, limit: Optional[int] = None) -> List[EvalRequest]:
    """The requests lm-eval would send for ``task`` (first ``limit`` documents), in doc order."""
    offline()
    with quiet_lm_eval():
        task_obj, _ = load_task(task, tasks_dir)
        task_obj.build_all_requests(limit=limit, rank=0, world_size=1)
    return [request_from_instance(i) for i in sorted(task_obj.instances, key=lambda i: i.doc_id)]


def bundle(requests: Sequence[EvalRequest], task: str) -> Tuple[Dict[str, Any], List[Tuple[str, bytes]]]:
    """``RunSpec.accuracy`` and the files to upload under inputs/ (each image once)."""
    files: Dict[str, bytes] = {}
    lines = []
    for request in requests:
        for name, data in request.files:
            files[name] = data
        lines.append(json.dumps(request.line(), sort_keys=True))
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    budget = max((r.max_new_tokens for r in requests), default=DEFAULT_MAX_NEW_TOKENS)
    accuracy = {"task": task, "requests": REQUESTS_FILE, "max_new_tokens": budget,
                "n_requests": len(requests), "requests_sha256": hashlib.sha256(payload).hexdigest()}
    return accuracy, [(REQUESTS_FILE, payload)] + sorted(files.items())


def truncate(text: str, until: Sequence[str]) -> str:
    """lm-eval's stop-sequence rule: cut at the first occurrence of any ``until`` string."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text
