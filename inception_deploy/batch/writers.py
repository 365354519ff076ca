"""Where a batch job's rows go: JSON Lines appended batch by batch, or Parquet renamed into place,
each with the record of the run that wrote it beside it; resuming reads what is done."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError, InceptionDeployError, first_line, setting
from ..fileio import Kind, check_writable, json_kind, sha256_file, write_json
from ..inputs import is_uri
from ..metadata import load_json
from .session import require_ray

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"{path}: unknown output format {suffix or '(no suffix)'}; use .jsonl or .parquet")
    return OUTPUT_FORMATS[suffix]


def record_path(output: str | os.PathLike) -> Path:
    """``tags.jsonl`` -> ``tags.jsonl.run.json``: which model and preprocessing wrote the output."""
    return Path(f"{output}.run.json")


RUN_RECORD = json_kind("a run record of inception-run", ("model", "model_sha256", "preprocess", "labels_sha256"))
# an output is ours when the record of the run that wrote it lies beside it
BATCH_OUTPUT = Kind(
    "an output of inception-run (with its run record beside it)", lambda path: RUN_RECORD.recognise(record_path(path))
)


def check_output(output: str | os.PathLike, resume: bool, inputs=()) -> None:
    """Before anything slow: a known format, a writable place, no earlier output replaced, and
    only an output of inception-run resumed; and Ray is installed."""
    require_ray()
    output_format(output)
    if resume and Path(output).is_file() and not BATCH_OUTPUT.recognise(Path(output)):
        raise ConfigError(
            f"{output}: not an output of inception-run (no run record {record_path(output).name} beside it); "
            f"cannot resume it"
        )
    check_writable(output, BATCH_OUTPUT, inputs)
    check_writable(record_path(output), RUN_RECORD, inputs)
    if Path(output).exists() and not resume:
        raise ConfigError(
            f"{output}: exists; {setting('resume')} continues it (skipping inputs it has a row for), or name another"
        )


def run_record(model: Path, config, labels: list[str]) -> dict:
    """What makes two runs' rows comparable: the model file, its preprocessing and its labels; and
    the folder the run started in, which the relative names in its rows are relative to."""
    return {
        "model": str(model),
        "model_sha256": sha256_file(model),
        "preprocess": config.to_dict(),
        "labels_sha256": hashlib.sha256("\n".join(labels).encode()).hexdigest(),
        "cwd": os.getcwd(),
    }


def check_same_run(output: Path, record: dict) -> str | None:
    """Resuming continues the rows of the same model, preprocessing and labels, never mixes them.
    The folder the output's first run started in (None in records older than that field)."""
    path = record_path(output)
    before = load_json(path.read_bytes(), path, "run record")
    differs = [
        what
        for key, what in (
            ("model_sha256", "another model"),
            ("preprocess", "other preprocessing"),
            ("labels_sha256", "other labels"),
        )
        if before.get(key) != record[key]
    ]
    if differs:
        raise ConfigError(
            f"{output}: was written with {' and '.join(differs)} ({before.get('model')}, per {path.name}); "
            f"resuming would mix rows that cannot be compared: name another output"
        )
    return before.get("cwd") if isinstance(before.get("cwd"), str) else None


def stored_name(name: str) -> str:
    """A file name as rows store it: a name that is not UTF-8 (bytes Python keeps as surrogate
    escapes) gets backslash escapes, which JSON and Parquet can hold."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def schema(pa):
    fields = [
        ("file", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("indices", pa.list_(pa.int64())),
        ("probabilities", pa.list_(pa.float64())),
        ("error", pa.string()),
    ]
    return pa.schema(fields)


class Done:
    """How many rows an output holds for each input, to skip that many of its mentions when
    resuming. Inputs are matched by absolute path (``a.jpg`` and ``./a.jpg`` are one file, from
    the folder the run started in) and held as 64-bit digests, 16 bytes per distinct input
    however long its name: a million rows cost megabytes, not the names' hundreds. Two names
    share a digest with a chance of about 1 in 10^7 at 10^6 distinct inputs (birthday bound)."""

    def __init__(self, names: Iterable[str] = ()):
        self.relative = False  # whether any row names a file by a relative path

        def digest(name: str) -> np.uint64:
            self.relative = self.relative or not (is_uri(name) or os.path.isabs(name))
            return _digest(name)

        digests = np.fromiter(map(digest, names), dtype=np.uint64)  # 8 bytes a row while reading
        self.keys, self.counts = np.unique(digests, return_counts=True)
        self.rows = len(digests)

    def take(self, name: str) -> bool:
        """Whether ``name`` has a row not yet matched to an earlier mention (and match it)."""
        if not self.rows:
            return False
        digest = _digest(name)
        k = int(np.searchsorted(self.keys, digest))
        if k == len(self.keys) or self.keys[k] != digest or not self.counts[k]:
            return False
        self.counts[k] -= 1
        return True


def _digest(name: str) -> np.uint64:
    name = name if is_uri(name) else os.path.abspath(name)
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()))


_ROW_START = b'{"file": '  # how json.dumps begins every row (the file column comes first)


@contextlib.contextmanager
def _writing(path: Path):
    """A full disk or a vanished folder is one line naming the output, not a traceback."""
    try:
        yield
    except OSError as e:
        raise InceptionDeployError(f"{path}: cannot write ({e.strerror or first_line(e)})") from None


class _Output:
    """What both formats share: a new output starts with the record of its run beside it (the
    proof, when resuming, that the file is ours); a run that wrote no row leaves neither."""

    def __init__(self, path: Path, record: dict, started_in: str | None = None):
        self.path, self.done, self.dropped_partial_row, self.failed_before = path, Done(), False, 0
        self.created, self.rows, self.started_in = not path.exists(), 0, started_in
        if self.created:
            write_json(record_path(path), record, RUN_RECORD)

    def _resumed(self, done: Done) -> None:
        """The rows read, before anything is changed: relative names in them are relative to the
        folder the first run started in (``started_in``, from its record); resumed from another,
        they would name other files and those inputs would be classified again."""
        if done.relative and self.started_in is not None and self.started_in != os.getcwd():
            raise ConfigError(
                f"{self.path}: its rows name files relative to {self.started_in}, where its first run started; "
                f"run {setting('resume')} from there"
            )
        self.done = done

    def _forget_if_empty(self) -> bool:
        """A run that wrote no row into a new output leaves neither it nor its record."""
        empty = self.created and not self.rows
        if empty:
            self.path.unlink(missing_ok=True)
            record_path(self.path).unlink(missing_ok=True)
        return empty


class JsonLines(_Output):
    """Rows appended as JSON lines, flushed per batch; whatever ends a run, the file holds whole
    rows only (an incomplete last row, from a killed process, is removed before resuming)."""

    def __init__(self, path: Path, record: dict, started_in: str | None = None):
        super().__init__(path, record, started_in)
        if not self.created:
            self._read_done()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def _read_done(self) -> None:
        """The rows already written, read line by line (a million rows in seconds, megabytes
        held); an incomplete last line begun as our rows are is cut off."""
        partial: list = []  # the size of the whole rows, then the incomplete line
        self._resumed(Done(self._names_written(partial)))
        if partial:  # the file is ours (its run record), and so is a row begun as ours are
            whole, line = partial
            if not line.startswith(_ROW_START):
                raise InceptionDeployError(
                    f"{self.path}: its last line is neither a whole row nor the start of one; cannot resume it"
                )
            with open(self.path, "r+b") as f:
                f.truncate(whole)
            self.dropped_partial_row = True

    def _names_written(self, partial: list):
        """Each whole row's file; an incomplete last line goes to ``partial`` (with the size of
        what comes before it)."""
        whole = 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    partial += [whole, line]
                    return
                whole += len(line)
                try:
                    row = json.loads(line)
                    if not isinstance(row["file"], str) or ("error" in row) == ("indices" in row):
                        raise ValueError("not a row of ours")
                except (ValueError, TypeError, KeyError):
                    raise InceptionDeployError(
                        f"{self.path}: line {number} is not a row of inception-run's output; cannot resume it"
                    ) from None
                self.failed_before += "error" in row
                yield row["file"]

    def write(self, rows: list[dict]) -> None:
        if rows:  # one write per batch: a row is never split by an interrupt between writes
            text = "".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows)
            with _writing(self.path):
                self.file.write(text)
                self.file.flush()
            self.rows += len(rows)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a full disk: the row it cut short is removed below
            self.file.close()
        if self._forget_if_empty():  # a run that failed before its first row leaves nothing
            return
        with open(self.path, "r+b") as f:  # a signal during the flush, or a full disk: drop the incomplete row
            end = f.seek(0, os.SEEK_END)
            while end:  # back from the end, a block at a time, to the last newline
                start = max(0, end - 2**16)
                f.seek(start)
                newline = f.read(end - start).rfind(b"\n")
                if newline >= 0:
                    f.truncate(start + newline + 1)
                    break
                end = start
            else:
                f.truncate(0)


class Parquet(_Output):
    """Rows buffered into row groups of a temporary file beside the output (the rows of the
    output being resumed first), renamed over it when the run ends, interrupted or not, if it
    added a row; a process killed outright leaves the output as it was (its rows are lost, and
    its temporary file is removed by the next run on the output)."""

    ROW_GROUP = 4096

    def __init__(self, path: Path, record: dict, started_in: str | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(path, record, started_in)
        self.pa, self.schema, self.buffer = pa, schema(pa), []
        previous = None
        if not self.created:
            try:
                previous = pq.ParquetFile(path)
                names = previous.schema_arrow.names
                if sorted(names) != sorted(self.schema.names):
                    raise ValueError(f"its columns are {', '.join(names)}")
                done = Done(self._names_written(previous))
            except Exception as e:  # pyarrow's ArrowInvalid and friends
                raise InceptionDeployError(
                    f"{path}: not a Parquet output of inception-run ({first_line(e)}); cannot resume it"
                ) from None
            self._resumed(done)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_killed_runs_files(path)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(name)
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
        if previous is not None:  # the earlier rows first, a row group at a time
            for group in range(previous.num_row_groups):
                self.writer.write_table(previous.read_row_group(group).select(self.schema.names).cast(self.schema))
            previous.close()

    @staticmethod
    def _remove_killed_runs_files(path: Path) -> None:
        """The temporary file a run killed outright (SIGKILL) left beside the output: named as
        this writer names its own, and a Parquet file (or empty, killed before its first byte)."""
        for left in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            if not left.is_file():  # a FIFO would block the read
                continue
            with contextlib.suppress(OSError):
                with open(left, "rb") as f:
                    ours = f.read(4) in (b"PAR1", b"")
                if ours:
                    left.unlink()

    def _names_written(self, previous):
        """Each earlier row's file, read a batch of the two columns at a time."""
        for batch in previous.iter_batches(columns=["file", "error"]):
            self.failed_before += len(batch) - batch.column("error").null_count
            yield from batch.column("file").to_pylist()

    def write(self, rows: list[dict]) -> None:
        self.buffer += rows
        self.rows += len(rows)
        if len(self.buffer) >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            with _writing(self.path):
                self.writer.write_table(self.pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        try:
            self._flush()
            self.writer.close()
            if self.rows:  # a run that failed before its first row leaves the output as it was
                os.chmod(self.tmp, 0o644)
                os.replace(self.tmp, self.path)
            self._forget_if_empty()
        finally:
            self.tmp.unlink(missing_ok=True)
