"""
Reading export files for `collect import calls`: bytes → rows of text, with limits.

CSV (UTF-8, UTF-8 with BOM, GBK, GB18030) is transcoded once, streaming, to a normalised UTF-8
file (a `__row` column with the line number as the editor shows it, the located header row,
one width), which polars then scans in batches; XLSX and XLS go through calamine. Every refusal
is a `TableFileError` whose message names the file and, where there is one, the row.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from collect.tables_io import TableFileError, detect_encoding

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_ROWS = 5_000_000
MAX_XLSX_UNCOMPRESSED = 512 * 1024 * 1024
MAX_ZIP_RATIO = 200  # XLSX compresses ~10×; hundreds× is a bomb, not a spreadsheet
HEAD_ROWS = 30  # the header must be among the first rows (a title or two above it)
_CHUNK = 1 << 20
_ROW = "__row"

Kind = Literal["csv", "xlsx", "xls"]
Head = list[tuple[int, list[str | None]]]


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What a file is, before it is read: kind, encoding and the first rows."""

    path: Path
    kind: Kind
    encoding: str | None
    delimiter: str
    head: Head  # (row number, cells) of the first non-blank rows


@dataclass
class Table:
    """A located table: the header, the number of data rows, and the rows in batches."""

    path: Path
    kind: Kind
    encoding: str | None
    sha256: str
    header: list[str | None]
    header_row: int
    data_rows: int
    _frame_source: Callable[[], pl.LazyFrame]
    _cleanup: list[Path] = field(default_factory=list)

    def batches(self, size: int = 20_000) -> Iterator[list[tuple[int, list[str | None]]]]:
        """(row number, cells) below the header, in batches of `size`, in file order."""
        for frame in self._frame_source().collect_batches(chunk_size=size, maintain_order=True):
            rows = frame.rows()
            yield [(int(r[0]), list(r[1:])) for r in rows]

    def rows(self, size: int = 20_000) -> Iterator[tuple[int, list[str | None]]]:
        for batch in self.batches(size):
            yield from batch

    def repeated(self, column: int) -> frozenset[str]:
        """Values of data column `column` (0-based) found on more than one row, in one lazy pass."""
        name = f"c{column}"
        frame = (
            self._frame_source()
            .select(pl.col(name).str.strip_chars())
            .filter(pl.col(name).is_not_null() & (pl.col(name) != ""))
            .group_by(name)
            .len()
            .filter(pl.col("len") > 1)
            .collect()
        )
        return frozenset(str(v) for v in frame[name].to_list())

    def close(self) -> None:
        for path in self._cleanup:
            path.unlink(missing_ok=True)
        self._cleanup.clear()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sniff(path: Path, *, max_bytes: int | None = None) -> Sniffed:
    """Refuse what is not a table (or is too large, or a zip bomb); read the first rows."""
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    if not path.is_file():
        raise TableFileError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise TableFileError(f"{path}: the file is empty")
    if size > max_bytes:
        raise TableFileError(f"{path}: {size} bytes is more than the {max_bytes} allowed")
    with path.open("rb") as handle:
        start = handle.read(65536)
    if start.startswith(b"PK"):
        _check_zip(path)
        return Sniffed(path, "xlsx", None, "", _excel_head(path))
    if start.startswith(b"\xd0\xcf\x11\xe0"):  # OLE2: the old .xls format
        return Sniffed(path, "xls", None, "", _excel_head(path))
    if b"\x00" in start[:4096]:
        raise TableFileError(f"{path}: binary content, not a CSV table or a spreadsheet")
    encoding = detect_encoding(start)
    text = start.decode(encoding, errors="ignore")
    delimiter = _delimiter(text)
    head: Head = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for cells in reader:
            if len(head) >= HEAD_ROWS:
                break
            if any(c.strip() for c in cells):
                head.append((reader.line_num, list(cells)))
    except csv.Error as exc:
        raise TableFileError(f"{path}: row {reader.line_num}: not a CSV table ({exc})") from exc
    if not head:
        raise TableFileError(f"{path}: no rows")
    return Sniffed(path, "csv", encoding, delimiter, head)


def _delimiter(text: str) -> str:
    lines = [line for line in text.splitlines()[:HEAD_ROWS] if line.strip()]
    counts = {d: sum(line.count(d) for line in lines) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
    except zipfile.BadZipFile as exc:
        raise TableFileError(f"{path}: a damaged zip/XLSX file") from exc
    if "xl/workbook.xml" not in names:
        raise TableFileError(f"{path}: a zip archive but not an XLSX workbook")
    total = sum(info.file_size for info in infos)
    packed = max(1, sum(info.compress_size for info in infos))
    if total > MAX_XLSX_UNCOMPRESSED or (total > 50 * 1024 * 1024 and total / packed > MAX_ZIP_RATIO):
        raise TableFileError(
            f"{path}: unpacks to {total} bytes ({total // packed}× its size): refused as a possible zip bomb"
        )


def _excel_frame(path: Path) -> pl.DataFrame:
    import fastexcel

    try:
        reader = fastexcel.read_excel(path)
        sheet = reader.load_sheet(0, header_row=None, dtypes="string")
        frame = sheet.to_polars()
    except Exception as exc:  # calamine raises its own error types for every kind of damage
        raise TableFileError(f"{path}: not a readable spreadsheet ({exc})") from exc
    if frame.height > MAX_ROWS:
        raise TableFileError(f"{path}: {frame.height} rows is more than the {MAX_ROWS} allowed")
    return frame


def _excel_head(path: Path) -> Head:
    frame = _excel_frame(path)
    head: Head = []
    for number, cells in enumerate(frame.head(HEAD_ROWS * 3).rows(), start=1):
        if any(c is not None and str(c).strip() for c in cells) and len(head) < HEAD_ROWS:
            head.append((number, list(cells)))
    if not head:
        raise TableFileError(f"{path}: the first sheet is empty")
    return head


def load(sniffed: Sniffed, header_row: int, *, on_bytes: Callable[[int], None] | None = None) -> Table:
    """
    Read the whole file below `header_row` (a row number from `sniffed.head`).

    CSV: one streaming pass decodes, hashes and rewrites it as UTF-8 with a `__row` column, so a
    GBK file is decoded once, in Python's C codec, never by polars row by row.
    """
    header = next(cells for number, cells in sniffed.head if number == header_row)
    if sniffed.kind == "csv":
        return _load_csv(sniffed, header_row, header, on_bytes)
    return _load_excel(sniffed, header_row, header)


def _load_csv(
    sniffed: Sniffed, header_row: int, header: list[str | None], on_bytes: Callable[[int], None] | None
) -> Table:
    path, encoding = sniffed.path, sniffed.encoding or "utf-8"
    width = len(header)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix="collect-calls-", suffix=".csv")
    tmp = Path(tmp_name)
    data_rows = 0
    try:
        with _Hashing(path, digest, on_bytes) as raw, os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            text = io.TextIOWrapper(
                io.BufferedReader(raw, _CHUNK), encoding=encoding, errors="strict", newline=""
            )
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow([_ROW, *(f"c{i}" for i in range(width))])
            reader = csv.reader(text, delimiter=sniffed.delimiter)
            start = 1
            try:
                for cells in reader:
                    number, start = start, reader.line_num + 1
                    if number <= header_row:
                        continue
                    if len(cells) < width:
                        cells += [""] * (width - len(cells))
                    writer.writerow([number, *cells[:width]])
                    data_rows += 1
                    if data_rows > MAX_ROWS:
                        raise TableFileError(f"{path}: more than the {MAX_ROWS} rows allowed")
            except csv.Error as exc:
                raise TableFileError(f"{path}: row {reader.line_num}: not a CSV table ({exc})") from exc
            except UnicodeDecodeError as exc:
                byte, line = _first_bad_byte(path, encoding)
                raise TableFileError(
                    f"{path}: row {line}: bytes that are not {encoding} text (at byte {byte}); "
                    "save the file again as UTF-8 or GB18030"
                ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    def frame() -> pl.LazyFrame:
        return pl.scan_csv(tmp, infer_schema=False).with_columns(pl.col(_ROW).cast(pl.Int64))

    return Table(path, "csv", encoding, digest.hexdigest(), header, header_row, data_rows, frame, [tmp])


def _first_bad_byte(path: Path, encoding: str) -> tuple[int, int]:
    """Where decoding fails: (byte offset, line number). A second pass, run only on failure."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset, lines = 0, 1
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # The decoder may hold a few bytes of the previous chunk; the error is near here.
                at = max(0, offset + exc.start)
                return at, lines + chunk[: max(0, exc.start)].count(b"\n")
            lines += chunk.count(b"\n")
            offset += len(chunk)
    return offset, lines


class _Hashing(io.RawIOBase):
    """The file's bytes, hashed as they are read (one pass does the hash and the transcoding)."""

    def __init__(self, path: Path, digest: Any, on_bytes: Callable[[int], None] | None) -> None:
        self._file = path.open("rb")
        self._digest = digest
        self._on_bytes = on_bytes
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
            self._offset += n
            if self._on_bytes is not None:
                self._on_bytes(self._offset)
        return n or 0

    def close(self) -> None:
        self._file.close()
        super().close()


def _load_excel(sniffed: Sniffed, header_row: int, header: list[str | None]) -> Table:
    path = sniffed.path
    frame = _excel_frame(path)
    width = len(header)
    frame = frame.select(frame.columns[:width])
    frame = frame.rename({old: f"c{i}" for i, old in enumerate(frame.columns)})
    frame = frame.with_row_index(_ROW, offset=1).slice(header_row)
    frame = frame.with_columns(pl.col(_ROW).cast(pl.Int64))
    data = frame.lazy()
    return Table(
        path, sniffed.kind, None, sha256_file(path), header, header_row, frame.height, lambda: data, []
    )


def header_cells(sniffed: Sniffed) -> Sequence[list[str | None]]:
    return [cells for _number, cells in sniffed.head]
