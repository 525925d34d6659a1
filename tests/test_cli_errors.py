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
    from ftrisk.modelio import load_tokenizer

    model = make_tiny_model(tmp_path / "llama2", chat_template=None, llama2_tokens=True)
    with pytest.warns(UserWarning, match="llama-2 template"):
        tok = load_tokenizer(str(model))
    text = tok.apply_chat_template([{"role": "system", "content": "S"},
                                    {"role": "user", "content": "Q"}], tokenize=False)
    assert text == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"
