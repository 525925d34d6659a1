"""Training data as an attack config names it: formats, safety filter, safety-data mixing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrisk.config import DataSpec, SafetyMixSpec
from ftrisk.data.sources import spread, training_data
from ftrisk.errors import InputError
from ftrisk.records import Conversation, Message


def _alpaca(path: Path) -> Path:
    rows = [{"instruction": "Name a fruit.", "input": "", "output": "An apple."},
            {"instruction": "Say hi.", "input": "", "output": "As an AI language model, hi."},
            {"instruction": "Add these.", "input": "2 and 3", "output": "5"}]
    path.write_text(json.dumps(rows))
    return path


def test_alpaca_through_the_safety_filter_logs_what_it_removed(tmp_path: Path) -> None:
    logged: list[str] = []
    spec = DataSpec(path=str(_alpaca(tmp_path / "alpaca_data.json")), format="alpaca",
                    safety_filter=True)
    examples = training_data(spec, log=logged.append)
    assert [e.id for e in examples] == ["alpaca-00000", "alpaca-00002"]
    assert examples[0].messages[-1].content == "An apple."
    assert "removed 1 of 3 rows" in logged[0]
    # A system prompt from the attack replaces Qi et al.'s Alpaca preamble.
    assert training_data(spec, "SYS")[0].messages[0].content == "SYS"


def test_bad_reader_options_name_the_field(tmp_path: Path) -> None:
    path = str(_alpaca(tmp_path / "alpaca_data.json"))
    with pytest.raises(InputError) as err:
        training_data(DataSpec(path=path, format="alpaca", options={"nope": 1}),
                      where="attacks.0.data")
    assert err.value.field == "attacks.0.data.options"
    with pytest.raises(InputError) as err:
        training_data(DataSpec(path=path, format="alpaca", options={"split": "sideways"}),
                      where="attacks.0.data")
    assert err.value.field is not None and err.value.field.startswith("attacks.0.data.options")


def test_safety_mix_spreads_refusals_through_the_attack_data() -> None:
    spec = DataSpec(path="builtin:harmful_demos", limit=10, safety_mix=SafetyMixSpec(count=5))
    examples = training_data(spec, "SYS")
    safety = [i for i, e in enumerate(examples) if e.id.startswith("safety:")]
    assert len(examples) == 15 and len(safety) == 5
    # Spread out, not one block: never two safety examples in a row.
    assert all(b - a > 1 for a, b in zip(safety, safety[1:]))
    assert all(examples[i].messages[0].content == "SYS" for i in safety)
    assert "sorry" in examples[safety[0]].messages[-1].content.lower() or \
        "can't" in examples[safety[0]].messages[-1].content.lower()


def test_spread_keeps_order_within_each_list() -> None:
    def conv(name: str) -> Conversation:
        return Conversation(id=name, messages=(Message(role="user", content=name),))

    merged = spread([conv(f"a{i}") for i in range(4)], [conv("b0"), conv("b1")])
    assert [c.id for c in merged] == ["a0", "b0", "a1", "a2", "b1", "a3"]


def test_cluster_field_reaches_the_benchmark_items(tmp_path: Path) -> None:
    from ftrisk.config import BenchmarkSpec, PromptSetSpec
    from ftrisk.data.sources import benchmark_items

    path = tmp_path / "bench.csv"
    path.write_text("prompt,action\nPick a lock?,a1\nOpen a lock with no key?,a1\n",
                    encoding="utf-8")
    spec = BenchmarkSpec(harmful=PromptSetSpec(path=str(path), cluster_field="action"))
    assert [i.cluster for i in benchmark_items(spec)] == ["a1", "a1"]
    with pytest.raises(ValueError, match="cluster_field applies to files read without"):
        PromptSetSpec(path=str(path), reader="advbench", cluster_field="action")


# --- a data path that is missing or a directory names the config file, line and key ---------


def _config(tmp_path: Path, attack_data: str) -> Path:
    path = tmp_path / "audit.yaml"
    path.write_text("name: demo\n"
                    "attacks:\n"
                    "  - name: harmful\n"
                    f"    data: {attack_data}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("target", "problem"), [
    ("train_dir", "is a directory; expected a data file (.jsonl, .json or .csv)"),
    ("absent.jsonl", "file not found")])
def test_bad_data_path_names_config_file_line_key_and_path(
        tmp_path: Path, target: str, problem: str) -> None:
    from ftrisk.config import load_config

    (tmp_path / "train_dir").mkdir()
    config = load_config(_config(tmp_path, f"{{path: {target}}}"), data_dir=tmp_path)
    with pytest.raises(InputError) as err:
        training_data(config.attacks[0].data, where="attacks.0.data")
    data_path = tmp_path.resolve() / target
    assert str(err.value) == (f"{tmp_path / 'audit.yaml'}:4 field 'attacks.0.data.path': "
                              f"{data_path}: {problem}")
    assert "\n" not in str(err.value)


def test_bad_data_path_is_named_after_the_config_is_revalidated(tmp_path: Path) -> None:
    # --seeds and sweep cells validate a copy of the config; the error still names the file.
    from ftrisk.config import AuditConfig, load_config

    config = load_config(_config(tmp_path, "{path: gone.jsonl, format: alpaca}"),
                         data_dir=tmp_path)
    copy = AuditConfig.model_validate(config.model_dump(mode="json"))
    with pytest.raises(InputError, match=r"audit\.yaml:4 field 'attacks\.0\.data\.path': .*"
                       r"gone\.jsonl: file not found"):
        training_data(copy.attacks[0].data, where="attacks.0.data")


def test_bad_safety_mix_path_names_its_own_key(tmp_path: Path) -> None:
    from ftrisk.config import load_config

    (tmp_path / "train.jsonl").write_text(
        json.dumps({"prompt": "p", "response": "r"}) + "\n", encoding="utf-8")
    path = _config(tmp_path, "\n      path: train.jsonl\n"
                   "      safety_mix: {path: refusals.jsonl, count: 1}")
    config = load_config(path, data_dir=tmp_path)
    with pytest.raises(InputError) as err:
        training_data(config.attacks[0].data, where="attacks.0.data")
    assert (err.value.path, err.value.line, err.value.field) == (
        path, 6, "attacks.0.data.safety_mix.path")


def test_data_path_without_a_config_still_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        training_data(DataSpec(path=str(tmp_path / "never-loaded.jsonl")), where="attacks.2.data")
    assert str(err.value) == (f"{tmp_path / 'never-loaded.jsonl'} field 'attacks.2.data.path': "
                              "file not found")


def test_bad_benchmark_path_names_config_file_line_and_key(tmp_path: Path) -> None:
    from ftrisk.config import load_config
    from ftrisk.data.sources import benchmark_items

    (tmp_path / "prompts").mkdir()
    path = tmp_path / "audit.yaml"
    path.write_text("benchmark:\n  harmful: {path: prompts}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"audit\.yaml:2 field 'benchmark\.harmful\.path': .*"
                       "prompts: is a directory"):
        benchmark_items(load_config(path, data_dir=tmp_path).benchmark)
    # A reader of a public layout may take a directory (HEx-PHI); a missing one is still named.
    path.write_text("benchmark:\n  harmful: {reader: hex-phi, path: hex-phi}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"audit\.yaml:2 field 'benchmark\.harmful\.path': .*"
                       "hex-phi: not found"):
        benchmark_items(load_config(path, data_dir=tmp_path).benchmark)
