"""LVLM backends behind one interface, chosen by name from an explicit table (no import side effects)."""

from __future__ import annotations

from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.backends.base import Backend, BackendConfig, BackendFactory


def _openai(config: BackendConfig) -> Backend:
    from rgvlm_core.labeling.backends.openai_http import OpenAIBackend

    return OpenAIBackend(config)


def _hf(config: BackendConfig) -> Backend:
    from rgvlm_core.labeling.backends.hf_local import TransformersBackend

    return TransformersBackend(config)


BACKENDS: dict[str, BackendFactory] = {"openai": _openai, "hf": _hf}


def make_backend(name: str, config: BackendConfig) -> Backend:
    """Build a backend by name: `openai` (any OpenAI-compatible server) or `hf` (local transformers)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    return factory(config)
