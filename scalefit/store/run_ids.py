"""The one run-id rule: which run ids the store accepts, and the folder each one is stored in.

A run id is the readable name of a run (``cosine_24000``, a W&B name such as ``group-a/run-1``); it is
kept as is in the ``run_id`` column of every file. The run's folder under the store root is
``folder_name(run_id)``: the id itself when it only has letters, digits, ``.``, ``_``, ``-`` (and does not
start with ``.`` or ``_``), else the id with every other byte (UTF-8) percent-encoded as ``%XX``, ``%``
itself included, and a leading ``.`` or ``_`` encoded too. So the mapping is reversible
(``run_id_of_folder``), collision-free (two ids never share a folder), and a folder name never holds a
path separator, is never ``.`` or ``..`` and never starts with the prefixes that Parquet readers skip
(``.``, ``_``: scalefit's own non-table files use them).

Refused (`DataError` naming the id): a non-string or empty id, an id with leading or trailing
whitespace, control characters (a NUL, a newline), an absolute path (``/etc/x``, ``C:\\x``, ``\\\\host``),
a ``.`` or ``..`` component or an empty one (``a//b``, ``a/``), and an id whose folder name would be
longer than 255 bytes (the usual file-name limit).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from scalefit.errors import DataError

__all__ = ["check_run_id", "folder_name", "run_id_of_folder", "MAX_FOLDER_BYTES"]

MAX_FOLDER_BYTES = 255
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_FIX = "use a name of letters, digits and . _ - / (no absolute path, no '.' or '..' part)"


def _refuse(message: str, run_id: object) -> DataError:
    return DataError(message, run_id=str(run_id), column="run_id", value=run_id, fix=_FIX)


def check_run_id(run_id: object) -> str:
    """``run_id`` if the store accepts it, else `DataError` naming it and why."""
    if not isinstance(run_id, str):
        raise _refuse(f"run id must be a string, not {type(run_id).__name__}", run_id)
    if not run_id:
        raise _refuse("empty run id", run_id)
    if run_id != run_id.strip():
        raise _refuse("run id has leading or trailing whitespace", run_id)
    if _CONTROL.search(run_id):
        raise _refuse("run id has a control character", run_id)
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse("run id is not valid Unicode text (a lone surrogate)", run_id) from None
    if run_id.startswith(("/", "\\")) or _DRIVE.match(run_id):
        raise _refuse("run id is an absolute path", run_id)
    parts = re.split(r"[\\/]", run_id)
    if any(p in ("", ".", "..") for p in parts):
        raise _refuse("run id has an empty, '.' or '..' path component (path traversal)", run_id)
    if len(_encode(run_id).encode()) > MAX_FOLDER_BYTES:
        raise _refuse(f"run id too long for a folder name (over {MAX_FOLDER_BYTES} bytes encoded)", run_id)
    return run_id


def _encode(run_id: str) -> str:
    if _SAFE.match(run_id):
        return run_id
    encoded = quote(run_id, safe="-_.", encoding="utf-8", errors="strict")
    head = encoded[0]
    return {".": "%2E", "_": "%5F"}.get(head, head) + encoded[1:]


def folder_name(run_id: str) -> str:
    """The folder of ``run_id`` under the store root (checked with `check_run_id` first)."""
    return _encode(check_run_id(run_id))


def run_id_of_folder(name: str) -> str:
    """The run id stored in folder ``name`` (the inverse of `folder_name`)."""
    return unquote(name, encoding="utf-8", errors="strict")
