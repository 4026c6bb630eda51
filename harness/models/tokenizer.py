"""An offline byte-level BPE tokenizer with Qwen's special tokens and chat template.

No download: a BPE is trained with `tokenizers` on a small corpus generated here from a fixed
seed, using Qwen2's pre-tokenizer (its split regex, then ByteLevel) so text is split the way the
real Qwen tokenizer splits it. The special tokens follow the real vocabulary's order, so
``<|image_pad|>`` is ``<|endoftext|>`` + 12 as in Qwen2.5-VL (151655 = 151643 + 12).
"""

from __future__ import annotations

import json
import random
from typing import Dict, List, Tuple

BPE_VOCAB_SIZE = 2048
CORPUS_SEED = 1234

# Qwen2-VL / Qwen2.5-VL special tokens, in the order of their ids in the real vocabulary.
SPECIAL_TOKENS: Tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL's published chat template: each image or video becomes
# <|vision_start|><|image_pad|><|vision_end|> (or <|video_pad|>), which the processor expands to
# one pad token per merged patch.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "the a an of in on at to from with and or but is are was were be been has have had this that "
    "these those it its there here what which who where when how why describe explain count list "
    "image picture photo photograph frame frames video clip scene shot view camera pan zoom left "
    "right top bottom middle center corner background foreground near far above below behind front "
    "red green blue yellow orange purple pink brown black white gray grey dark light bright color "
    "colour shape circle square triangle rectangle line dot person people man woman child dog cat "
    "bird car bus bike train road street building house window door tree trees grass sky cloud "
    "clouds sun water river sea lake mountain hill field flower flowers table chair cup book sign "
    "text number one two three four five six seven eight nine ten first second last next moves "
    "moving walks walking runs running stands standing sits sitting holds holding looks looking "
    "appears shows contains happens changes during after before while slowly quickly small large "
    "big little tall short long wide narrow old new happy busy quiet empty full open closed answer "
    "question yes no maybe because then also very more most some many few all each every other "
    "you your i my we our they their he she his her me us them assistant user system helpful"
).split()
_PUNCT = (".", ".", ".", "?", "!", ",", ";", ":")


def _pseudo_words(rng: random.Random, count: int) -> List[str]:
    """Syllable-built words, so the BPE has enough material for a few thousand merges."""
    onsets = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
              "st", "tr", "ch", "sh", "th", "pr", "gr", "bl")
    vowels = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y")
    codas = ("", "", "n", "r", "s", "t", "l", "ng", "ck", "nd")
    return [
        "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(rng.randint(1, 3)))
        for _ in range(count)
    ]


def training_corpus(seed: int = CORPUS_SEED, n_sentences: int = 4000) -> List[str]:
    """A deterministic corpus: sentences of common words, invented words and numbers."""
    rng = random.Random(seed)
    vocabulary = list(_WORDS) + _pseudo_words(rng, 600)
    lines = []
    for _ in range(n_sentences):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(4, 16))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 2025)))
        sentence = " ".join(words)
        lines.append(sentence[0].upper() + sentence[1:] + rng.choice(_PUNCT))
    return lines


def train_bpe(vocab_size: int = BPE_VOCAB_SIZE, seed: int = CORPUS_SEED) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Train the byte-level BPE; returns (vocab, merges) without special tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        # every byte is in the vocabulary, so any text (and any random-weight output) round-trips
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_corpus(seed), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def build_tokenizer() -> "object":
    """A ``Qwen2Tokenizer`` with the BPE above, Qwen's special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    vocab, merges = train_bpe()
    base = len(vocab)
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = base + offset
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",  # as Qwen2.5-VL-Instruct: generation stops at the end of a turn
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        errors="replace",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
