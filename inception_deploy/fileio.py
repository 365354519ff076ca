"""Atomic writes: every artifact is written under a temporary name beside its destination and
renamed into place only when complete, so a crash, an error or a signal never leaves half a
file; a failed write (disk full, permission, read-only) is one line naming the destination."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import InceptionDeployError

# errors that mean "this destination cannot be written", whoever raised them
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike):
    """Yield a temporary path in ``dest``'s folder; on success it replaces ``dest``."""
    dest = Path(dest)
    if dest.is_dir():
        raise InceptionDeployError(f"{dest}: is a folder; give a file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as e:
        raise InceptionDeployError(f"{dest}: cannot write there ({e.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno in _WRITE_ERRNOS and e.filename in (None, name):
                raise InceptionDeployError(f"{dest}: cannot write ({e.strerror})") from None
            raise
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp, dest)
        except OSError as e:
            raise InceptionDeployError(f"{dest}: cannot write ({e.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(dest: str | os.PathLike) -> None:
    """Fail fast, before slow work, when ``dest`` could not be written later."""
    dest = Path(dest)
    if dest.is_dir():
        raise InceptionDeployError(f"{dest}: is a folder; give a file name")
    existing = next(p for p in (dest.parent, *dest.parent.parents) if os.path.exists(p))
    if not existing.is_dir():
        raise InceptionDeployError(f"{dest}: cannot write there ({existing} is not a folder)")
    try:
        fd, name = tempfile.mkstemp(dir=existing, prefix=f".{dest.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise InceptionDeployError(f"{dest}: cannot write there ({e.strerror})") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()
