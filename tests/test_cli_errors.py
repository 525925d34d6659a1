"""Malformed inputs give a one-line error naming the file, line or field, before heavy work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrisk.cli import main
from tests.conftest import make_tiny_model
from tests.test_pipeline import write_inputs


def _run(config: Path, tmp_path: Path, capsys) -> str:
    code = main(["audit", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "results.json").exists()
    return err


def test_bad_json_line_in_attack_data(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    with (tmp_path / "attack.jsonl").open("a") as handle:
        handle.write('{"messages": [\n')
    assert "attack.jsonl:7" in _run(config, tmp_path, capsys)


def test_unknown_role(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    (tmp_path / "attack.jsonl").write_text(json.dumps({"messages": [
        {"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n")
    err = _run(config, tmp_path, capsys)
    assert "attack.jsonl:1" in err and "tool" in err


def test_missing_column_in_benchmark(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    (tmp_path / "bench.csv").write_text("question,category\nHow?,malware\n")
    err = _run(config, tmp_path, capsys)
    assert "bench.csv" in err and "prompt" in err


def test_empty_benchmark_file(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    (tmp_path / "bench.csv").write_text("")
    assert "bench.csv" in _run(config, tmp_path, capsys)


def test_data_path_that_does_not_exist(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    (tmp_path / "attack.jsonl").unlink()
    err = _run(config, tmp_path, capsys)
    assert "attack.jsonl" in err and "not found" in err


def test_model_dir_that_does_not_exist(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tmp_path / "nowhere")
    assert "nowhere" in _run(config, tmp_path, capsys)


def test_model_without_chat_template(tmp_path, capsys):
    model = make_tiny_model(tmp_path / "base", chat_template=None)
    config = write_inputs(tmp_path, model)
    err = _run(config, tmp_path, capsys)
    assert "chat template" in err and "base" in err


def test_misspelt_config_key_names_line_and_suggests(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    text = config.read_text().replace("learning_rate:", "leraning_rate:")
    config.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "leraning_rate" in s)
    err = _run(config, tmp_path, capsys)
    assert f"audit.yaml:{line}" in err and "did you mean 'learning_rate'" in err


@pytest.mark.parametrize("argv", [["--help"], ["audit", "--help"]])
def test_help_answers(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "ftrisk" in capsys.readouterr().out


def test_llama2_checkpoint_without_template_gets_ftrisk_llama2_template(tmp_path):
    from ftrisk.models.io import load_tokenizer

    model = make_tiny_model(tmp_path / "llama2", chat_template=None, llama2_tokens=True)
    with pytest.warns(UserWarning, match="llama-2 template"):
        tok = load_tokenizer(str(model))
    text = tok.apply_chat_template([{"role": "system", "content": "S"},
                                    {"role": "user", "content": "Q"}], tokenize=False)
    assert text == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"


# --- full disks, denied permissions, read-only file systems: one line, then resume ------------


def _one_error_line(err: str) -> str:
    """The single ``ftrisk: error:`` line of stderr (and no traceback anywhere)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("ftrisk: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".old"))]


@pytest.mark.slow
def test_full_disk_mid_run_is_one_line_and_the_run_resumes(tiny_model_dir, tmp_path, capsys):
    from tests.test_rundir import fill, small_fs

    config = write_inputs(tmp_path, tiny_model_dir)
    with small_fs(tmp_path / "fs", "8m") as fs:
        filler = fill(fs, leave=40 << 10)  # room for a few files of the run, not all of them
        argv = ["audit", "--config", str(config), "--run-dir", str(fs / "run"), "--cache-dir",
                str(tmp_path / "cache"), "--no-progress", "--threads", "1"]
        assert main(argv) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert line.startswith(f"ftrisk: error: no space left on the device holding {fs}/run")
        assert "MiB free)" in line and "--run-dir" in line and "run the same command again" in line
        assert _leftovers(fs) == []  # nothing half-written
        assert not (fs / "run" / "results.json").exists()

        filler.unlink()
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "done already, skipped" in out  # what finished before the disk filled is kept
        assert (fs / "run" / "results.json").is_file() and _leftovers(fs) == []


def test_cache_on_a_full_disk_is_one_line_naming_the_store(tiny_model_dir, tmp_path, capsys):
    from tests.test_rundir import fill, small_fs

    config = write_inputs(tmp_path, tiny_model_dir)
    with small_fs(tmp_path / "fs", "256k") as fs:
        (fs / "cache").mkdir()
        fill(fs)
        code = main(["audit", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                     "--cache-dir", str(fs / "cache"), "--no-progress", "--threads", "1"])
        assert code == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"no space left on the device holding {fs}/cache/store.sqlite" in line
        assert "--cache-dir (or $FTRISK_CACHE)" in line


def test_read_only_run_dir_is_one_line(tiny_model_dir, tmp_path, capsys):
    from tests.test_rundir import remount_read_only, small_fs

    config = write_inputs(tmp_path, tiny_model_dir)
    with small_fs(tmp_path / "fs", "256k") as fs:
        remount_read_only(fs)
        code = main(["audit", "--config", str(config), "--run-dir", str(fs / "run"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "1"])
        assert code == 2
        line = _one_error_line(capsys.readouterr().err)
        assert line == (f"ftrisk: error: read-only file system: {fs}/run: point --run-dir "
                        "elsewhere (a writable one), then run the same command again to resume")


def _drop_permission_override() -> None:
    """In a child process: give up root's right to ignore file permissions (for the exec'd
    program), so a folder without write permission really refuses it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


def test_permission_denied_is_one_line_from_a_real_process(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    config = write_inputs(tmp_path, tiny_model_dir)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(locked / 'x')!r}, 'w')"],
                               preexec_fn=_drop_permission_override, capture_output=True)
        if probe.returncode == 0:
            pytest.skip("this process may write into read-only folders (cannot drop root's "
                        "permission override here)")
        done = subprocess.run(
            [sys.executable, "-m", "ftrisk", "audit", "--config", str(config), "--run-dir",
             str(locked / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
             "--threads", "1"], preexec_fn=_drop_permission_override, capture_output=True,
            text=True, timeout=300)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert line.startswith(f"ftrisk: error: permission denied: {locked}/run: make it writable")
    assert "--run-dir" in line and "resume" in line


def test_storage_error_line_from_real_os_errors(tmp_path):
    import argparse
    import errno

    from ftrisk.cli import storage_error_line
    from tests.test_rundir import fill, small_fs

    args = argparse.Namespace(command="audit", run_dir=tmp_path / "run",
                              cache_dir=tmp_path / "cache")
    with small_fs(tmp_path / "run", "128k") as fs:
        fill(fs)
        with (fs / "out.json").open("wb", buffering=0) as handle, \
                pytest.raises(OSError) as caught:
            handle.write(b"x" * 100_000)
    assert caught.value.errno == errno.ENOSPC
    # A failed write() names no file; ftrisk's writers add it (see atomic_write_text).
    assert caught.value.filename is None
    caught.value.filename = str(tmp_path / "run" / "out.json")
    line = storage_error_line(caught.value, args)
    assert line is not None and line.startswith(
        f"no space left on the device holding {tmp_path}/run/out.json (")
    assert "point --run-dir elsewhere" in line
    # Libraries that do not raise OSError (safetensors, torch) are recognised by their words.
    wrapped = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')
    assert storage_error_line(wrapped, args).startswith(
        f"no space left on the device holding {tmp_path / 'run'} or {tmp_path / 'cache'}")
    assert storage_error_line(ValueError("unrelated"), args) is None
