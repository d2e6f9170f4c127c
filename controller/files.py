"""Files the commands write whole or not at all: a trace from ``tidal trace``, a plot.

A long run that ends in a write should neither lose what was there (a failed write over an
existing plot) nor leave half a file a reader takes for a whole one (a PNG cut short by a full
disk). So a regular file is written beside itself and renamed over, and a folder is checked
before the run by creating a file in it, as the write will: a permission check alone passes for
root on a read-only mount or in ``/proc``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["creation_problem", "written_whole"]


def creation_problem(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, or None: one is created there and removed."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".tidal-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(handle)
    Path(probe).unlink(missing_ok=True)
    return None


@contextmanager
def written_whole(path: Path, *, prefix: str, text: bool) -> Iterator[IO[Any]]:
    """A file to write ``path``'s content to (UTF-8 text as it is given, when ``text``, else
    bytes), in place only once the block ends without an error.

    A regular file, a new one, or the file a symlink names, is written to a temporary file
    beside it (named ``prefix``...) and renamed over it: a failure or an interrupt leaves what
    was there. It keeps an existing file's permission bits (not set-user or set-group-ID) and,
    written by root, its owner; a new one gets what the umask gives. Anything else that exists
    (a FIFO, a terminal, ``/dev/null``) is written as it is.
    """
    how = "w" if text else "wb"
    encoding, newline = ("utf-8", "") if text else (None, None)
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        with open(path, how, encoding=encoding, newline=newline) as out:
            yield out
        return
    target = Path(os.path.realpath(path))
    if info is not None:
        mode = info.st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(handle, mode)
        if info is not None and os.geteuid() == 0 and (info.st_uid, info.st_gid) != (0, 0):
            os.fchown(handle, info.st_uid, info.st_gid)
        with os.fdopen(handle, how, encoding=encoding, newline=newline) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
