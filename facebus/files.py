"""Files every part writes whole: gallery photos in a folder, cached encodings, face crops, broker secrets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | Path, data: bytes, mode: int = 0o644, owner_uid: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part: a temporary
    file in the same folder (created 0600, so a secret is never readable by others meanwhile), fsync, ``mode``,
    owner ``owner_uid`` when given, then a rename over ``path``. Missing parent folders are created.

    Raises OSError (the temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            if owner_uid is not None:
                os.fchown(out.fileno(), owner_uid, -1)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
