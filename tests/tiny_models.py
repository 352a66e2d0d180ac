"""Tiny randomly initialised models, built from configs and saved like real checkpoints.

No weights can be downloaded here, so tests build models whose loading path is the real one:
`save_pretrained` writes a folder (config.json, model.safetensors, processor and tokenizer files,
chat template), and the code under test loads it with `AutoProcessor` / `AutoModel*`.

- `build_tiny_llava(folder)`: LLaVA (CLIP vision tower 32 px / patch 8 -> 16 image tokens, Llama text
  model, hidden size 32, ~70k parameters) with a byte-level BPE tokenizer trained here on a small corpus
  ("<pad>", "<s>", "</s>", "<image>" special), a `CLIPImageProcessor` and a `LlavaProcessor` whose chat
  template renders image parts as "<image>" and text parts as their text.
- `build_tiny_clip(folder)`: CLIPModel (text + vision towers, hidden size 32, projection 16) with a
  CLIP-style BPE tokenizer trained here (loads as `CLIPTokenizer` through `AutoTokenizer`) and a
  `CLIPProcessor`.

Both are seeded (same weights on every build, without touching the caller's RNG state), idempotent
(a complete folder is returned as is) and written to a temporary folder first, then renamed, so a
half-built folder is never mistaken for a model. Building takes well under a second after imports.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED = 0
IMAGE_SIZE = 32  # pixels; CLIP vision tower input (square)
PATCH_SIZE = 8  # -> (32 / 8) ** 2 = 16 patches, plus CLS
LLAVA_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # CLS dropped ("default" feature selection)
CLIP_MAX_TOKENS = 77  # CLIP's text context length

# Lines like the ones our prompts and answers hold, so the trained merges make sense.
CORPUS: tuple[str, ...] = (
    "Pick up the apple from the dining table and put it on the counter top.",
    "Open the fridge, cool the mug, close the fridge and place it in the cabinet.",
    "Heat the potato in the microwave, then slice it with the knife.",
    "Turn on the desk lamp and look at the book on the desk.",
    "Clean the soap bar in the sink basin and put it on the shelf.",
    "Step 3: GotoLocation(CounterTop). Step 4: PickupObject(Apple). Step 5: PutObject(Fridge).",
    "Analyse the frames and the actions: which action moved the task forward?",
    "Score each step from 0 to 10 according to its contribution to the task.",
    'Answer as JSON: {"scores": [{"t": 0, "score": 7, "reason": "picked up the apple"}]}',
    "a photo of a kitchen, a bedroom, a bathroom and a living room",
    "The agent walks to the sofa, picks up the pillow and puts it on the bed.",
)
LLAVA_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<image>")
CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")

# Renders {"type": "image"} parts as the processor's image token and text parts as text, one
# "role: content" line per message, then "assistant: " when a generation prompt is asked for.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)

_COMPLETE_MARKERS = ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json")


def build_tiny_llava(folder: Path) -> Path:
    """A tiny random LLaVA checkpoint in `folder` (built once; later calls return it as is)."""
    return _build_once(Path(folder), _write_tiny_llava)


def build_tiny_clip(folder: Path) -> Path:
    """A tiny random CLIP checkpoint (model, tokenizer, processor) in `folder` (built once)."""
    return _build_once(Path(folder), _write_tiny_clip)


def _build_once(folder: Path, write: Callable[[Path], None]) -> Path:
    if all((folder / name).is_file() for name in _COMPLETE_MARKERS):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        if folder.exists():  # an incomplete earlier attempt
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished first
            if not all((folder / name).is_file() for name in _COMPLETE_MARKERS):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_tiny_llava(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    # Byte-level BPE: every byte is in the alphabet, so any prompt can be encoded.
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(LLAVA_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",  # decoder-only generation pads on the left
    )
    image_token_id = tokenizer.get_vocab()["<image>"]

    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=LLAVA_IMAGE_TOKENS,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = _seeded(lambda: LlavaForConditionalGeneration(config), torch)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    processor = LlavaProcessor(
        image_processor=_tiny_image_processor(CLIPImageProcessor),
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLIP vision tower's CLS token
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _write_tiny_clip(out: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = _train_clip_bpe()
    # Merges as pairs: what the tokenizers BPE model takes (the annotation says strings).
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_TOKENS)  # type: ignore[arg-type]
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": CLIP_MAX_TOKENS,
            # The text tower pools at the first end-of-text token, so it must know its id.
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        projection_dim=16,
    )
    model = _seeded(lambda: CLIPModel(config), torch)
    processor = CLIPProcessor(image_processor=_tiny_image_processor(CLIPImageProcessor), tokenizer=tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _train_clip_bpe() -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """Vocabulary and merges for `CLIPTokenizer`, trained with CLIP's own normalizer and pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(CLIP_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    model = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    # Like CLIP's real vocabulary, hold every byte both inside and at the end of a word, so text
    # outside the corpus never falls back to the unknown token.
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        for piece in (char, f"{char}</w>"):
            vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return vocab, merges


def _tiny_image_processor(cls: Any) -> Any:
    return cls(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def _seeded(make: Callable[[], Any], torch: Any) -> Any:
    """Build under a fixed seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return make()
