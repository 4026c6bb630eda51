"""Train the canary VLM: a Qwen2.5-VL at under 1M parameters, from scratch, on easy-VQA's train split.

    python scripts/train_canary.py --out tests/fixtures/canary

Recipe (../shared FACTS, then what four attempts here taught; their curves are committed beside
the weights as training_log.attempt*.jsonl): images go through the model's own processor at
112x112 (8x8 patches -> 16 visual tokens after the 2x2 merge), the loss covers the answer tokens
only (answer + <|im_end|>, so greedy decoding stops by itself), AdamW with warm-up and cosine
decay, a small byte-level BPE over easy-VQA's text so every answer is one token. The batches
follow a curriculum, because easy-VQA's wording alone answers ~82% of its yes/no questions (74%
of the data) and a model that learns that prior stays on it - the attempts read colours off the
image within minutes yet answered every yes/no question exactly as the prior did:
  first 25% of steps: half what-colour / what-shape questions, half positive yes/no questions
                      ("is there a red shape?") balanced yes/no per question text, so only the
                      image can answer them;
  25-50%:             a third each of those what-questions, balanced yes/no of every wording
                      (negated ones too: their answer is match XOR negation), the natural mix;
  last 50%:           half the natural mix, half balanced yes/no.
The evaluation is always on the natural distribution.

One thread (torch.set_num_threads(1)), seeded; the curve goes to ``training_log.jsonl`` beside
the weights. Validation: teacher-forced answer accuracy on 1,000 test-split questions that are not
in the shipped subset (suites/tasks/easy_vqa), so the subset's figure stays untouched by model
selection (there is none: the last step is what ships).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.eval.easyvqa import load_split, question_type, subset_question_ids  # noqa: E402
from harness.models.presets import VISION_GEOMETRY  # noqa: E402
from harness.models.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS  # noqa: E402

TASK_YAML = REPO / "suites" / "tasks" / "easy_vqa" / "easy_vqa.yaml"
IMAGE_PIXELS = 112 * 112  # processor min_pixels: easy-VQA's 64x64 images are upsampled to 112x112
BPE_VOCAB = 512
# Answers are trained as " red" (one token, "Ġred"), the very token the questions use for the
# word ("is there a red shape?"): with tied embeddings the image read-out for "what colour" and the
# question's colour word then live in one vector space, so "is there a red shape?" becomes a dot
# product (attention) instead of an AND of two unrelated codes. Generation gives " red"; every
# consumer strips it (the VQA normalisation does anyway).
ANSWER_PREFIX = " "  # an upper bound: the trainer stops when easy-VQA's words are whole tokens

TEXT = {
    "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "mrope_section": [4, 6, 6],  # head_dim 32: sums to 16
    "rope_theta": 10000.0, "max_position_embeddings": 512,
}
VISION = {"depth": 2, "hidden_size": 96, "intermediate_size": 192, "num_heads": 3, "fullatt_block_indexes": [1]}


def prompt_template() -> str:
    """The task YAML's doc_to_text: training and evaluation must see the same words."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    with open(TASK_YAML, encoding="utf-8") as handle:
        return str(yaml.load(handle, Loader=Loader)["doc_to_text"])


def render(template: str, question: str) -> str:
    import jinja2

    return jinja2.Template(template).render(question=question)


def build_tokenizer(texts: Sequence[str]) -> Any:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    base = len(vocab)
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = base + offset
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", extra_special_tokens=list(SPECIAL_TOKENS[1:]),
                               model_max_length=512, errors="replace")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    n_tokens = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(TEXT)
    mrope = text.pop("mrope_section")
    text_config = dict(
        text, vocab_size=-(-n_tokens // 64) * 64, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        use_sliding_window=False,
    )
    vision_config = dict(VISION_GEOMETRY, depth=VISION["depth"], hidden_size=VISION["hidden_size"],
                         intermediate_size=VISION["intermediate_size"], num_heads=VISION["num_heads"],
                         out_hidden_size=TEXT["hidden_size"], hidden_act="silu",
                         fullatt_block_indexes=list(VISION["fullatt_block_indexes"]))
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=True,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    config.dtype = "float32"
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build_processor(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": IMAGE_PIXELS, "longest_edge": 28 * 28 * 1280}
    geometry = dict(patch_size=VISION_GEOMETRY["patch_size"], merge_size=VISION_GEOMETRY["spatial_merge_size"],
                    temporal_patch_size=VISION_GEOMETRY["temporal_patch_size"])
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **geometry), tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size, do_sample_frames=False, **geometry),
        chat_template=CHAT_TEMPLATE,
    )


class Encoded:
    """Token ids (prompt + answer + <|im_end|>), answer start and image index for each question."""

    def __init__(self, processor: Any, template: str, questions: Sequence[Tuple[str, str, int]],
                 n_visual: int) -> None:
        tok = processor.tokenizer
        pad = "<|image_pad|>"
        self.ids: List[List[int]] = []
        self.answer_at: List[int] = []
        self.images: List[int] = []
        self.kinds: List[str] = []
        end = tok.convert_tokens_to_ids("<|im_end|>")
        cache: Dict[str, List[int]] = {}
        for text, answer, image_id in questions:
            prompt_ids = cache.get(text)
            if prompt_ids is None:
                messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": render(template, text)}]}]
                prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                prompt = prompt.replace(pad, pad * n_visual)  # what the processor's expansion does
                prompt_ids = cache[text] = tok(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = tok(ANSWER_PREFIX + answer, add_special_tokens=False)["input_ids"]
            self.ids.append(prompt_ids + answer_ids + [end])
            self.answer_at.append(len(prompt_ids))
            self.images.append(image_id)
            # yes/no split by wording in the curve: negated ones are the hard (XOR) half
            kind = question_type(answer)
            self.kinds.append(kind + (" negated" if kind == "yes/no" and negated(text) else ""))


def pixel_table(processor: Any, paths: Dict[int, str], wanted: Sequence[int]) -> Tuple[Dict[int, int], torch.Tensor, List[int]]:
    """Every image once through the model's own image processor: row index, pixel_values, grid."""
    from PIL import Image

    order = sorted(set(wanted))
    chunks, grid = [], None
    for start in range(0, len(order), 256):
        images = [Image.open(paths[i]).convert("RGB") for i in order[start:start + 256]]
        out = processor.image_processor(images=images, return_tensors="pt")
        grid = out["image_grid_thw"][0].tolist()
        chunks.append(out["pixel_values"].reshape(len(images), -1, out["pixel_values"].shape[-1]))
    return {image: row for row, image in enumerate(order)}, torch.cat(chunks), grid


def collate(enc: Encoded, rows: Sequence[int], pixels: torch.Tensor, index: Dict[int, int],
            grid: List[int], pad_id: int, image_pad_id: int) -> Dict[str, torch.Tensor]:
    length = max(len(enc.ids[r]) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for b, r in enumerate(rows):
        ids = torch.tensor(enc.ids[r])
        input_ids[b, : len(ids)] = ids
        attention[b, : len(ids)] = 1
        labels[b, enc.answer_at[r]: len(ids)] = ids[enc.answer_at[r]:]  # answer + <|im_end|> only
    pixel_values = pixels[[index[enc.images[r]] for r in rows]].reshape(-1, pixels.shape[-1]).float()
    return {
        "input_ids": input_ids, "attention_mask": attention, "labels": labels,
        "pixel_values": pixel_values,
        "image_grid_thw": torch.tensor([grid] * len(rows), dtype=torch.long),
        "mm_token_type_ids": (input_ids == image_pad_id).long(),
    }


@torch.no_grad()
def teacher_forced_accuracy(model: Any, enc: Encoded, pixels: torch.Tensor, index: Dict[int, int],
                            grid: List[int], pad_id: int, image_pad_id: int) -> Dict[str, float]:
    """Share of questions whose first answer token is the argmax at the answer position (every
    easy-VQA answer is one token of this BPE), overall and per question type."""
    model.eval()
    hits: Dict[str, List[int]] = {}
    for start in range(0, len(enc.ids), 128):
        rows = list(range(start, min(start + 128, len(enc.ids))))
        batch = collate(enc, rows, pixels, index, grid, pad_id, image_pad_id)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        for b, r in enumerate(rows):
            at = enc.answer_at[r]
            hits.setdefault(enc.kinds[r], []).append(int(logits[b, at - 1].argmax() == labels[b, at]))
    model.train()
    result = {kind: sum(v) / len(v) for kind, v in hits.items()}
    every = [h for v in hits.values() for h in v]
    result["all"] = sum(every) / len(every)
    return result


def negated(text: str) -> bool:
    return " not " in text or text.startswith("is no ")


def balanced_yes_no(questions: Sequence[Tuple[str, str, int]], negated_too: bool = True) -> Tuple[List[int], List[float]]:
    """Yes/no question indices and cumulative sampling weights giving each question text's "yes"
    and "no" the same total weight. easy-VQA's wording alone answers ~82% of its yes/no questions
    (template priors); earlier attempts sat on exactly that prior (training_log.attempt*.jsonl).
    ``negated_too=False`` keeps only the positive wordings ("is there a red shape?"), where the
    answer is the match itself; with "is there not ..." it is match XOR negation, whose gradient
    cancels until the match exists."""
    groups: Dict[str, Dict[str, List[int]]] = {}
    for index, (text, answer, _) in enumerate(questions):
        if answer in ("yes", "no") and (negated_too or not negated(text)):
            groups.setdefault(text, {}).setdefault(answer, []).append(index)
    rows: List[int] = []
    cumulative: List[float] = []
    total = 0.0
    for text in sorted(groups):
        by_answer = groups[text]
        if len(by_answer) < 2:
            continue  # always the same answer: nothing to balance
        for answer in sorted(by_answer):
            for index in by_answer[answer]:
                total += 0.5 / len(by_answer[answer])
                rows.append(index)
                cumulative.append(total)
    return rows, cumulative


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description="Train the easy-VQA canary VLM (one CPU thread).")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "canary")
    parser.add_argument("--steps", type=int, default=4500)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--focus-share", type=float, default=0.5,
                        help="share of the steps with colour/shape questions in every batch")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)  # leave the other core to the rest of the machine
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.jsonl"
    log = open(log_path, "w", encoding="utf-8")

    def emit(record: Dict[str, Any]) -> None:
        record["elapsed_s"] = round(time.perf_counter() - started, 1)
        log.write(json.dumps(record, sort_keys=True) + "\n")
        log.flush()

    template = prompt_template()
    train_q, train_images = load_split("train")
    test_q, test_images = load_split("test")
    subset_rows = [json.loads(line) for line in open(TASK_YAML.parent / "test.jsonl", encoding="utf-8")]
    held = set(subset_question_ids(subset_rows))
    val_pool = [i for i in range(len(test_q)) if i not in held]
    val_q = [test_q[i] for i in sorted(random.Random(args.seed + 1).sample(val_pool, 1000))]

    # the rendered prompts (question + the task's instruction) and the chat template's fixed
    # words, so the instruction is a few whole-word tokens rather than dozens of bytes
    corpus = [render(template, q) for q, _, _ in train_q] + [ANSWER_PREFIX + a for _, a, _ in train_q]
    corpus += ["You are a helpful assistant.", "system", "user", "assistant"] * 1000
    tokenizer = build_tokenizer(corpus)
    processor = build_processor(tokenizer)
    # saved and reloaded the way the runner's backend loads it (AutoProcessor), so training sees
    # exactly the pixels and ids evaluation will
    processor.save_pretrained(out)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(out, local_files_only=True)
    tok = processor.tokenizer
    for answer in sorted({a for _, a, _ in train_q}):
        if len(tok(ANSWER_PREFIX + answer, add_special_tokens=False)["input_ids"]) != 1:
            raise SystemExit("answer %r is not one token of the canary BPE" % answer)

    index_tr, pixels_tr, grid = pixel_table(processor, train_images, [i for _, _, i in train_q])
    index_va, pixels_va, _ = pixel_table(processor, test_images, [i for _, _, i in val_q])
    pixels_tr, pixels_va = pixels_tr.half(), pixels_va.half()  # 4,000 images in ~600 MB
    n_visual = grid[0] * grid[1] * grid[2] // (VISION_GEOMETRY["spatial_merge_size"] ** 2)
    train = Encoded(processor, template, train_q, n_visual)
    val = Encoded(processor, template, val_q, n_visual)
    pad_id = tok.convert_tokens_to_ids("<|endoftext|>")
    image_pad_id = tok.convert_tokens_to_ids("<|image_pad|>")

    model = build_model(tok)
    n_params = sum(p.numel() for p in model.parameters())
    emit({"event": "start", "n_parameters": n_params, "visual_tokens": n_visual, "grid": grid,
          "vocab": len(tok), "args": {k: str(v) for k, v in vars(args).items()},
          "torch": torch.__version__, "threads": torch.get_num_threads()})
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    # what-colour and what-shape questions; shapes twice, as the model learns colour first and
    # then sits on answering shape questions at chance (seen in an earlier attempt, see README)
    focus = [i for i, k in enumerate(train.kinds) if k == "colour"]
    focus += [i for i, k in enumerate(train.kinds) if k == "shape"] * 2
    every = list(range(len(train.ids)))
    positive = balanced_yes_no(train_q, negated_too=False)
    balanced = balanced_yes_no(train_q)

    def draw(pool: Any, k: int) -> List[int]:
        if isinstance(pool, tuple):  # (rows, cumulative weights)
            return rng.choices(pool[0], cum_weights=pool[1], k=k)
        return rng.sample(pool, k)

    def batch_rows(step: int) -> List[int]:
        """The curriculum (see the module docstring): which pools fill this step's batch."""
        frac = step / args.steps
        if frac < args.focus_share / 2:
            parts = [(focus, 1 / 2), (positive, 1 / 2)]
        elif frac < args.focus_share:
            parts = [(focus, 1 / 3), (balanced, 1 / 3), (every, 1 / 3)]
        else:
            parts = [(every, 1 / 2), (balanced, 1 / 2)]
        rows: List[int] = []
        for index, (pool, share) in enumerate(parts):
            k = args.batch - len(rows) if index == len(parts) - 1 else int(round(share * args.batch))
            rows += draw(pool, k)
        return rows

    model.train()
    running = 0.0
    for step in range(args.steps):
        rows = batch_rows(step)
        batch = collate(train, rows, pixels_tr, index_tr, grid, pad_id, image_pad_id)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step)
        loss = model(**batch).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        running = loss.item() if step == 0 else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            acc = teacher_forced_accuracy(model, val, pixels_va, index_va, grid, pad_id, image_pad_id)
            emit({"event": "eval", "step": step + 1, "loss_ema": round(running, 4), "lr": lr_at(step),
                  "val_acc": {k: round(v, 4) for k, v in acc.items()}})
        elif (step + 1) % 50 == 0:
            emit({"event": "train", "step": step + 1, "loss_ema": round(running, 4), "lr": lr_at(step)})

    model.eval()
    model.save_pretrained(out)
    summary = {
        "what": "easy-VQA canary: Qwen2.5-VL architecture trained from scratch by scripts/train_canary.py",
        "weights": "trained", "n_parameters": n_params, "seed": args.seed, "steps": args.steps,
        "train_seconds": round(time.perf_counter() - started, 1), "threads": args.threads,
        "final_val_teacher_forced": acc, "data": "easy-VQA 1.0 train split (MIT, Victor Zhou)",
    }
    (out / "canary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    emit({"event": "done", **{k: summary[k] for k in ("train_seconds", "final_val_teacher_forced")}})
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
