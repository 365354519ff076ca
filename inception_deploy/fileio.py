"""Atomic writes: every artifact is written under a temporary name beside its destination and
renamed into place only when complete, so a crash, an error or a signal never leaves half a
file; a failed write (disk full, permission, read-only) is one line naming the destination."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InceptionDeployError

# errors that mean "this destination cannot be written", whoever raised them
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class Kind:
    """A kind of file the toolkit writes, and how to tell an existing file of that kind: an output
    replaces only a file the toolkit wrote itself (what a re-run writes again), never a user's."""

    name: str  # for messages: "a parity report of inception-deploy"
    recognise: Callable[[Path], bool]  # whether the existing file at a path is one of ours


def json_kind(name: str, keys: Iterable[str], list_of_objects: bool = False) -> Kind:
    """A JSON document (an object, or a list of objects) that has every one of ``keys``."""
    keys = frozenset(keys)

    def recognise(path: Path) -> bool:
        document = small_json(path)
        items = document if list_of_objects and isinstance(document, list) else [document]
        return all(isinstance(item, dict) and keys <= item.keys() for item in items)

    return Kind(name, recognise)


def small_json(path: Path, limit: int = 64 << 20):
    """The JSON document at ``path``, or None where it is not one (not a regular file, whose read
    could block, or too large to be a report)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _head_and_tail(path: Path, size: int = 4096) -> tuple[bytes, bytes]:
    try:
        with open(path, "rb") as f:
            head = f.read(size)
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
            return head, f.read(size)
    except OSError:
        return b"", b""


def _matplotlib_png(path: Path) -> bool:
    head, _ = _head_and_tail(path)
    return head.startswith(b"\x89PNG") and b"Matplotlib" in head  # matplotlib's Software text chunk


PLOT = Kind("a plot of inception-deploy (a PNG matplotlib wrote)", _matplotlib_png)
POLYGRAPHY_OUTPUTS = Kind(
    "a Polygraphy RunResults file", lambda path: b'"polygraphy_class": "RunResults"' in _head_and_tail(path)[1]
)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, kind: Kind):
    """Yield a temporary path in ``dest``'s folder; on success it replaces ``dest``, which may
    only be missing or a file of ``kind``."""
    dest = Path(dest)
    _check_replaceable(dest, kind)
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
        except Exception as e:
            failure = write_failure(e)
            if failure is not None and failure.filename in (None, name):
                raise InceptionDeployError(f"{dest}: cannot write ({failure.strerror})") from None
            raise
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp, dest)
        except OSError as e:
            raise InceptionDeployError(f"{dest}: cannot write ({e.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_json(dest: str | os.PathLike, document, kind: Kind) -> None:
    """``document`` as indented JSON at ``dest``, atomically."""
    with atomic_path(dest, kind) as tmp:
        tmp.write_text(json.dumps(document, indent=1))


def write_failure(e: BaseException) -> OSError | None:
    """The OSError meaning "the destination cannot be written" behind ``e``, also where a library
    (torch's exporter, onnx) wrapped it in an error of its own; None where there is none."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def check_writable(dest: str | os.PathLike, kind: Kind, inputs: Iterable = ()) -> None:
    """Fail fast, before slow work, when ``dest`` could not be written later: its folder is not
    writable, it exists and is not a file of ``kind``, or it is one of the command's ``inputs``."""
    dest = Path(dest)
    for given in inputs:
        if given is not None and _same_file(dest, Path(given)):
            raise InceptionDeployError(f"{dest}: is also an input of this command; refusing to write over it")
    _check_replaceable(dest, kind)
    check_folder_writable(dest.parent, dest)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_folder_writable(folder: Path, dest: Path) -> None:
    """Fail fast when ``dest`` cannot be created in ``folder`` (or the nearest existing parent)."""
    existing = next(p for p in (folder, *folder.parents) if os.path.exists(p))
    if not existing.is_dir():
        raise InceptionDeployError(f"{dest}: cannot write there ({existing} is not a folder)")
    try:
        fd, name = tempfile.mkstemp(dir=existing, prefix=f".{dest.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise InceptionDeployError(f"{dest}: cannot write there ({e.strerror})") from None


def _check_replaceable(dest: Path, kind: Kind) -> None:
    """An output may replace a regular file of its own kind (an empty file too), never a folder,
    a device, a FIFO, a socket or a file the toolkit did not write."""
    if dest.is_dir():
        raise InceptionDeployError(f"{dest}: is a folder; give a file name")
    if dest.exists() and not dest.is_file():
        raise InceptionDeployError(
            f"{dest}: exists and is not a regular file (a device, FIFO or socket); refusing to replace it"
        )
    if dest.is_file() and dest.stat().st_size and not kind.recognise(dest):
        raise InceptionDeployError(
            f"{dest}: exists and is not {kind.name}; refusing to replace it (remove it, or choose another name)"
        )


def check_input_file(path: Path, what: str, error=InceptionDeployError) -> None:
    """``path`` must be a non-empty regular file: a folder, a missing or an empty file is one line."""
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    if path.stat().st_size == 0:
        raise error(f"{path}: {what} file is empty")


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
