"""The shipped easy-VQA subset: built once from the `easy-vqa` package's test split.

``python -m harness.eval.easyvqa --out suites/tasks/easy_vqa`` writes ``test.jsonl`` (one question
a line, in the documented local format of ``suites/tasks/README.md``) and the PNG images it names.
The sample is drawn with a fixed seed, so rebuilding gives the same files byte for byte.
easy-VQA is MIT-licensed (Copyright (c) 2019 Victor Zhou); its licence ships beside the subset.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

SUBSET_SEED = 20240611
SUBSET_SIZE = 500
COLOURS = ("red", "green", "blue", "yellow", "black", "gray", "teal", "brown")
SHAPES = ("circle", "rectangle", "triangle")


def question_type(answer: str) -> str:
    """yes/no, colour or shape: the three kinds easy-VQA asks (its answers tell them apart)."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "colour" if answer in COLOURS else "shape"


def load_split(split: str) -> Tuple[List[Tuple[str, str, int]], Dict[int, str]]:
    """(question, answer, image id) triples and image id -> PNG path, from the installed package."""
    import easy_vqa  # the controller-side extra `eval`; never needed on a board

    if split == "train":
        texts, answers, ids = easy_vqa.get_train_questions()
        images = easy_vqa.get_train_image_paths()
    elif split == "test":
        texts, answers, ids = easy_vqa.get_test_questions()
        images = easy_vqa.get_test_image_paths()
    else:
        raise ValueError("easy-VQA has a train and a test split, not %r" % split)
    return list(zip(texts, answers, ids)), images


def sample_indices(n_total: int, size: int = SUBSET_SIZE, seed: int = SUBSET_SEED) -> List[int]:
    """Which test questions the subset holds (sorted, so the file reads in the split's order)."""
    return sorted(random.Random(seed).sample(range(n_total), size))


def build_subset(out_dir: Path, size: int = SUBSET_SIZE, seed: int = SUBSET_SEED) -> List[Dict[str, object]]:
    """Write ``test.jsonl`` + ``images/`` into ``out_dir``; returns the rows written."""
    questions, images = load_split("test")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, object]] = []
    for index in sample_indices(len(questions), size, seed):
        text, answer, image_id = questions[index]
        name = "images/%d.png" % image_id
        shutil.copyfile(images[image_id], out / name)
        rows.append({
            "question_id": "easyvqa-test-%d" % index,  # index in the package's test questions
            "image": name,
            "question": text,
            "answers": [answer],
            "question_type": question_type(answer),
        })
    with open(out / "test.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    return rows


def subset_question_ids(rows: Sequence[Dict[str, object]]) -> List[int]:
    """The package test-split indices a subset holds (the training script keeps them out of its
    validation set so the curve and the final figure are measured on different questions)."""
    return [int(str(row["question_id"]).rsplit("-", 1)[1]) for row in rows]


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("suites/tasks/easy_vqa"))
    parser.add_argument("--size", type=int, default=SUBSET_SIZE)
    parser.add_argument("--seed", type=int, default=SUBSET_SEED)
    args = parser.parse_args(argv)
    build_subset(args.out, args.size, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
