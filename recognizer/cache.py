"""On-disk cache of gallery face encodings, keyed by the SHA-256 of the image bytes and the encoding parameters,
so a restart (or a gallery of 1,000 people) re-encodes nothing that has not changed.

One ``<key>.npy`` file per image (128 float64, 1 KiB), written atomically. A corrupt entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facebus.files import write_atomically

log = logging.getLogger(__name__)


class EncodingCache:
    def __init__(self, directory: Path | None, params: str) -> None:
        """``directory`` None disables caching; ``params`` names what else determines the encoding (model, jitters)."""
        self.directory = Path(directory).expanduser() if directory else None
        self.params = params
        self.hits = self.misses = 0

    def key(self, data: bytes) -> str:
        return hashlib.sha256(self.params.encode() + b"\0" + data).hexdigest()

    def get_or_compute(self, data: bytes, compute: Callable[[bytes], np.ndarray]) -> np.ndarray:
        """The cached encoding of ``data``, or ``compute(data)`` stored for next time (exceptions pass through)."""
        if self.directory is None:
            return compute(data)
        path = self.directory / f"{self.key(data)}.npy"
        try:
            encoding = np.load(path)
            if encoding.shape == (128,):
                self.hits += 1
                return encoding
        except (OSError, ValueError):
            pass
        self.misses += 1
        encoding = compute(data)
        try:
            buffer = io.BytesIO()
            np.save(buffer, encoding)
            write_atomically(path, buffer.getvalue())
        except OSError as exc:
            log.warning("encoding cache %s not writable: %s", self.directory, exc)
        return encoding

    def discard(self, data: bytes) -> bool:
        """Delete the cached encoding of ``data`` (e.g. when its person is forgotten); whether there was one."""
        if self.directory is None:
            return False
        try:
            (self.directory / f"{self.key(data)}.npy").unlink()
            return True
        except FileNotFoundError:
            return False
