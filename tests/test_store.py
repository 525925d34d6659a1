"""Tests for the SQLite content-addressed cache of model calls."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftrisk.store import Memo, Store, content_key


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "cache.sqlite")
    yield opened
    opened.close()


# --- content_key ----------------------------------------------------------------------------


def test_content_key_is_a_stable_sha256_hex() -> None:
    key = content_key("model-fp", "prompt", {"max_new_tokens": 40})
    assert key == content_key("model-fp", "prompt", {"max_new_tokens": 40})
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")


def test_content_key_pins_the_serialisation() -> None:
    # A change here silently invalidates every user's cache.
    import hashlib
    import json

    expected = hashlib.sha256(json.dumps(["a", 1, {"k": [1, 2]}]).encode()).hexdigest()
    assert content_key("a", 1, {"k": [1, 2]}) == expected


def test_content_key_depends_on_part_order() -> None:
    assert content_key("model", "prompt") != content_key("prompt", "model")


def test_content_key_ignores_dict_key_order() -> None:
    first = {"temperature": 0.0, "max_new_tokens": 40, "nested": {"a": 1, "b": 2}}
    second = {"nested": {"b": 2, "a": 1}, "max_new_tokens": 40, "temperature": 0.0}
    assert content_key("m", first) == content_key("m", second)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a", "b"), ("ab",)),
        (("a", "b"), ("a", "b", None)),
        ((1,), ("1",)),
        (({"max_new_tokens": 40},), ({"max_new_tokens": 41},)),
        (("prompt",), ("prompt ",)),
    ],
)
def test_content_key_separates_different_inputs(left: tuple, right: tuple) -> None:
    assert content_key(*left) != content_key(*right)


def test_content_key_accepts_non_json_values_via_str() -> None:
    assert content_key(Path("a/b")) == content_key("a/b")


def test_content_key_of_unicode_is_stable() -> None:
    assert content_key("caf\u00e9 \U0001f600") == content_key("caf\u00e9 \U0001f600")
    assert content_key("caf\u00e9") != content_key("cafe")


# --- Store ----------------------------------------------------------------------------------


def test_put_get_roundtrip_keeps_json_values(store: Store) -> None:
    values = {
        "k1": "plain text",
        "k2": {"response": "caf\u00e9 \U0001f600\nline two", "tokens": [1, 2, 3]},
        "k3": 0.125,
        "k4": [True, False, None],
        "k5": None,
    }
    store.put_many("generation", values)
    assert store.get_many("generation", values) == values


def test_value_none_is_present_not_missing(store: Store) -> None:
    store.put_many("judgment", {"k": None})
    assert "k" in store.get_many("judgment", ["k"])


def test_missing_keys_are_absent(store: Store) -> None:
    store.put_many("generation", {"present": 1})
    found = store.get_many("generation", ["present", "absent-1", "absent-2"])
    assert found == {"present": 1}


def test_get_many_with_no_keys_is_empty(store: Store) -> None:
    store.put_many("generation", {"present": 1})
    assert store.get_many("generation", []) == {}


def test_get_many_accepts_a_generator(store: Store) -> None:
    store.put_many("generation", {"a": 1, "b": 2})
    assert store.get_many("generation", (k for k in ["a", "b", "c"])) == {"a": 1, "b": 2}


def test_namespaces_are_separate(store: Store) -> None:
    store.put_many("generation", {"same-key": "an answer"})
    store.put_many("judgment", {"same-key": {"refused": True}})
    assert store.get_many("generation", ["same-key"]) == {"same-key": "an answer"}
    assert store.get_many("judgment", ["same-key"]) == {"same-key": {"refused": True}}
    assert store.get_many("other", ["same-key"]) == {}
    assert (store.count("generation"), store.count("judgment"), store.count("other")) == (1, 1, 0)


def test_put_replaces_an_existing_value(store: Store) -> None:
    store.put_many("generation", {"k": "old", "j": "kept"})
    store.put_many("generation", {"k": "new"})
    assert store.get_many("generation", ["k", "j"]) == {"k": "new", "j": "kept"}
    assert store.count("generation") == 2


def test_values_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = Store(path)
    first.put_many("generation", {"k": {"response": "stored"}})
    first.close()
    second = Store(path)
    try:
        assert second.get_many("generation", ["k"]) == {"k": {"response": "stored"}}
        assert second.count("generation") == 1
    finally:
        second.close()


def test_second_store_sees_committed_writes_while_first_is_open(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    writer, reader = Store(path), Store(path)
    try:
        writer.put_many("generation", {"k": 1})
        assert reader.get_many("generation", ["k"]) == {"k": 1}
    finally:
        writer.close()
        reader.close()


def test_writes_are_on_disk_without_close(tmp_path: Path) -> None:
    # A killed run never calls close(); put_many must already have committed.
    path = tmp_path / "cache.sqlite"
    writer = Store(path)
    writer.put_many("generation", {"k": "v"})
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT namespace, key, value FROM cache").fetchall()
    finally:
        raw.close()
        writer.close()
    assert rows == [("generation", "k", '"v"')]


def test_get_many_over_the_chunk_size(store: Store) -> None:
    keys = [content_key("prompt", i) for i in range(1234)]
    store.put_many("generation", {k: i for i, k in enumerate(keys)})
    wanted = keys + [content_key("absent", i) for i in range(300)]
    found = store.get_many("generation", wanted)
    assert len(found) == 1234
    assert found == {k: i for i, k in enumerate(keys)}
    assert store.count("generation") == 1234


def test_store_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "cache.sqlite"
    opened = Store(path)
    try:
        opened.put_many("generation", {"k": 1})
    finally:
        opened.close()
    assert path.is_file()


def test_non_json_value_is_rejected_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(TypeError):
        store.put_many("generation", {"ok": 1, "bad": object()})
    assert store.count("generation") == 0


# --- a damaged or full store ------------------------------------------------------------------


def _filled(path: Path, n: int = 2000) -> None:
    store = Store(path)
    store.put_many("generation", {content_key(i): "answer " * 100 for i in range(n)})
    store.close()


def _aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".corrupt-" in p.name)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed header"])
def test_damaged_store_is_moved_aside_and_replaced(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "store.sqlite"
    _filled(path)
    size = path.stat().st_size
    if damage == "garbage":
        path.write_bytes(b"this is not a database at all " * 100)
    elif damage == "truncated":
        os.truncate(path, size // 3)
    else:
        with path.open("r+b") as handle:
            handle.write(b"\0" * 100)
    logged: list[str] = []
    store = Store(path, log=logged.append)
    try:
        assert len(logged) == 1, logged
        assert "is damaged" in logged[0] and str(path) in logged[0] and "moved aside" in logged[0]
        (aside,) = _aside(tmp_path)
        assert aside.startswith("store.sqlite.corrupt-") and aside in logged[0]
        # A fresh, working store: the old entries are gone (it is only a cache).
        assert store.count("generation") == 0
        store.put_many("generation", {"k": 1})
        assert store.get_many("generation", ["k"]) == {"k": 1}
    finally:
        store.close()
    reopened = Store(path, log=logged.append)
    assert reopened.count("generation") == 1 and len(logged) == 1
    reopened.close()


def test_full_disk_is_an_os_error_naming_the_store_and_loses_nothing(tmp_path: Path) -> None:
    import errno

    from tests.test_rundir import fill, small_fs

    with small_fs(tmp_path / "fs", "512k") as fs:
        store = Store(fs / "store.sqlite")
        store.put_many("generation", {"kept": "v"})
        filler = fill(fs)
        with pytest.raises(OSError) as caught:
            store.put_many("generation", {content_key(i): "x" * 4000 for i in range(200)})
        assert caught.value.errno == errno.ENOSPC
        assert caught.value.filename == str(fs / "store.sqlite")
        assert "disk is full" in str(caught.value)
        # The failed transaction left nothing half-written; after freeing space it works.
        assert store.count("generation") == 1
        filler.unlink()
        store.put_many("generation", {"new": "w"})
        assert store.get_many("generation", ["kept", "new"]) == {"kept": "v", "new": "w"}
        store.close()


def test_memo_reads_once_computes_each_missing_key_once_in_order_and_stores_what_it_may(
        tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.put_many("ns", {"k1": "cached"})
    keyed = [("k3", "ccc"), ("k1", "a"), ("k2", "bb"), ("k3", "ccc"), ("k4", "d")]
    memo = Memo(store, "ns", keyed, order=len)
    assert memo.cached == 1 and memo.values == {"k1": "cached"}
    # Each missing key once, shortest input first; repeats of a key are one request.
    assert [[key for key, _ in batch] for batch in memo.batches(2)] == [["k4", "k2"], ["k3"]]
    memo.save({"k4": None, "k2": "B", "k3": "C"}, storable=lambda v: v is not None)
    assert memo.values == {"k1": "cached", "k4": None, "k2": "B", "k3": "C"}
    # The unstorable value is returned this time but asked for again next time.
    assert Memo(store, "ns", keyed).pending == [("k4", "d")]
    # Without a store nothing is read or written.
    bare = Memo(None, "ns", keyed)
    assert bare.cached == 0 and [k for k, _ in bare.pending] == ["k3", "k1", "k2", "k4"]
    bare.save({"k1": "x"})
    assert store.get_many("ns", ["k1"]) == {"k1": "cached"}
