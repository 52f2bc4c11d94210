"""
Reading operator files (CSV in UTF-8/BOM/GBK/GB18030, XLSX, XLS) into rows of strings.

Every cell is read as text ("007" stays "007"); the encoding is detected, never assumed.
Files are capped in size, and XLSX (a zip) in uncompressed size, before anything is parsed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import polars as pl

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_XLSX_UNCOMPRESSED = 1024 * 1024 * 1024


class TableFileError(ValueError):
    """A file that is not a readable table; the message names the file and the reason."""


def detect_encoding(head: bytes) -> str:
    """UTF-8 (with or without BOM) if it decodes, else GB18030 (a superset of GBK and GB2312)."""
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is not evidence against UTF-8.
        if exc.start < len(head) - 4:
            return "gb18030"
    return "utf-8"


def read_table(path: Path) -> pl.DataFrame:
    """Read a CSV/XLSX/XLS file into a frame of strings, first sheet, first row as header."""
    if not path.is_file():
        raise TableFileError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TableFileError(f"{path}: {size} bytes is more than the {MAX_FILE_BYTES} allowed")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK"):
        return _read_xlsx(path)
    if head.startswith(b"\xd0\xcf\x11\xe0"):  # OLE2: the old .xls format
        return _read_excel(path)
    raw = path.read_bytes()
    encoding = detect_encoding(raw[:65536])
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise TableFileError(f"{path}: not text in UTF-8 or GB18030 (byte {exc.start})") from exc
    if "\x00" in text[:4096]:
        raise TableFileError(f"{path}: binary content, not a CSV table")
    try:
        return pl.read_csv(io.StringIO(text), infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError as exc:
        raise TableFileError(f"{path}: not a CSV table ({exc})") from exc


def _read_xlsx(path: Path) -> pl.DataFrame:
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise TableFileError(f"{path}: a damaged XLSX file") from exc
    if total > MAX_XLSX_UNCOMPRESSED:
        raise TableFileError(f"{path}: unpacks to {total} bytes: refused as a possible zip bomb")
    return _read_excel(path)


def _read_excel(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_excel(path, engine="calamine", infer_schema_length=0)
    except Exception as exc:  # calamine raises its own error types for every kind of damage
        raise TableFileError(f"{path}: not a readable spreadsheet ({exc})") from exc
    return frame.select(pl.all().cast(pl.Utf8))
