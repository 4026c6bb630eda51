"""VQA data and scoring for lm-eval tasks: the local format, images and the two answer metrics.

Local format (``suites/tasks/README.md``): one question per jsonl line (or parquet row) with
``question`` (str), ``answers`` (list of reference answers; one for easy-VQA, ten annotators' for
VQAv2-style data) and ``image`` (a path relative to the data file, or an HF ``Image`` struct with
``bytes``). Optional: ``question_id``, ``question_type``.

Scoring follows the official VQA evaluation: answers are normalised (lower case, punctuation,
articles, number words, contractions) before comparison. ``exact_match`` is 1 when the normalised
prediction equals any normalised reference; ``vqa_acc`` is VQAv2's soft accuracy: the mean over
the ten leave-one-annotator-out subsets of min(#matches / 3, 1).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Union

# From the official VQA evaluation script (vqaEval.py): contractions written without the
# apostrophe, number words, articles and punctuation.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itll": "it'll",
    "lets": "let's", "mightnt": "mightn't", "mustnt": "mustn't", "neednt": "needn't",
    "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "thats": "that's",
    "theres": "there's", "theyd": "they'd", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "wasnt": "wasn't", "werent": "weren't", "whats": "what's",
    "wheres": "where's", "whos": "who's", "wont": "won't", "wouldnt": "wouldn't",
    "youd": "you'd", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
          "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_answer(text: str) -> str:
    """The VQA evaluation's answer normalisation (processPunctuation + processDigitArticle)."""
    text = text.replace("\n", " ").replace("\t", " ").strip().lower()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_STRIP, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = []
    for word in out.split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(ref) for ref in references) else 0.0


def vqa_soft_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQAv2 accuracy: mean over leave-one-out subsets of min(matches / 3, 1).

    With fewer than ten references this is still the same formula over the subsets there are;
    a single reference gives 0 or 1/3 - why tasks with one reference report exact_match only.
    """
    pred = normalize_answer(prediction)
    refs = [normalize_answer(r) for r in references]
    if not refs:
        return 0.0
    if len(refs) == 1:
        return min(float(pred == refs[0]) / 3.0, 1.0)
    scores = []
    for i in range(len(refs)):
        others = refs[:i] + refs[i + 1:]
        scores.append(min(sum(1 for r in others if r == pred) / 3.0, 1.0))
    return sum(scores) / len(scores)


def process_results(doc: Dict[str, Any], results: List[str]) -> Dict[str, float]:
    """lm-eval hook: both metrics per document; a task's metric_list picks the ones it reports."""
    prediction = results[0] if results else ""
    answers = doc.get("answers") or [doc.get("answer", "")]
    return {"exact_match": exact_match(prediction, answers), "vqa_acc": vqa_soft_accuracy(prediction, answers)}


def doc_to_image(doc: Dict[str, Any]) -> List[Any]:
    """lm-eval hook: the document's image as a list of one RGB PIL image."""
    from PIL import Image

    value = doc["image"]
    if isinstance(value, dict) and value.get("bytes"):
        image = Image.open(io.BytesIO(value["bytes"]))
    elif isinstance(value, dict):
        image = Image.open(value["path"])
    elif hasattr(value, "convert"):  # already a PIL image (an HF Image feature)
        image = value
    else:
        image = Image.open(str(value))
    return [image.convert("RGB")]


def load_local_dataset(data_files: Union[str, Dict[str, str]], base_dir: Union[str, Path]) -> Any:
    """A ``datasets.DatasetDict`` from local jsonl/parquet; relative image paths made absolute."""
    import datasets

    files = data_files if isinstance(data_files, dict) else {"test": data_files}
    base = Path(base_dir)
    splits = {}
    for split, name in files.items():
        path = Path(name) if os.path.isabs(name) else base / name
        if not path.is_file():
            raise FileNotFoundError("VQA data file %s does not exist (named in the task YAML)" % path)
        builder = "parquet" if path.suffix == ".parquet" else "json"
        data = datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
        root = path.parent

        def absolute(row: Dict[str, Any], root: Path = root) -> Dict[str, Any]:
            image = row.get("image")
            if isinstance(image, str) and not os.path.isabs(image):
                row["image"] = str(root / image)
            return row

        splits[split] = data.map(absolute)
    return datasets.DatasetDict(splits)


def make_loader(anchor_file: str) -> Callable[..., Any]:
    """A ``custom_dataset`` function resolving files against ``anchor_file``'s directory."""
    base = Path(anchor_file).resolve().parent

    def load_local(data_files: Union[str, Dict[str, str]] = "test.jsonl", **_: Any) -> Any:
        # lm-eval also passes the task's metadata (version, source): not dataset options
        return load_local_dataset(data_files, base)

    return load_local
