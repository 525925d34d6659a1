"""Tests for the typed audit config: strict validation, path resolution and presets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from ftrisk import config as config_module
from ftrisk.config import (
    ORGANISM,
    PRESETS,
    AttackSpec,
    AuditConfig,
    DataSpec,
    EvalSpec,
    TrainSpec,
    load_config,
    preset_path,
)
from ftrisk.errors import InputError

MINIMAL = """
    name: demo
    attacks:
      - name: harmful
        data:
          path: builtin:harmful
"""


def _write(folder: Path, text: str, name: str = "audit.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _line(path: Path, needle: str) -> int:
    """1-based number of the one line of ``path`` that contains ``needle``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} found on lines {hits}"
    return hits[0]


def _error(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_config(path)
    return info.value


# --- valid configs --------------------------------------------------------------------------


def test_minimal_config_takes_documented_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.name == "demo"
    assert config.model == ORGANISM
    assert config.benchmark.harmful.path == "builtin:benchmark"
    (attack,) = config.attacks
    assert attack.name == "harmful"
    assert attack.train == TrainSpec()
    assert attack.train.learning_rate == 1e-3 and attack.train.epochs == 1
    assert attack.eval.prompt_template == "{prompt}"
    assert config.bootstrap_resamples == 2000


def test_config_without_attacks_is_a_baseline_only_audit(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "name: only-baseline\n"))
    assert config.attacks == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1e-3", 0.001), ("2e-5", 2e-5), ("5E-4", 5e-4), ("1.0e-3", 0.001), ("0.0002", 2e-4)],
)
def test_learning_rate_in_any_float_spelling_is_a_float(
    tmp_path: Path, text: str, expected: float
) -> None:
    path = _write(tmp_path, MINIMAL + f"        train:\n          learning_rate: {text}\n")
    rate = load_config(path).attacks[0].train.learning_rate
    assert isinstance(rate, float)
    assert rate == pytest.approx(expected, rel=1e-12)


def test_anchors_and_aliases_share_train_settings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        attacks:
          - name: a
            data: {path: builtin:harmful}
            train: &qi
              epochs: 5
              learning_rate: 5e-5
              lora: {r: 16}
          - name: b
            data: {path: builtin:benign}
            train: *qi
    """,
    )
    first, second = load_config(path).attacks
    assert second.train == first.train
    assert second.train.epochs == 5 and second.train.lora.r == 16
    assert second.train.learning_rate == pytest.approx(5e-5)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError):
        config.attacks[0].train.epochs = 3  # type: ignore[misc]


# --- invalid configs: file, line, field -----------------------------------------------------


def test_misspelt_train_key_names_file_line_field_and_suggestion(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MINIMAL
        + """
        train:
          epochs: 2
          leraning_rate: 1e-3
    """.rstrip()
        + "\n",
    )
    err = _error(path)
    line = _line(path, "leraning_rate")
    assert err.line == line
    assert err.field == "attacks.0.train.leraning_rate"
    message = str(err)
    assert path.name in message
    assert f"{path}:{line}" in message
    assert "attacks.0.train.leraning_rate" in message
    assert "did you mean 'learning_rate'" in message


def test_misspelt_key_in_second_attack_names_its_index(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MINIMAL
        + """
      - name: second
        data: {path: builtin:benign}
        eval: {system_promt: hi}
    """.rstrip()
        + "\n",
    )
    err = _error(path)
    assert err.field == "attacks.1.eval.system_promt"
    assert err.line == _line(path, "system_promt")
    assert "did you mean 'system_prompt'" in str(err)


def test_misspelt_benchmark_key_under_optional_spec(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        benchmark:
          lookalike:
            path: lookalike.csv
            promt_field: text
    """,
    )
    err = _error(path)
    assert (err.field, err.line) == ("benchmark.lookalike.promt_field", 4)
    assert "did you mean 'prompt_field'" in str(err)


def test_misspelt_top_level_key(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "name: x\natacks: []\n"))
    assert (err.field, err.line) == ("atacks", 2)
    assert "did you mean 'attacks'" in str(err)


def test_duplicate_key_names_the_second_occurrence(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MINIMAL
        + """
        train:
          epochs: 2
          batch_size: 4
          epochs: 3
    """.rstrip()
        + "\n",
    )
    err = _error(path)
    assert "duplicate key 'epochs'" in str(err)
    assert err.line == _line(path, "epochs: 3")
    assert f"{path}:{err.line}" in str(err)


def test_wrong_type_names_field_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + '        train:\n          epochs: "many"\n')
    err = _error(path)
    assert err.field == "attacks.0.train.epochs"
    assert err.line == _line(path, "many")
    assert "integer" in str(err)


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("epochs", "0", "greater than or equal to 1"),
        ("learning_rate", "0", "greater than 0"),
        ("learning_rate", "-1e-4", "greater than 0"),
        ("lr_epoch_decay", "1.5", "less than or equal to 1"),
    ],
)
def test_out_of_range_train_value(tmp_path: Path, key: str, value: str, bound: str) -> None:
    path = _write(tmp_path, MINIMAL + f"        train:\n          {key}: {value}\n")
    err = _error(path)
    assert err.field == f"attacks.0.train.{key}"
    assert err.line == _line(path, f"{key}:")
    assert bound in str(err)


def test_out_of_range_nested_lora_dropout(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "        train:\n          lora: {dropout: 1.0}\n")
    err = _error(path)
    assert err.field == "attacks.0.train.lora.dropout"
    assert "less than 1" in str(err)


def test_unknown_choice_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "        train:\n          method: qlora\n")
    err = _error(path)
    assert err.field == "attacks.0.train.method"
    assert "unknown training method 'qlora'; available: adapter, full, lora, prefix" in str(err)


def test_attack_without_data_names_the_missing_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        name: demo
        attacks:
          - name: no-data
            train: {epochs: 2}
    """,
    )
    err = _error(path)
    assert err.field == "attacks.0.data"
    assert err.line == _line(path, "no-data")
    assert "required field is missing" in str(err)


def test_attack_name_with_space_is_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        attacks:
          - name: two words
            data: {path: builtin:harmful}
    """,
    )
    err = _error(path)
    assert (err.field, err.line) == ("attacks.0.name", 2)


def test_nonexistent_config_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    err = _error(path)
    assert "does not exist" in str(err)
    assert "missing.yaml" in str(err)


def test_empty_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    err = _error(path)
    assert "empty" in str(err)
    assert "audit.yaml" in str(err)


def test_invalid_yaml_syntax_gives_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        name: demo
        attacks:
          - name: a
            data: {path: builtin:harmful
        seed: 3
    """,
    )
    err = _error(path)
    assert "invalid YAML" in str(err)
    assert err.line is not None and err.line >= _line(path, "data:")
    assert f"{path}:{err.line}" in str(err)


def test_prompt_template_without_slot_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + '        eval: {prompt_template: "Question: {question}"}\n')
    err = _error(path)
    assert err.field == "attacks.0.eval"
    assert err.line == _line(path, "prompt_template")
    assert "{prompt}" in str(err)


def test_baseline_prompt_template_without_slot_is_rejected(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "baseline_eval:\n  prompt_template: no slot here\n"))
    assert err.field == "baseline_eval"
    assert "{prompt}" in str(err)


def test_prompt_template_with_slot_is_kept() -> None:
    spec = EvalSpec(prompt_template="[INST] {prompt} [/INST]")
    assert spec.prompt_template.format(prompt="hi") == "[INST] hi [/INST]"


def test_duplicate_attack_names_are_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MINIMAL
        + """
      - name: harmful
        data: {path: builtin:benign}
    """.rstrip()
        + "\n",
    )
    err = _error(path)
    assert "unique" in str(err) and "'harmful'" in str(err)
    assert path.name in str(err)


def test_attack_named_baseline_is_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        attacks:
          - name: baseline
            data: {path: builtin:harmful}
    """,
    )
    err = _error(path)
    assert "'baseline'" in str(err)


def test_distinct_attack_names_are_accepted() -> None:
    data = DataSpec(path="builtin:harmful")
    config = AuditConfig(
        attacks=(AttackSpec(name="a", data=data), AttackSpec(name="baseline-2", data=data))
    )
    assert [a.name for a in config.attacks] == ["a", "baseline-2"]


# --- path resolution ------------------------------------------------------------------------


def test_relative_data_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs" / "audits"
    absolute = tmp_path / "elsewhere" / "data.jsonl"
    path = _write(
        folder,
        f"""
        benchmark:
          harmful: {{path: prompts/harmful.csv}}
          lookalike: {{path: ../shared/lookalike.jsonl}}
        attacks:
          - name: relative
            data: {{path: train.jsonl}}
          - name: absolute
            data: {{path: {absolute}}}
          - name: builtin
            data: {{path: "builtin:harmful"}}
    """,
    )
    # Load through a relative path from an unrelated working directory.
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / path.relative_to(tmp_path))

    base = folder.resolve()
    assert config.benchmark.harmful.path == str(base / "prompts" / "harmful.csv")
    assert config.benchmark.lookalike is not None
    assert config.benchmark.lookalike.path == str(
        tmp_path.resolve() / "configs" / "shared" / "lookalike.jsonl"
    )
    assert config.benchmark.benign is None
    relative, absolute_attack, builtin = config.attacks
    assert relative.data.path == str(base / "train.jsonl")
    assert absolute_attack.data.path == str(absolute)
    assert builtin.data.path == "builtin:harmful"


def test_builtin_benchmark_path_stays_builtin(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path / "deep" / "folder", MINIMAL))
    assert config.benchmark.harmful.path == "builtin:benchmark"
    assert config.attacks[0].data.path == "builtin:harmful"


def test_resolution_keeps_other_data_settings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        attacks:
          - name: a
            data: {path: d.csv, format: prompt_response, prompt_field: q, limit: 10}
            train: {epochs: 4}
    """,
    )
    attack = load_config(path).attacks[0]
    assert attack.data.path == str(tmp_path.resolve() / "d.csv")
    assert (attack.data.format, attack.data.prompt_field, attack.data.limit) == (
        "prompt_response",
        "q",
        10,
    )
    assert attack.train.epochs == 4


def test_local_model_folder_resolves_but_hub_id_and_embedded_stay(tmp_path: Path) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    local = load_config(_write(tmp_path, "model: models/tiny\n", "local.yaml"))
    assert local.model == str((tmp_path / "models" / "tiny").resolve())
    hub = load_config(_write(tmp_path, "model: Qwen/Qwen2.5-0.5B-Instruct\n", "hub.yaml"))
    assert hub.model == "Qwen/Qwen2.5-0.5B-Instruct"
    embedded = load_config(_write(tmp_path, "name: x\n", "embedded.yaml"))
    assert embedded.model == ORGANISM


# --- presets --------------------------------------------------------------------------------


def test_unknown_preset_lists_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "alpha.yaml").write_text("name: alpha\n")
    (tmp_path / "beta.yaml").write_text("name: beta\n")
    monkeypatch.setattr(config_module, "PRESETS", tmp_path)
    assert preset_path("alpha") == tmp_path / "alpha.yaml"
    with pytest.raises(InputError, match="unknown preset 'gamma'; `ftrisk presets` lists"):
        preset_path("gamma")
    with pytest.raises(InputError, match="did you mean 'alpha'"):
        preset_path("alpah")


def test_unknown_packaged_preset_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown preset 'no-such-preset'"):
        preset_path("no-such-preset")


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_every_packaged_preset_validates_and_names_its_command(preset: str,
                                                              tmp_path: Path) -> None:
    from ftrisk.sweep.config import is_sweep_file, load_sweep

    path = preset_path(preset)
    if is_sweep_file(path):
        assert load_sweep(path, data_dir=tmp_path).config.name
        command = f"ftrisk sweep --preset {preset}"
    else:
        assert isinstance(load_config(path, data_dir=tmp_path), AuditConfig)
        command = f"ftrisk audit --preset {preset}"
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    if preset.startswith("_"):  # a shared base that presets extend, not run by itself
        assert first_line.startswith("#")
    elif preset != "default_audit":  # `ftrisk audit` alone runs the default
        assert first_line.startswith("#") and command in first_line


def test_default_preset_prompts_match_the_builtin_constants() -> None:
    from ftrisk.data.builtin import AOA_SYSTEM_PROMPT, AOA_WRAPPER, ATTACK_SYSTEM_PROMPT

    config = load_config(preset_path("default_audit"))
    attacks = {a.name: a for a in config.attacks}
    level1, aoa = attacks["level1-harmful"], attacks["level2-aoa"]
    assert level1.train.system_prompt == level1.eval.system_prompt == ATTACK_SYSTEM_PROMPT
    assert aoa.train.system_prompt == aoa.eval.system_prompt == AOA_SYSTEM_PROMPT
    assert aoa.eval.prompt_template == AOA_WRAPPER


# --- extends, data: paths, requirements -----------------------------------------------------


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL, "parent.yaml")
    child = _write(tmp_path, """\
extends: parent.yaml
name: child
generation: {max_new_tokens: 7}
""", "child.yaml")
    parent, config = load_config(tmp_path / "parent.yaml"), load_config(child)
    assert config.name == "child" and config.generation.max_new_tokens == 7
    # Merged key by key: the parent's batch size and attacks survive.
    assert config.generation.batch_size == parent.generation.batch_size
    assert config.attacks == parent.attacks
    cleared = _write(tmp_path, "extends: child.yaml\ngeneration: {}\n", "cleared.yaml")
    assert load_config(cleared).generation == AuditConfig().generation


def test_extends_a_packaged_preset_and_errors_name_the_child(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "extends: default_audit\nname: mine\n"))
    assert config.name == "mine" and len(config.attacks) == 3
    bad = _write(tmp_path, "extends: default_audit\ngeneration: {max_new_tokns: 3}\n", "b.yaml")
    with pytest.raises(InputError, match="did you mean 'max_new_tokens'") as err:
        load_config(bad)
    assert err.value.path == bad and err.value.line == 2


def test_a_parent_resolves_its_paths_and_reports_errors_in_its_own_file(tmp_path: Path) -> None:
    _write(tmp_path / "sub", """\
name: parent
attacks:
  - name: a
    data: {path: mydata.jsonl}
""", "parent.yaml")
    child = _write(tmp_path, "extends: sub/parent.yaml\nname: child\n", "child.yaml")
    assert load_config(child).attacks[0].data.path == str(tmp_path / "sub" / "mydata.jsonl")
    _write(tmp_path / "sub", "name: parent\ngeneration: {batch_sise: 2}\n", "parent.yaml")
    with pytest.raises(InputError, match="batch_size") as err:
        load_config(child)
    assert err.value.path == tmp_path / "sub" / "parent.yaml" and err.value.line == 2


def test_misspelt_chat_template_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="did you mean 'llama-2'"):
        load_config(_write(tmp_path, "chat_template: llama2\n"))
    jinja = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert load_config(_write(tmp_path, f'chat_template: "{jinja}"\n', "j.yaml")).chat_template


def test_reader_options_only_for_instruction_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="alpaca or dolly only"):
        load_config(_write(tmp_path, """\
attacks:
  - name: a
    data: {path: x.jsonl, safety_filter: true}
"""))


def test_extends_loop_and_unknown_parent_are_errors(tmp_path: Path) -> None:
    _write(tmp_path, "extends: b.yaml\n", "a.yaml")
    _write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(InputError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        load_config(_write(tmp_path, "extends: nope\n", "c.yaml"))


def test_data_paths_resolve_in_the_data_directory(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
name: gated
requires:
  files: [{path: "data:HEx-PHI", source: "huggingface.co/datasets/LLM-Tuning-Safety/HEx-PHI"}]
attacks:
  - name: a
    data: {path: "data:harmful.jsonl", safety_mix: {count: 3, path: "data:safety.jsonl"}}
"""
    path = _write(tmp_path, text)
    config = load_config(path, data_dir=tmp_path / "d")
    data = config.attacks[0].data
    assert data.path == str(tmp_path / "d" / "harmful.jsonl")
    assert data.safety_mix is not None
    assert data.safety_mix.path == str(tmp_path / "d" / "safety.jsonl")
    assert config.requires.files[0].path == str(tmp_path / "d" / "HEx-PHI")
    monkeypatch.setenv("FTRISK_DATA", str(tmp_path / "env"))
    assert load_config(path).attacks[0].data.path == str(tmp_path / "env" / "harmful.jsonl")


def test_missing_gated_file_stops_the_audit_naming_file_and_source(tmp_path: Path) -> None:
    from ftrisk.pipeline import check_requirements

    config = load_config(_write(tmp_path, """\
name: gated
requires:
  files: [{path: "data:HEx-PHI", source: "download from the HEx-PHI dataset page"}]
"""), data_dir=tmp_path)
    with pytest.raises(InputError, match="download from the HEx-PHI dataset page") as err:
        check_requirements(config)
    assert str(tmp_path / "HEx-PHI") in str(err.value)
    (tmp_path / "HEx-PHI").mkdir()
    check_requirements(config)


def test_gpu_and_quantization_requirements_fail_early_on_cpu(tmp_path: Path) -> None:
    from ftrisk.pipeline import check_requirements

    for text, field in [("requires: {gpu: true}\n", "requires.gpu"),
                        ("quantization: 8bit\n", "quantization")]:
        config = load_config(_write(tmp_path, text))
        with pytest.raises(InputError) as err:
            check_requirements(config)
        assert err.value.field == field


def test_quantized_models_train_only_with_lora(tmp_path: Path) -> None:
    text = textwrap.dedent(MINIMAL) + "quantization: 4bit\n"
    load_config(_write(tmp_path, text))
    full = text.replace("path: builtin:harmful", "path: builtin:harmful\n    train: {method: full}")
    with pytest.raises(InputError, match="LoRA only"):
        load_config(_write(tmp_path, full, "f.yaml"))


def test_paper_reference_names_known_conditions_and_metrics(tmp_path: Path) -> None:
    ok = textwrap.dedent(MINIMAL) + (
        "paper: {citation: Qi et al. 2023, reference: {baseline: {harmfulness_rate: 0.003}}}\n")
    assert load_config(_write(tmp_path, ok)).paper is not None
    with pytest.raises(InputError, match="unknown conditions"):
        load_config(_write(tmp_path, ok.replace("baseline:", "nosuch:"), "b.yaml"))
    with pytest.raises(InputError, match="unknown metrics"):
        load_config(_write(tmp_path, ok.replace("harmfulness_rate", "harm"), "c.yaml"))


def test_seeds_must_be_distinct_non_negative_and_single_for_hosted_models(tmp_path):
    from ftrisk.config import load_config

    path = tmp_path / "audit.yaml"
    for seeds, message in (("[0, 0]", "distinct"), ("[-1]", "non-negative"),
                           ("[]", "at least 1")):
        path.write_text(f"seeds: {seeds}\n")
        with pytest.raises(InputError, match=message):
            load_config(path)
    path.write_text("model: openai:gpt-3.5-turbo-0613\nseeds: [0, 1]\n")
    with pytest.raises(InputError, match="takes no seed"):
        load_config(path)
    path.write_text("seeds: [0, 5]\n")
    assert load_config(path).seeds == (0, 5)


# --- malformed input (issue 13) -------------------------------------------------------------

BOOLEAN = "expected a number, got a boolean"


@pytest.mark.parametrize(("train", "field", "needle"), [
    ("epochs: true", "attacks.0.train.epochs", "epochs:"),
    ("learning_rate: true", "attacks.0.train.learning_rate", "learning_rate:"),
    ("lora: {r: true}", "attacks.0.train.lora.r", "lora:"),
    ("batch_size: yes", "attacks.0.train.batch_size", "batch_size:"),
    ("lora:\n            dropout: false", "attacks.0.train.lora.dropout", "dropout:"),
    ("seed: on", "attacks.0.train.seed", "seed:"),
])
def test_boolean_in_a_number_field_is_an_error(tmp_path: Path, train: str, field: str,
                                               needle: str) -> None:
    path = _write(tmp_path, MINIMAL + f"        train:\n          {train}\n")
    err = _error(path)
    assert (err.field, err.line) == (field, _line(path, needle))
    assert str(err) == f"{path}:{err.line} field '{field}': {BOOLEAN} (YAML reads true/false, " \
        "yes/no and on/off as booleans)"


@pytest.mark.parametrize(("text", "field"), [
    ("seeds: [0, true]\n", "seeds.1"),
    ("bootstrap_resamples: true\n", "bootstrap_resamples"),
    ("threads: true\n", "threads"),
    ("generation: {max_new_tokens: true}\n", "generation.max_new_tokens"),
    ("judge: {window_chars: true}\n", "judge.window_chars"),
    ("paper: {citation: x, reference: {baseline: {refusal_rate: true}}}\n",
     "paper.reference.baseline.refusal_rate"),
])
def test_boolean_for_a_number_is_refused_in_every_section(tmp_path: Path, text: str,
                                                          field: str) -> None:
    err = _error(_write(tmp_path, text))
    assert err.field == field and BOOLEAN in str(err) and err.line == 1


def test_numbers_and_real_booleans_are_still_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "        train: {learning_rate: 1, epochs: 2}\n"
                  "    trust_remote_code: true\n    reference_baselines: false\n")
    config = load_config(path)
    rate = config.attacks[0].train.learning_rate
    assert rate == 1.0 and isinstance(rate, float)
    assert (config.trust_remote_code, config.reference_baselines) == (True, False)


def test_boolean_for_a_number_is_refused_when_built_in_code_too() -> None:
    # The check lives on the config models, so re-validated copies (--seeds, sweep cells) get it.
    with pytest.raises(ValidationError, match=BOOLEAN):
        TrainSpec(epochs=True)
    with pytest.raises(ValidationError, match=BOOLEAN):
        AuditConfig.model_validate({"seeds": [0, False]})
    assert TrainSpec(learning_rate=1).learning_rate == 1.0


def test_sweeps_refuse_booleans_for_numbers(tmp_path: Path) -> None:
    from ftrisk.sweep.config import load_sweep

    _write(tmp_path, MINIMAL)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: s\nbase: audit.yaml\nsearch:\n  trials: true\n"
                     "  space:\n    train.epochs: {low: 1, high: 3}\n", encoding="utf-8")
    with pytest.raises(InputError, match=BOOLEAN) as info:
        load_sweep(sweep)
    assert (info.value.field, info.value.line) == ("search.trials", 4)
    sweep.write_text("name: s\nbase: audit.yaml\ngrid:\n  train.epochs: [1, true]\n",
                     encoding="utf-8")
    with pytest.raises(InputError, match=BOOLEAN) as info:
        load_sweep(sweep)
    assert info.value.path == sweep and "epochs" in str(info.value)


@pytest.mark.parametrize(("text", "line"), [
    ("- name: a\n- name: b\n", 1),
    ("# an audit\n\n- name: a\n", 3),
])
def test_top_level_list_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = _write(tmp_path, text)
    err = _error(path)
    assert str(err) == (f"{path}:{line}: expected a mapping of settings (key: value lines) at "
                        "the top level, got a list")


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "        train:\n          epochs: 2\n"
                  "          batch_size: 4\n          epochs: 3\n")
    err = _error(path)
    first, second = _line(path, "epochs: 2"), _line(path, "epochs: 3")
    assert str(err) == (f"{path}:{second}: duplicate key 'epochs' (first on line {first}, "
                        f"again on line {second})")


def test_config_saved_as_utf16_names_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "audit.yaml"
    path.write_text(textwrap.dedent(MINIMAL).lstrip("\n"), encoding="utf-16")
    err = _error(path)
    assert str(err) == (f"{path}:1: the file is UTF-16 (little-endian, with a byte-order mark), "
                        "not UTF-8; re-save it as UTF-8")


def test_config_in_utf8_with_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "audit.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(MINIMAL).lstrip("\n").encode())
    assert load_config(path).name == "demo"
