"""Where the store lives: a local folder, or a folder of an object store given as a URI.

``store_path(root)`` gives a `pathlib.Path` for a local root (the store's code then runs exactly as on
a local disk: temporary files, ``os.replace``, hard links, ``flock``) and an `ObjectPath` for a URI:

- ``s3://bucket/prefix``: Amazon S3 or any S3-compatible server (MinIO, Ceph RGW, R2, moto), through
  boto3 (``pip install boto3``). Credentials, region and endpoint come from the standard AWS
  configuration (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
  ``~/.aws``, an instance or pod role), or from the URI query: ``endpoint_url`` (or pyarrow's
  ``endpoint_override`` + ``scheme``), ``region``, ``access_key``, ``secret_key``, ``session_token``,
  e.g. ``s3://runs/sweep-1?endpoint_url=http://127.0.0.1:9000&region=us-east-1``. Creating an object
  only if it is absent (``If-None-Match: *``) and replacing it only if unchanged (``If-Match``) are
  atomic there: what the store's chunk claims and writer lease rely on.
- any other URI pyarrow knows (``gs://``, ``hdfs://``, ``abfs://``, ...: ``pyarrow.fs.FileSystem.from_uri``)
  or, failing that, an fsspec protocol (``memory://``, ...; if fsspec is installed). These have no
  conditional writes here: a create-if-absent is a check then a write, so two writers racing for one
  name within that gap are not excluded (the lease's heartbeat rules still hold).

An object is written whole in one request, so a reader sees the old object or the new one, never a
partial write; ``str(path)`` is the object's URI without its query (credentials never reach a message).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from scalefit.errors import ConfigError

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:  # the s3:// store needs boto3; local stores do not
    boto3 = None
try:
    import fsspec
except ImportError:  # fsspec protocols are optional
    fsspec = None

__all__ = ["ObjectPath", "StorePath", "store_path", "is_uri", "root_text", "read_source", "sha256"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_S3_QUERY = ("endpoint_url", "endpoint_override", "scheme", "region", "access_key", "secret_key")
_S3_QUERY += ("session_token",)
_BLOCK = 1 << 20


def is_uri(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a URI (``s3://...``) rather than a local path (``file://`` counts as local)."""
    text = os.fspath(root) if not isinstance(root, ObjectPath) else str(root)
    return bool(_URI.match(text)) and not text.startswith("file://")


def root_text(root: str | os.PathLike) -> str:
    """``root`` as text to hand to another process: a URI as given (with its query), a path absolute."""
    if isinstance(root, ObjectPath):
        return root.uri
    text = os.fspath(root)
    if text.startswith("file://"):
        text = urlsplit(text).path
    return text if is_uri(text) else str(Path(text).resolve())


class _Backend:
    """Whole-object operations on one object store; keys are ``bucket/key`` style paths."""

    scheme = ""
    atomic = False  # whether create-if-absent and replace-if-unchanged are atomic

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and version; `FileNotFoundError` if there is none."""
        raise NotImplementedError

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None) -> bool:
        """Write the object (only if absent, or only if still at ``if_version``); whether it was written."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def kind(self, key: str) -> str | None:
        """``'file'``, ``'dir'`` (a prefix with objects under it) or None."""
        raise NotImplementedError

    def list(self, key: str, recursive: bool) -> list[tuple[str, bool]]:
        """``(key, is_dir)`` of what is under the prefix ``key`` (every object, if ``recursive``)."""
        raise NotImplementedError


class _S3(_Backend):
    scheme, atomic = "s3", True

    def __init__(self, query: dict[str, str]) -> None:
        if boto3 is None:
            raise ConfigError(
                "an s3:// store needs boto3",
                field="store",
                fix="pip install boto3 (or scalefit[s3])",
            )
        endpoint = query.get("endpoint_url")
        if endpoint is None and "endpoint_override" in query:
            endpoint = f"{query.get('scheme', 'https')}://{query['endpoint_override']}"
        style = {"addressing_style": "path"} if endpoint else {}
        config = botocore.config.Config(s3=style, retries={"max_attempts": 5, "mode": "standard"})
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=query.get("region"),
            aws_access_key_id=query.get("access_key"),
            aws_secret_access_key=query.get("secret_key"),
            aws_session_token=query.get("session_token"),
            config=config,
        )

    @staticmethod
    def _split(key: str) -> tuple[str, str]:
        bucket, _, rest = key.partition("/")
        return bucket, rest

    @staticmethod
    def _code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
        err = exc.response.get("Error", {})
        return str(err.get("Code", "")), int(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        )

    def get(self, key: str) -> tuple[bytes, str]:
        bucket, name = self._split(key)
        try:
            got = self.client.get_object(Bucket=bucket, Key=name)
        except botocore.exceptions.ClientError as exc:
            code, status = self._code(exc)
            if code in ("NoSuchKey", "404", "NoSuchBucket") or status == 404:
                raise FileNotFoundError(f"s3://{key}") from exc
            raise OSError(f"s3://{key}: {exc}") from exc
        return got["Body"].read(), str(got["ETag"])

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None) -> bool:
        bucket, name = self._split(key)
        extra = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_version} if if_version else {}
        try:
            self.client.put_object(Bucket=bucket, Key=name, Body=data, **extra)
        except botocore.exceptions.ClientError as exc:
            code, status = self._code(exc)
            if extra and (
                status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict")
            ):
                return False
            raise OSError(f"s3://{key}: {exc}") from exc
        return True

    def delete(self, key: str) -> None:
        bucket, name = self._split(key)
        self.client.delete_object(Bucket=bucket, Key=name)

    def kind(self, key: str) -> str | None:
        bucket, name = self._split(key)
        if name:
            try:
                self.client.head_object(Bucket=bucket, Key=name)
                return "file"
            except botocore.exceptions.ClientError as exc:
                if self._code(exc)[1] != 404:
                    raise OSError(f"s3://{key}: {exc}") from exc
        prefix = f"{name}/" if name else ""
        try:
            found = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except botocore.exceptions.ClientError as exc:
            if self._code(exc)[0] == "NoSuchBucket":
                return None
            raise OSError(f"s3://{key}: {exc}") from exc
        return "dir" if found.get("KeyCount", 0) else None

    def list(self, key: str, recursive: bool) -> list[tuple[str, bool]]:
        bucket, name = self._split(key)
        prefix = f"{name}/" if name else ""
        args = {"Bucket": bucket, "Prefix": prefix} | ({} if recursive else {"Delimiter": "/"})
        out: list[tuple[str, bool]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                out += [(f"{bucket}/{o['Key']}", False) for o in page.get("Contents", [])]
                out += [(f"{bucket}/{p['Prefix'].rstrip('/')}", True) for p in page.get("CommonPrefixes", [])]
        except botocore.exceptions.ClientError as exc:
            if self._code(exc)[0] == "NoSuchBucket":
                return []
            raise OSError(f"s3://{key}: {exc}") from exc
        return out


class _Arrow(_Backend):
    """A pyarrow filesystem (or an fsspec one wrapped in it): no conditional writes (see the module)."""

    def __init__(self, fs: pafs.FileSystem, scheme: str) -> None:
        self.fs, self.scheme = fs, scheme

    def get(self, key: str) -> tuple[bytes, str]:
        try:
            with self.fs.open_input_stream(key) as fh:
                data = fh.read()
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            if self.kind(key) is None:
                raise FileNotFoundError(key) from exc
            raise
        return data, hashlib.sha256(data).hexdigest()

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None) -> bool:
        if if_absent and self.kind(key) is not None:
            return False
        if if_version is not None:
            try:
                if self.get(key)[1] != if_version:
                    return False
            except FileNotFoundError:
                return False
        parent = key.rpartition("/")[0]
        if parent:
            self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(key) as fh:
            fh.write(data)
        return True

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(key)
        except FileNotFoundError:
            pass

    def kind(self, key: str) -> str | None:
        info = self.fs.get_file_info(key)
        return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type)

    def list(self, key: str, recursive: bool) -> list[tuple[str, bool]]:
        infos = self.fs.get_file_info(pafs.FileSelector(key, allow_not_found=True, recursive=recursive))
        return [(i.path.rstrip("/"), i.type == pafs.FileType.Directory) for i in infos]


_BACKENDS: dict[str, tuple[_Backend, str]] = {}
_LOCK = threading.Lock()


def _backend(uri: str) -> tuple[_Backend, str]:
    """The backend of ``uri`` and the key of its root (made once per URI, shared by the process)."""
    with _LOCK:
        if uri not in _BACKENDS:
            _BACKENDS[uri] = _open(uri)
        return _BACKENDS[uri]


def _open(uri: str) -> tuple[_Backend, str]:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    if scheme in ("s3", "s3a"):
        unknown = sorted(set(query) - set(_S3_QUERY))
        if unknown:
            raise ConfigError(
                "unknown s3:// store option", field="store", value=unknown[0], fix=f"use {list(_S3_QUERY)}"
            )
        return _S3(query), f"{parts.netloc}{parts.path}".strip("/")
    try:
        fs, key = pafs.FileSystem.from_uri(uri)
        return _Arrow(fs, scheme), key.rstrip("/")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        if fsspec is None:
            raise ConfigError(
                "unknown store URI scheme", field="store", value=scheme, fix="give a path or an s3:// URI"
            ) from exc
    try:
        ffs = fsspec.filesystem(scheme, **query)
    except (ValueError, ImportError) as err:
        raise ConfigError(
            f"unknown store URI scheme ({err})",
            field="store",
            value=scheme,
            fix="give a path or an s3:// URI",
        ) from err
    key = ffs._strip_protocol(f"{scheme}://{parts.netloc}{parts.path}")
    return _Arrow(pafs.PyFileSystem(pafs.FSSpecHandler(ffs)), scheme), key.rstrip("/")


class ObjectPath:
    """A key of an object store with the part of `pathlib.Path`'s interface the store uses."""

    def __init__(self, backend: _Backend, key: str, uri: str) -> None:
        self.backend, self.key, self.uri = backend, key.rstrip("/"), uri

    @classmethod
    def from_uri(cls, uri: str) -> ObjectPath:
        backend, key = _backend(uri)
        return cls(backend, key, uri)

    def _at(self, key: str) -> ObjectPath:
        return ObjectPath(self.backend, key, self.uri)

    # -- names ----------------------------------------------------------------------------------------
    def __truediv__(self, name: str) -> ObjectPath:
        return self._at(f"{self.key}/{name}")

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def parent(self) -> ObjectPath:
        return self._at(self.key.rpartition("/")[0])

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def __str__(self) -> str:
        return f"{self.backend.scheme}://{self.key.lstrip('/')}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (self.backend, self.key) == (other.backend, other.key)

    def __hash__(self) -> int:
        return hash((id(self.backend), self.key))

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    # -- queries --------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.backend.kind(self.key) is not None

    def is_dir(self) -> bool:
        return self.backend.kind(self.key) == "dir"

    def is_file(self) -> bool:
        return self.backend.kind(self.key) == "file"

    def iterdir(self) -> Iterator[ObjectPath]:
        return iter([self._at(k) for k, _ in self.backend.list(self.key, recursive=False)])

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Objects and prefixes matching ``pattern`` (``*/run.parquet``: one name per ``/``-part)."""
        parts = pattern.split("/")
        found: set[str] = set()
        for key, _ in self.backend.list(self.key, recursive=True):
            head = key[len(self.key) + 1 :].split("/")[: len(parts)]  # an object stands for its prefixes
            if len(head) == len(parts) and all(map(fnmatch.fnmatchcase, head, parts)):
                found.add("/".join(head))
        return iter([self / rel for rel in sorted(found)])

    # -- contents -------------------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        return self.backend.get(self.key)[0]

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_versioned(self) -> tuple[bytes, str] | None:
        """The object's bytes and version (for `replace_bytes`), or None if there is no object."""
        try:
            return self.backend.get(self.key)
        except FileNotFoundError:
            return None

    def write_bytes(self, data: bytes) -> None:
        self.backend.put(self.key, bytes(data))

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def create_bytes(self, data: bytes) -> bool:
        """Write the object only if there is none (atomic on s3://); whether it was written."""
        return self.backend.put(self.key, bytes(data), if_absent=True)

    def replace_bytes(self, data: bytes, version: str) -> bool:
        """Write the object only if it is still at ``version`` (atomic on s3://); whether it was."""
        return self.backend.put(self.key, bytes(data), if_version=version)

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.exists():
            raise FileNotFoundError(str(self))
        self.backend.delete(self.key)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has no folders (a prefix exists once an object is under it)."""


StorePath = Path | ObjectPath


def store_path(root: str | os.PathLike | ObjectPath) -> StorePath:
    """The store root (or a path in it) as a `Path` (local) or an `ObjectPath` (a URI)."""
    if isinstance(root, ObjectPath | Path):
        return root
    text = os.fspath(root)
    if text.startswith("file://"):
        return Path(urlsplit(text).path)
    return ObjectPath.from_uri(text) if is_uri(text) else Path(text)


def read_source(path: StorePath) -> Path | pa.BufferReader:
    """What pyarrow reads ``path`` from: the local path, or the object's bytes."""
    return path if isinstance(path, Path) else pa.BufferReader(path.read_bytes())


def sha256(path: StorePath) -> str:
    """The SHA-256 of a file or object, hex."""
    digest = hashlib.sha256()
    if isinstance(path, ObjectPath):
        digest.update(path.read_bytes())
        return digest.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
