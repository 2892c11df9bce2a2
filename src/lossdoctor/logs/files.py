"""What every reader does before it parses anything: make sure a path is a regular, readable file
(never open a FIFO, a socket or a device: an open() on a FIFO blocks forever), read its first bytes
as text, and parse JSON within bounds (no giant integers, no recursion past the interpreter's limit).

Every failure here is a :class:`LogFormatError` naming the path and what was expected.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import LogFormatError

SNIFF_BYTES = 65536
LOG_EXPECTED = "CSV, JSON lines, trainer_state.json or a TensorBoard event file"

# Compressed files are recognised by their magic bytes, so the message can say what to do.
COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip",
                    b"\x28\xb5\x2f\xfd": "zstd"}

# Python refuses to convert an integer string of over 4,300 digits (a ValueError deep inside json).
# A document holding one is parsed again with integers longer than this read as floats: no step or
# metric has more than 18 digits (int64's range), and float() turns a longer one into inf, which
# the readers treat as "not a number" (a step) or as a non-finite value (a loss).
MAX_INT_DIGITS = 18

_KIND = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device"}


def os_problem(exc: OSError) -> str:
    """One phrase for an OSError met while reading a log (no errno numbers, no traceback)."""
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long for the file system (over 255 bytes in one name?)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "no such file or directory"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if exc.errno == errno.EISDIR:
        return "a directory, not a file"
    return exc.strerror or type(exc).__name__


def file_kind(path: Path, expected: str = LOG_EXPECTED) -> str:
    """``"file"`` or ``"dir"`` for ``path`` (symbolic links followed); a LogFormatError for anything else
    (a FIFO, a socket, a device such as /dev/null, a missing or unreachable path)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise LogFormatError(path, os_problem(exc), expected=expected) from None
    except ValueError:  # an embedded NUL byte in the name
        raise LogFormatError(path, "the path holds a NUL byte", expected=expected) from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    kind = _KIND.get(stat.S_IFMT(mode), "not a regular file")
    raise LogFormatError(path, f"{kind}, not a log file", expected="a regular file: " + expected)


def is_regular_file(path: Path) -> bool:
    """True for a regular file; False for a FIFO, socket, device, directory or unreachable path
    (never blocks, never raises)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def require_file(path: Path, expected: str = LOG_EXPECTED) -> None:
    """A LogFormatError unless ``path`` is a regular file (checked before any open)."""
    if file_kind(path, expected) != "file":
        raise LogFormatError(path, "a directory, not a file", expected=expected)


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (the first ``limit`` of them), OSErrors turned into LogFormatError."""
    require_file(path)
    try:
        with open(path, "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    except OSError as exc:
        raise LogFormatError(path, os_problem(exc), expected=LOG_EXPECTED) from None


def check_text(path: Path) -> str:
    """The first bytes of ``path`` as text; a clear error for an empty, compressed or binary file."""
    head = read_bytes(path, SNIFF_BYTES)
    if not head.removeprefix(b"\xef\xbb\xbf").strip():  # nothing, or nothing but a byte order mark
        raise LogFormatError(path, "the file is empty", line=1, expected="a header line and one row per logged step")
    for magic, name in COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            raise LogFormatError(path, f"a {name}-compressed file", line=1,
                                 expected=f"an uncompressed log (decompress it first): {LOG_EXPECTED}")
    if b"\x00" in head:
        raise LogFormatError(path, "binary data, not a text log", line=1, expected=LOG_EXPECTED)
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a multi-byte character cut by the read size
            line = head[: exc.start].count(b"\n") + 1
            raise LogFormatError(path, "binary data, not UTF-8 text", line=line, expected=LOG_EXPECTED) from None
        return head[: exc.start].decode("utf-8")


# The longest first line (a CSV header) read whole: 100,000 column names of 100 characters each.
MAX_HEADER_BYTES = 16 * 1024 * 1024


def first_line(path: Path, head: str) -> str:
    """The whole first line of a text file whose first bytes are ``head`` (a wide CSV's header can be
    longer than the sniffed bytes)."""
    if "\n" in head or "\r" in head or len(head.encode("utf-8")) < SNIFF_BYTES - 4:
        return head.splitlines()[0] if head else ""
    data = read_bytes(path, MAX_HEADER_BYTES)
    end = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=-1)
    if end < 0 and len(data) == MAX_HEADER_BYTES:
        raise LogFormatError(path, f"the first line is longer than {MAX_HEADER_BYTES // 2**20} MB", line=1,
                             expected="a header line naming the columns")
    line = data if end < 0 else data[:end]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise LogFormatError(path, "binary data, not UTF-8 text", line=1, expected=LOG_EXPECTED) from None


def read_text(path: Path, expected: str) -> str:
    """The whole file as UTF-8 text (after :func:`check_text`), with the line of an invalid byte."""
    check_text(path)
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LogFormatError(path, f"not UTF-8 text ({exc.reason})", line=line, expected=expected) from None


CUT_SHORT = "the text ends inside the document"


def _parse_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else float(text)


def _parse_constant(text: str) -> float:
    return float(text)  # NaN, Infinity, -Infinity as Python's json writes them (json's own default)


def parse_json(text: str, path: Path, line: int | None = None, expected: str = "a complete JSON document") -> Any:
    """``json.loads`` within bounds: giant integers become floats, nesting too deep for the parser is
    a LogFormatError (at ``line`` when given, for one line of a JSONL file) instead of a RecursionError."""
    try:
        try:
            return json.loads(text)
        except ValueError as exc:  # Python refuses an integer string of over 4,300 digits
            if isinstance(exc, json.JSONDecodeError) or "integer string conversion" not in str(exc):
                raise
            return json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)  # slower: only then
    except json.JSONDecodeError as exc:
        body = text.rstrip()
        where = line if line is not None else exc.lineno
        if exc.msg.startswith("Unterminated") or exc.pos >= len(body):
            if line is not None:
                raise LogFormatError(path, f"invalid JSON ({CUT_SHORT}, column {exc.colno})", line=line,
                                     expected=expected) from None
            raise LogFormatError(path, f"truncated JSON: {CUT_SHORT}", line=body.count("\n") + 1,
                                 expected=expected) from None
        col = f", column {exc.colno}" if line is not None else ""
        raise LogFormatError(path, f"invalid JSON ({exc.msg}{col})", line=where, expected=expected) from None
    except RecursionError:
        raise LogFormatError(path, "JSON nested too deeply to read", line=line,
                             expected="a log nested a few levels deep") from None
