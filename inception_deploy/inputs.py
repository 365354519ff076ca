"""Which image files a list of user inputs (files, folders, glob patterns, URIs, list files)
means, and why any of them cannot be used.

Nothing is lost or hidden: an unreadable file or folder, an empty folder, a pattern that
matches nothing, a dangling symbolic link or a device file becomes an ``InputError`` in its
place, so the caller reports it on one line and still processes everything else.
"""

from __future__ import annotations

import functools
import glob
import io
import os
import re
import stat
import threading
import time
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import InceptionDeployError
from .fileio import sha256_file
from .preprocess import PreprocessConfig, describe_image_error, describe_os_error, load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
LIST_SUFFIXES = {".txt", ".lst"}  # a file listing inputs, one per line
MAX_FETCH_BYTES = 256 * 2**20  # an image behind a URI larger than this is refused before it is read whole
FETCH_TIMEOUT_S = 30  # for the connection and each read
FETCH_DEADLINE_S = 120  # for the whole download, however slowly the bytes trickle in
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class InputError:
    """An input that names no usable image file, and why."""

    name: str
    reason: str


def is_uri(source: object) -> bool:
    """``http(s)://``, ``s3://``, ``gs://``...: an image read over the network, not a local path."""
    return isinstance(source, str) and bool(_URI.match(source))


def expand_inputs(inputs: Iterable[str], lists: bool = True) -> list[str | InputError]:
    """``iter_inputs`` as a list."""
    return list(iter_inputs(inputs, lists))


def iter_inputs(inputs: Iterable[str], lists: bool = True) -> Iterator[str | InputError]:
    """Files as given, folders recursively (image suffixes, sorted), glob patterns expanded
    (sorted), URIs as given, and a ``.txt``/``.lst`` file replaced by the inputs it lists (one per
    line, blank lines and ``#`` comments skipped, relative paths from the list's folder); every
    input that yields no image leaves an InputError in its place. Lazily: a list file is read and
    a folder walked as the caller asks for more, so a million inputs are never all held at once
    (a glob's matches are, to sort them)."""
    for item in map(str, inputs):
        if is_uri(item):
            yield item
        elif "\0" in item:  # no file name holds one (a line of a list file may)
            yield InputError(item.replace("\0", "\\0"), "a file name cannot hold a NUL byte")
        elif lists and Path(item).suffix.lower() in LIST_SUFFIXES and os.path.isfile(item):
            yield from iter_inputs(_listed(item), lists=False)
        else:
            yield from _expand_path(item)


def _expand_path(item: str) -> Iterator[str | InputError]:
    try:
        mode = os.stat(item).st_mode
    except FileNotFoundError:
        if os.path.islink(item):
            yield InputError(item, "dangling symbolic link")
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            yield from matches or [InputError(item, "no file matches this pattern")]
        else:
            yield InputError(item, "no such file or folder")
        return
    except OSError as e:
        yield InputError(item, describe_os_error(e))
        return
    if stat.S_ISDIR(mode):
        found = False
        for entry in walk_images(item):
            found = found or not isinstance(entry, InputError)
            yield entry if isinstance(entry, InputError) else str(entry)
        if not found:
            yield InputError(item, f"no images in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    elif stat.S_ISREG(mode):
        yield item
    else:  # a FIFO or device would block or never end
        yield InputError(item, "not a regular file")


def _listed(list_file: str) -> Iterator[str | InputError]:
    """The inputs a list file names (relative paths from the list's own folder), line by line as
    they are asked for; a line that is not UTF-8 names a file the way the file system does
    (surrogate escapes), and a read that fails part-way is an InputError where it failed."""
    base = Path(list_file).parent
    number = 0
    try:
        with open(list_file, "rb") as f:
            for number, raw in enumerate(f, 1):
                line = os.fsdecode(raw.strip())
                if line and not line.startswith("#"):
                    yield line if is_uri(line) or os.path.isabs(line) else str(base / line)
    except OSError as e:
        where = f" after line {number}" if number else ""
        yield InputError(list_file, f"cannot read this list of inputs{where}: {describe_os_error(e)}")


def fetch_uri(uri: str, stop: threading.Event | None = None, deadline: float = FETCH_DEADLINE_S) -> io.BytesIO:
    """The bytes behind ``uri`` (http and https with urllib; s3://, gs://, hdfs:// and others
    through pyarrow's file systems, which the ray extra installs), at most MAX_FETCH_BYTES, within
    ``deadline`` seconds. The download runs in a daemon thread that the caller stops waiting
    for at the deadline or as soon as ``stop`` is set (Ctrl-C): a server that trickles bytes
    never holds a command, nor its exit, for longer."""
    result: dict = {}

    def download():
        try:
            result["data"] = _download(uri)
        except Exception as e:  # handed to the waiting caller
            result["error"] = e

    thread = threading.Thread(target=download, name="inception-fetch", daemon=True)
    thread.start()
    until = time.monotonic() + deadline
    while thread.is_alive():
        thread.join(0.2)
        if stop is not None and stop.is_set():
            raise OSError("stopped")
        if time.monotonic() > until:
            raise OSError(f"no complete answer within {deadline:g} s")
    if "error" in result:
        raise result["error"]
    buffer = io.BytesIO(result["data"])
    buffer.name = uri
    return buffer


def _download(uri: str) -> bytes:
    if uri.lower().startswith(("http://", "https://")):
        stream = urllib.request.urlopen(uri, timeout=FETCH_TIMEOUT_S)
    else:
        try:
            from pyarrow import fs
        except ImportError:
            raise OSError(f"{uri.split(':', 1)[0]}:// needs pyarrow (pip install 'inception-deploy[ray]')") from None
        filesystem, path = fs.FileSystem.from_uri(uri)
        stream = filesystem.open_input_stream(path)
    with stream:
        data = stream.read(MAX_FETCH_BYTES + 1)
    if len(data) > MAX_FETCH_BYTES:
        raise OSError(f"larger than {MAX_FETCH_BYTES / 2**20:g} MB")
    return data


def scan_folder(folder: str | os.PathLike) -> tuple[list[Path], list[InputError]]:
    """Image files under ``folder`` (recursively, sorted; symbolic links to folders are not
    followed) and the problems met on the way: unreadable folders, dangling links, device files."""
    files: list[Path] = []
    problems: list[InputError] = []
    for entry in walk_images(folder):
        (problems if isinstance(entry, InputError) else files).append(entry)
    return files, problems


def walk_images(folder: str | os.PathLike) -> Iterator[Path | InputError]:
    """``scan_folder``'s files and problems one at a time, in path order (a folder's entries
    sorted by name, a subfolder's files where its name falls): only one folder's listing is held."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as e:
        yield InputError(e.filename or str(folder), describe_os_error(e))
        return
    for entry in entries:
        path = Path(folder, entry.name)
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from walk_images(path)
                continue
        except OSError as e:
            yield InputError(str(path), describe_os_error(e))
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            yield InputError(str(path), "dangling symbolic link")
            continue
        except OSError as e:
            yield InputError(str(path), describe_os_error(e))
            continue
        yield path if stat.S_ISREG(mode) else InputError(str(path), "not a regular file")


def sample_folder() -> Path:
    """The folder of real photos shipped with the package (see inception_deploy/data/README.md)."""
    return Path(str(resources.files("inception_deploy").joinpath("data/samples")))


def sample_photos() -> list:
    return sorted(sample_folder().glob("*.jpg"), key=lambda p: p.name)


def find_images(folder: str | os.PathLike) -> tuple[list[Path], list]:
    """The image files under ``folder`` and the (name, reason) of what could not be looked at
    (unreadable subfolders, dangling links); an error when there is no image at all."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file, not a folder of images" if folder.exists() else "no such image folder"
        raise InceptionDeployError(f"{folder}: {what}")
    files, problems = scan_folder(folder)
    if not files:
        why = (
            f"first problem: {problems[0].name}: {problems[0].reason}"
            if problems
            else f"looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
        raise InceptionDeployError(f"{folder}: no images found ({why})")
    return files, [(p.name, p.reason) for p in problems]


@dataclass(frozen=True)
class ImageFolder:
    """A folder of images listed once (``image_folder``): its image files, sorted, and the (name,
    reason) of what could not be looked at. Passed on instead of the path, so that one export
    scans its calibration folder once; it reads as the path in messages and ``os.fspath``."""

    path: Path
    files: tuple[Path, ...]
    problems: tuple[tuple[str, str], ...] = ()

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def image_folder(folder: str | os.PathLike | ImageFolder) -> ImageFolder:
    """``folder`` listed (``find_images``: an error when it holds no image), or the listing given."""
    if isinstance(folder, ImageFolder):
        return folder
    files, problems = find_images(folder)
    return ImageFolder(Path(folder), tuple(files), tuple(problems))


@functools.lru_cache(maxsize=4)
def distinct_images(files: tuple[Path, ...]) -> tuple[tuple[Path, ...], dict[Path, Path]]:
    """``files`` without byte-for-byte copies (the first of each set, in order), and each copy ->
    that first one. A copy on both sides of a hold-out would judge calibration on an image it
    saw, and copies counted as images of their own narrow an interval that assumes independent
    ones. (Re-encoded or resized copies are not found.)"""
    first: dict[str, Path] = {}
    copies: dict[Path, Path] = {}
    for path in files:
        try:
            digest = sha256_file(path)
        except OSError:
            digest = f"unreadable {path}"  # decoding reports it later, as for any unreadable image
        copies[path] = first.setdefault(digest, path)
    distinct = tuple(path for path in files if copies[path] == path)
    return distinct, {path: one for path, one in copies.items() if path != one}


def spread(files: list, count: int) -> list:
    """At most ``count`` of ``files``, evenly spread over the list (a folder sorted by class is
    sampled across classes)."""
    if len(files) <= count:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


def decoded(files: Iterable, config: PreprocessConfig, skipped: list) -> Iterator[np.ndarray]:
    """Each usable file preprocessed (H x W x 3 floats); an unusable one is appended to
    ``skipped`` as (file, reason) and passed over."""
    for path in files:
        if isinstance(path, InputError):
            skipped.append((path.name, path.reason))
            continue
        try:
            yield load_image(path, config)
        except Exception as e:  # one bad file is never fatal by itself
            skipped.append((path, describe_image_error(e)))
