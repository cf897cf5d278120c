"""How the mount cache keeps a file: spans, documents and prepared trees alike.

Written beside its name and renamed, so a reader never sees a part; best effort, because a full
or read-only cache costs speed, never correctness (everything kept is verified when read back).
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def keep_file(path: str, data: bytes | memoryview, dir_mode: int = 0o777) -> None:
    """Write ``data`` at ``path`` atomically; an ``OSError`` leaves nothing behind and is ignored."""
    directory = os.path.dirname(path)
    tmp = ""
    try:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)[:16]}.", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        tmp = ""
    except OSError:
        pass
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
