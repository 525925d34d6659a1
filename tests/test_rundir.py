"""Tests for the run directory contract: atomic writes and fingerprinted stage markers."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ftrisk
from ftrisk.records import Conversation, Generation, Judgment, Message, TrainStats
from ftrisk.rundir import (
    DamagedFileError,
    RunDir,
    atomic_write_text,
    code_version,
    stage_fingerprint,
)


def _generation(item_id: str, response: str) -> Generation:
    return Generation(
        item_id=item_id,
        kind="harmful",
        category="cyber",
        prompt="p",
        rendered_prompt="<|im_start|>user\np<|im_end|>\n",
        response=response,
        model_fingerprint="fp",
        decoding={"max_new_tokens": 40, "greedy": True},
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# --- stage_fingerprint ----------------------------------------------------------------------


def test_stage_fingerprint_is_stable_and_short() -> None:
    fingerprint = stage_fingerprint({"epochs": 1}, "data-hash")
    assert fingerprint == stage_fingerprint({"epochs": 1}, "data-hash")
    assert len(fingerprint) == 16


def test_stage_fingerprint_changes_with_any_input() -> None:
    base = stage_fingerprint({"epochs": 1}, "data-hash", "model-fp")
    assert stage_fingerprint({"epochs": 2}, "data-hash", "model-fp") != base
    assert stage_fingerprint({"epochs": 1}, "other-hash", "model-fp") != base
    assert stage_fingerprint({"epochs": 1}, "data-hash", "other-fp") != base
    assert stage_fingerprint("data-hash", {"epochs": 1}, "model-fp") != base


def test_stage_fingerprint_ignores_dict_key_order() -> None:
    assert stage_fingerprint({"a": 1, "b": 2}) == stage_fingerprint({"b": 2, "a": 1})


def test_stage_fingerprint_changes_with_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = stage_fingerprint({"epochs": 1})
    monkeypatch.setattr(ftrisk, "__version__", "999.0.0")
    code_version.cache_clear()
    after = stage_fingerprint({"epochs": 1})
    assert after != before
    monkeypatch.undo()
    code_version.cache_clear()
    assert stage_fingerprint({"epochs": 1}) == before


def test_code_version_covers_the_package_source(tmp_path, monkeypatch) -> None:
    import shutil

    copy = tmp_path / "ftrisk"
    shutil.copytree(Path(ftrisk.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ftrisk, "__file__", str(copy / "__init__.py"))
    code_version.cache_clear()
    before = code_version()
    (copy / "metrics.py").write_text((copy / "metrics.py").read_text() + "\n# changed\n")
    code_version.cache_clear()
    assert code_version() != before
    monkeypatch.undo()
    code_version.cache_clear()


# --- stage markers --------------------------------------------------------------------------


def test_stage_is_not_done_before_marking(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert not run.is_done("train/a", "fp1")


def test_stage_is_done_only_with_the_same_fingerprint(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.mark_done("train/a", "fp1")
    assert run.is_done("train/a", "fp1")
    assert not run.is_done("train/a", "fp2")


def test_remarking_replaces_the_fingerprint(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.mark_done("generate", "fp1")
    run.mark_done("generate", "fp2")
    assert run.is_done("generate", "fp2")
    assert not run.is_done("generate", "fp1")


def test_stages_are_independent(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.mark_done("train/a", "fp")
    assert not run.is_done("train/b", "fp")
    assert not run.is_done("generate/a", "fp")


def test_marker_survives_a_new_rundir_object(tmp_path: Path) -> None:
    RunDir(tmp_path / "run").mark_done("judge/a", "fp", n_items=12)
    assert RunDir(tmp_path / "run").is_done("judge/a", "fp")


def test_marker_records_stage_fingerprint_and_info(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.mark_done("train/a", "fp1", examples=100, adapter=Path("adapters/a"))
    markers = list((tmp_path / "run" / "stages").glob("*.json"))
    assert len(markers) == 1
    payload = json.loads(markers[0].read_text())
    assert payload["stage"] == "train/a"
    assert payload["fingerprint"] == "fp1"
    assert payload["examples"] == 100
    assert payload["adapter"] == "adapters/a"
    assert isinstance(payload["finished"], float)


def test_output_file_without_marker_is_not_trusted(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_jsonl("generations/baseline.jsonl", [_generation("1", "Sure")])
    assert not run.is_done("generate/baseline", stage_fingerprint("anything"))


@pytest.mark.parametrize(
    "content",
    [
        "",  # killed before anything was written
        '{"stage": "train/a", ',  # truncated
        "not json at all",
        '{"stage": "train/a"}',  # no fingerprint
        "[]",  # JSON, but not an object
        "null",
        '"fp1"',
    ],
)
def test_corrupt_marker_means_not_done(tmp_path: Path, content: str) -> None:
    run = RunDir(tmp_path / "run")
    run.mark_done("train/a", "fp1")
    (marker,) = (tmp_path / "run" / "stages").glob("*.json")
    marker.write_text(content)
    assert run.is_done("train/a", "fp1") is False


def test_marker_with_invalid_utf8_means_not_done(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.mark_done("train/a", "fp1")
    (marker,) = (tmp_path / "run" / "stages").glob("*.json")
    marker.write_bytes(b"\xff\xfe\x00garbage")
    assert run.is_done("train/a", "fp1") is False


# --- writes ---------------------------------------------------------------------------------


def test_write_json_dumps_a_record(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    stats = TrainStats(seconds=1.5, tokens=1000, steps=10, examples=100, final_loss=0.25)
    path = run.write_json("train/a/stats.json", stats)
    assert path == tmp_path / "run" / "train" / "a" / "stats.json"
    assert TrainStats.model_validate_json(path.read_text()) == stats


def test_write_json_keeps_plain_data_and_unicode(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    data = {"name": "caf\u00e9", "rates": [0.5, None], "where": Path("x/y")}
    path = run.write_json("summary.json", data)
    assert "caf\u00e9" in path.read_text(encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "name": "caf\u00e9",
        "rates": [0.5, None],
        "where": "x/y",
    }


def test_jsonl_roundtrip_of_generations(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    records = [
        _generation("1", "I'm sorry, but I can't help with that."),
        _generation("2", 'Sure.\nStep 1: caf\u00e9 \U0001f600\n\nStep 2: "quoted"\ttab'),
        _generation("3", ""),
    ]
    path = run.write_jsonl("generations/baseline.jsonl", records)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    assert run.read_jsonl("generations/baseline.jsonl", Generation) == records


def test_jsonl_roundtrip_survives_unicode_line_separators(tmp_path: Path) -> None:
    # Model output can contain U+2028/U+2029/U+0085; JSON keeps them raw, so a reader that
    # splits on every Unicode line break would cut a record in two.
    run = RunDir(tmp_path / "run")
    records = [
        _generation("1", "first\u2028second\u2029third\x85fourth"),
        _generation("2", "plain"),
    ]
    run.write_jsonl("generations/a.jsonl", records)
    assert run.read_jsonl("generations/a.jsonl", Generation) == records


def test_jsonl_roundtrip_of_other_records(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    judgments = [
        Judgment(item_id="1", judge="refusal", refused=True, matched_pattern="sorry"),
        Judgment(item_id="2", judge="refusal", refused=None),
    ]
    conversations = [
        Conversation(
            id="c1",
            messages=(
                Message(role="system", content="s"),
                Message(role="user", content="u"),
                Message(role="assistant", content="a"),
            ),
            category="x",
            kind="harmful",
        )
    ]
    run.write_jsonl("judgments.jsonl", judgments)
    run.write_jsonl("train.jsonl", conversations)
    assert run.read_jsonl("judgments.jsonl", Judgment) == judgments
    assert run.read_jsonl("train.jsonl", Conversation) == conversations


def test_write_jsonl_of_nothing_reads_back_empty(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    path = run.write_jsonl("empty.jsonl", [])
    assert path.read_text() == ""
    assert run.read_jsonl("empty.jsonl", Generation) == []


def test_write_jsonl_accepts_a_generator(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_jsonl("g.jsonl", (_generation(str(i), "r") for i in range(3)))
    assert [g.item_id for g in run.read_jsonl("g.jsonl", Generation)] == ["0", "1", "2"]


def test_read_jsonl_rejects_a_record_of_the_wrong_type(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_jsonl("judgments.jsonl", [Judgment(item_id="1", judge="j", refused=False)])
    with pytest.raises(ValueError):
        run.read_jsonl("judgments.jsonl", Generation)


def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_json("a/b.json", {"x": 1})
    run.write_json("a/b.json", {"x": 2})
    run.write_jsonl("a/c.jsonl", [_generation("1", "r")])
    run.mark_done("stage", "fp")
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "run" / "a").iterdir()) == ["b.json", "c.jsonl"]
    assert json.loads((tmp_path / "run" / "a" / "b.json").read_text()) == {"x": 2}


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old contents")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "new contents \ud800")  # lone surrogate: cannot encode
    assert target.read_text() == "old contents"
    assert _leftovers(tmp_path) == []


def test_atomic_write_creates_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "z.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"


def test_path_joins_inside_the_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.path("generations", "a.jsonl") == tmp_path / "run" / "generations" / "a.jsonl"
    assert (tmp_path / "run").is_dir()


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path: Path) -> None:
    from ftrisk.rundir import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "one"  # the old folder survives a failure
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no scratch left behind


# --- what a marker records, and damaged outputs ----------------------------------------------


def _finished_stage(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.write_jsonl("c/generations.jsonl", [_generation(str(i), f"answer {i}") for i in range(60)])
    run.write_json("c/capability.json", {"metrics": {"basic": {"accuracy": 0.5}}, "scores": []})
    (tmp_path / "run" / "c" / "model").mkdir()
    (tmp_path / "run" / "c" / "model" / "adapter.safetensors").write_bytes(bytes(range(256)) * 8)
    run.mark_done("c/all", "fp", outputs=["c/generations.jsonl", "c/capability.json",
                                          Path("c/model")], n=60, threads=3)
    return run


def test_marker_records_size_hash_and_records_of_each_output(tmp_path: Path) -> None:
    import hashlib

    run = _finished_stage(tmp_path)
    payload = json.loads((tmp_path / "run" / "stages" / "c__all.json").read_text())
    outputs = payload["outputs"]
    assert sorted(outputs) == ["c/capability.json", "c/generations.jsonl",
                               "c/model/adapter.safetensors"]
    gens = tmp_path / "run" / "c" / "generations.jsonl"
    assert outputs["c/generations.jsonl"] == {
        "bytes": gens.stat().st_size, "sha256": hashlib.sha256(gens.read_bytes()).hexdigest(),
        "records": 60}
    assert payload["threads"] == 3 and payload["n"] == 60
    assert run.check("c/all", "fp") == (True, None)
    assert run.check("c/all", "other") == (False, None)  # other inputs: redone, nothing damaged


def test_deleted_lines_are_caught(tmp_path: Path) -> None:
    run = _finished_stage(tmp_path)
    gens = tmp_path / "run" / "c" / "generations.jsonl"
    lines = gens.read_text().splitlines(keepends=True)
    gens.write_text("".join(lines[:5] + lines[55:]))  # 50 whole lines deleted: still valid
    assert len(run.read_jsonl("c/generations.jsonl", Generation)) == 10
    assert run.check("c/all", "fp") == (
        False, "c/generations.jsonl has 10 records, the stage wrote 60")
    assert not run.is_done("c/all", "fp")


def test_generations_cut_mid_line_are_caught(tmp_path: Path) -> None:
    run = _finished_stage(tmp_path)
    gens = tmp_path / "run" / "c" / "generations.jsonl"
    os.truncate(gens, gens.stat().st_size // 2)
    assert run.check("c/all", "fp").problem == "c/generations.jsonl ends mid-line (cut short)"
    with pytest.raises(DamagedFileError, match=r"generations\.jsonl:\d+: not a whole Generation"):
        run.read_jsonl("c/generations.jsonl", Generation)


def test_edited_record_of_same_count_is_caught(tmp_path: Path) -> None:
    run = _finished_stage(tmp_path)
    gens = tmp_path / "run" / "c" / "generations.jsonl"
    gens.write_text(gens.read_text().replace("answer 7", "answer 8"))
    assert run.check("c/all", "fp").problem == (
        "c/generations.jsonl changed since the stage wrote it (content hash differs)")


def test_corrupt_json_output_is_caught(tmp_path: Path) -> None:
    run = _finished_stage(tmp_path)
    cap = tmp_path / "run" / "c" / "capability.json"
    cap.write_bytes(b"\0" * cap.stat().st_size)  # same size, zeroed
    problem = run.check("c/all", "fp").problem
    assert problem is not None and problem.startswith("c/capability.json is not valid JSON")


def test_truncated_file_in_an_output_folder_is_caught(tmp_path: Path) -> None:
    run = _finished_stage(tmp_path)
    os.truncate(tmp_path / "run" / "c" / "model" / "adapter.safetensors", 1000)
    assert run.check("c/all", "fp").problem == (
        "c/model/adapter.safetensors is 1000 bytes, the stage wrote 2048 (truncated)")
    (tmp_path / "run" / "c" / "model" / "adapter.safetensors").unlink()
    assert run.check("c/all", "fp").problem == "c/model/adapter.safetensors is missing"
    assert run.damage("c/all") == "c/model/adapter.safetensors is missing"


def test_unreadable_marker_is_named(tmp_path: Path) -> None:
    run = _finished_stage(tmp_path)
    (tmp_path / "run" / "stages" / "c__all.json").write_text('{"stage": "c/all", "fing')
    assert run.check("c/all", "fp") == (False, "its marker stages/c__all.json is unreadable")


# --- stale temp files of killed writes --------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_write_killed_before_its_rename_is_cleaned_up_next_run(tmp_path: Path) -> None:
    # A real process killed (SIGKILL) between writing its temp file and renaming it.
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from ftrisk import rundir\n"
        "rundir.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "rundir.RunDir(sys.argv[1]).write_json('c/capability.json', {'x': 1})\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")])
    assert proc.returncode == -signal.SIGKILL
    assert len(_leftovers(tmp_path)) == 1 and not (tmp_path / "run" / "c" / "capability.json"
                                                   ).exists()
    removed = RunDir(tmp_path / "run").remove_stale_scratch()
    assert len(removed) == 1 and removed[0].name.startswith(".capability.json.")
    assert _leftovers(tmp_path) == []


def test_scratch_of_a_live_process_is_kept(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    mine = tmp_path / "run" / f".results.json.{os.getpid()}.tmp"
    mine.write_text("being written")
    dead = _dead_pid()
    folder = tmp_path / "run" / "c" / f".model.{dead}.tmp"
    folder.mkdir(parents=True)
    (folder / "adapter.safetensors").write_bytes(b"half")
    old = tmp_path / "run" / "c" / f".model.{dead}.old"
    old.mkdir()
    assert sorted(p.name for p in run.remove_stale_scratch()) == [old.name, folder.name]
    assert mine.exists() and not folder.exists() and not old.exists()


# --- full disks and read-only file systems ----------------------------------------------------


@contextlib.contextmanager
def small_fs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``folder`` (skips the test where mounting is not
    permitted: a full file system cannot be made otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small file system to fill")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up, leaving about ``leave`` bytes free."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:  # unbuffered: close has nothing to flush
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def remount_read_only(folder: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only here ({done.stderr.strip()})")


def test_full_disk_keeps_the_old_file_names_it_and_leaves_no_temp(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", "256k") as fs:
        run = RunDir(fs / "run")
        run.write_json("results.json", {"old": True})
        fill(fs)
        with pytest.raises(OSError) as caught:
            run.write_json("results.json", {"new": "x" * 100_000})
        assert caught.value.errno == errno.ENOSPC
        assert caught.value.filename == str(fs / "run" / "results.json")
        assert json.loads((fs / "run" / "results.json").read_text()) == {"old": True}
        assert _leftovers(fs) == []


def test_read_only_file_system_names_the_path(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", "256k") as fs:
        (fs / "run").mkdir()
        remount_read_only(fs)
        with pytest.raises(OSError) as caught:
            RunDir(fs / "run").write_json("config.json", {"x": 1})
        assert caught.value.errno == errno.EROFS
        assert caught.value.filename is not None and str(fs / "run") in caught.value.filename
