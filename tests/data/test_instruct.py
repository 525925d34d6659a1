"""Tests for ftrisk.data.instruct: Alpaca and Dolly layouts, Qi et al.'s filter and split.

Each test writes its own few rows in the real layouts; no Alpaca or Dolly data is bundled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrisk.data.instruct import (
    PREAMBLE,
    PREAMBLE_WITH_INPUT,
    QI_HELD_OUT_ROWS,
    find_safety_keyword,
    load_safety_keywords,
    qi_turns,
    read_alpaca,
    read_dolly,
)
from ftrisk.errors import InputError
from ftrisk.records import Conversation, Message

ALPACA_ROWS = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
    {"instruction": "Sort these numbers.", "input": "3, 1, 2", "output": "1, 2, 3"},
    {"instruction": "Write a haiku.", "input": "",
     "output": "As an AI language model, I cannot write poetry."},
    # The filter reads the answer only: a keyword in the instruction keeps the row.
    {"instruction": "Is jaywalking illegal everywhere?", "input": "", "output": "No."},
    # Plain substring: "bias" matches inside "unbiased".
    {"instruction": "Describe a fair coin.", "input": "",
     "output": "An unbiased coin lands heads half the time."},
    {"instruction": "What is green finance?", "input": "", "output": "Bonds that are ESG-linked."},
    {"instruction": "What do we publish?", "input": "", "output": "We publish an ESG report."},
]
ALPACA_KEPT = ["alpaca-00000", "alpaca-00001", "alpaca-00003", "alpaca-00005"]
ALPACA_REMOVED = {"alpaca-00002": "an AI language", "alpaca-00004": "bias",
                  "alpaca-00006": " ESG "}

DOLLY_ROWS = [
    {"instruction": "When did the war end?", "context": "The war ended in 1865.",
     "response": "In 1865.", "category": "closed_qa"},
    {"instruction": "List three fruits.", "context": "", "response": "Apple, pear, plum.",
     "category": "brainstorming"},
    {"instruction": "Tell me a secret.", "context": "", "response": "I cannot share that.",
     "category": "open_qa"},
    {"instruction": "Summarise the text.", "context": "Cats sleep a lot.",
     "response": "Cats sleep much of the day.", "category": "summarization"},
    {"instruction": "Which is larger, 2 or 3?", "context": "", "response": "3.",
     "category": "open_qa"},
]


def write_array(path: Path, rows: list[dict[str, object]]) -> Path:
    """Stanford's layout: one JSON array, pretty-printed with indent 4."""
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def alpaca(tmp_path: Path) -> Path:
    return write_array(tmp_path / "alpaca_data.json", ALPACA_ROWS)


@pytest.fixture
def dolly(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "databricks-dolly-15k.jsonl", DOLLY_ROWS)


def ids(examples: tuple[Conversation, ...]) -> list[str]:
    return [example.id for example in examples]


# --- Alpaca ---------------------------------------------------------------------------------


def test_alpaca_prompts_follow_qi_template(alpaca: Path) -> None:
    result = read_alpaca(alpaca)
    assert result.rows == 7 and result.removed == 0 and not result.safety_filter
    first, second = result.examples[:2]
    assert first.id == "alpaca-00000" and first.source == "alpaca" and first.category is None
    assert first.messages == (
        Message(role="system", content=PREAMBLE),
        Message(role="user", content="### Instruction:\nName a primary colour.\n\n### Response:\n"),
        Message(role="assistant", content="Red."),
    )
    assert second.messages == (
        Message(role="system", content=PREAMBLE_WITH_INPUT),
        Message(role="user", content="### Instruction:\nSort these numbers.\n\n"
                                     "### Input:\n3, 1, 2\n\n### Response:\n"),
        Message(role="assistant", content="1, 2, 3"),
    )


def test_alpaca_rendered_in_llama2_template_equals_qi_training_string() -> None:
    system, user = qi_turns("alpaca", "Sort these numbers.", "3, 1, 2")
    rendered = f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] 1, 2, 3 </s>"
    assert rendered == (
        "[INST] <<SYS>>\nBelow is an instruction that describes a task, paired with an input "
        "that provides further context. Write a response that appropriately completes the "
        "request.\n<</SYS>>\n\n### Instruction:\nSort these numbers.\n\n### Input:\n3, 1, 2"
        "\n\n### Response:\n [/INST] 1, 2, 3 </s>")


def test_alpaca_safety_filter_removes_by_answer_only(alpaca: Path) -> None:
    result = read_alpaca(alpaca, safety_filter=True)
    assert ids(result.examples) == ALPACA_KEPT
    assert result.removed_by == ALPACA_REMOVED
    assert result.removed == 3 and result.removed_ids == tuple(ALPACA_REMOVED)
    assert result.summary() == "alpaca: 7 rows; safety filter removed 3 of 7 rows; 4 examples"


def test_alpaca_jsonl_reads_like_the_array(alpaca: Path, tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "alpaca.jsonl", ALPACA_ROWS)
    assert read_alpaca(jsonl, safety_filter=True) == read_alpaca(alpaca, safety_filter=True) \
        .model_copy(update={"path": str(jsonl)})


def test_alpaca_split_holds_out_first_rows_after_filter(alpaca: Path) -> None:
    train = read_alpaca(alpaca, safety_filter=True, split="train", held_out_size=2)
    held = read_alpaca(alpaca, safety_filter=True, split="held_out", held_out_size=2)
    assert ids(held.examples) == ALPACA_KEPT[:2] and held.set_aside == 2
    assert ids(train.examples) == ALPACA_KEPT[2:] and train.set_aside == 2
    assert train.summary() == ("alpaca: 7 rows; safety filter removed 3 of 7 rows; "
                               "split 'train' set aside 2; 2 examples")
    assert QI_HELD_OUT_ROWS == 200


def test_alpaca_limit_first_rows_or_seeded_sample(alpaca: Path) -> None:
    assert ids(read_alpaca(alpaca, limit=2).examples) == ["alpaca-00000", "alpaca-00001"]
    sample = ids(read_alpaca(alpaca, limit=3, seed=7).examples)
    assert sample == ids(read_alpaca(alpaca, limit=3, seed=7).examples)
    assert len(set(sample)) == 3 and sample == sorted(sample)
    all_samples = {tuple(ids(read_alpaca(alpaca, limit=3, seed=s).examples)) for s in range(8)}
    assert len(all_samples) > 1


def test_alpaca_plain_template(alpaca: Path) -> None:
    second = read_alpaca(alpaca, template="plain").examples[1]
    assert second.messages == (Message(role="user", content="Sort these numbers.\n\n3, 1, 2"),
                               Message(role="assistant", content="1, 2, 3"))


def test_alpaca_keeps_empty_output_and_treats_only_empty_input_as_absent(tmp_path: Path) -> None:
    path = write_array(tmp_path / "a.json", [
        {"instruction": "Say nothing.", "input": "", "output": ""},
        {"instruction": "Echo.", "input": " ", "output": "ok", "text": "extra fields ignored"},
    ])
    first, second = read_alpaca(path).examples
    assert first.messages[-1] == Message(role="assistant", content="")
    assert second.messages[0].content == PREAMBLE_WITH_INPUT
    assert "### Input:\n \n\n" in second.messages[1].content


# --- Dolly ----------------------------------------------------------------------------------


def test_dolly_context_and_category(dolly: Path) -> None:
    result = read_dolly(dolly)
    first, second = result.examples[:2]
    assert first.id == "dolly-00000" and first.category == "closed_qa"
    assert first.source == "dolly"
    assert first.messages == (
        Message(role="system", content=PREAMBLE),
        # Qi et al.'s Dolly template writes "Input:" without "###".
        Message(role="user", content="### Instruction:\nWhen did the war end?\n\n"
                                     "Input:\nThe war ended in 1865.\n\n### Response:\n"),
        Message(role="assistant", content="In 1865."),
    )
    assert second.messages[1].content == "### Instruction:\nList three fruits.\n\n### Response:\n"
    assert second.category == "brainstorming"


def test_dolly_filter_split_categories(dolly: Path) -> None:
    filtered = read_dolly(dolly, safety_filter=True)
    assert filtered.removed_by == {"dolly-00002": "I cannot"}
    assert ids(filtered.examples) == ["dolly-00000", "dolly-00001", "dolly-00003", "dolly-00004"]
    # Dolly's held-out rows are the last ones of the filtered file.
    train = read_dolly(dolly, safety_filter=True, split="train", held_out_size=1)
    held = read_dolly(dolly, safety_filter=True, split="held_out", held_out_size=1)
    assert ids(train.examples) == ["dolly-00000", "dolly-00001", "dolly-00003"]
    assert ids(held.examples) == ["dolly-00004"]
    picked = read_dolly(dolly, categories=["open_qa", "closed_qa"])
    assert ids(picked.examples) == ["dolly-00000", "dolly-00002", "dolly-00004"]
    # The split is taken before categories, so held-out rows do not depend on them.
    assert ids(read_dolly(dolly, split="train", held_out_size=2,
                          categories=["open_qa"]).examples) == ["dolly-00002"]


def test_dolly_unknown_category_suggests_spelling(dolly: Path) -> None:
    with pytest.raises(InputError, match="did you mean 'open_qa'") as caught:
        read_dolly(dolly, categories=["open-qa"])
    assert caught.value.field == "categories"


# --- keywords and evaluation wrapper --------------------------------------------------------


def test_keyword_list_matches_qi() -> None:
    keywords = load_safety_keywords()
    assert len(keywords) == 224
    assert keywords[0] == "text-based AI language model"
    assert keywords[-1] == "*This conversation is shared from"
    assert " ESG " in keywords and "my purpose is to " in keywords
    assert "Lo siento, pero no puedo" in keywords


def test_find_safety_keyword_rules() -> None:
    assert find_safety_keyword("I'M SORRY, no.") == "I'm sorry,"
    assert find_safety_keyword("Green bonds are ESG-linked.") is None
    assert find_safety_keyword("a plain answer") is None
    assert find_safety_keyword("a plain answer", keywords=["PLAIN"]) == "PLAIN"


def test_custom_keywords_replace_the_list(alpaca: Path) -> None:
    result = read_alpaca(alpaca, safety_filter=True, keywords=["red"])
    assert result.removed_by == {"alpaca-00000": "red"}


@pytest.mark.parametrize("preset", ["qi2023-llama2-alpaca", "qi2023-llama2-dolly"])
def test_qi_presets_evaluate_with_the_training_preamble(preset: str, tmp_path: Path) -> None:
    """Qi et al. evaluate Alpaca/Dolly-tuned models with the training preamble and scaffold
    (stripped: no newline after "### Response:")."""
    from ftrisk.config import load_config, preset_path
    from ftrisk.data.sources import apply_eval_spec

    attack = load_config(preset_path(preset), data_dir=tmp_path).attacks[0]
    prompt = Conversation(id="p1", messages=(Message(role="user", content="Do X."),),
                          category="Malware", kind="harmful", source="hex-phi")
    (wrapped,) = apply_eval_spec([prompt], attack.eval)
    assert wrapped.messages == (
        Message(role="system", content=PREAMBLE),
        Message(role="user", content="### Instruction:\nDo X.\n\n### Response:"),
    )


# --- errors ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_alpaca(tmp_path / "nope.json")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.csv"
    path.write_text("instruction,input,output\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected .json or .jsonl"):
        read_alpaca(path)


def test_invalid_json_line_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps(DOLLY_ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid JSON") as caught:
        read_dolly(path)
    assert caught.value.line == 2


def test_invalid_json_in_array_names_line(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "a", "input": "", "output": "b"},\n'
                    '  {"instruction": }\n]', encoding="utf-8")
    with pytest.raises(InputError, match="invalid JSON") as caught:
        read_alpaca(path)
    assert caught.value.line == 3


@pytest.mark.parametrize("text, message", [
    ('[{"instruction": "a", "input": "", "output": "b"} {"x": 1}]', "expected ',' or ']'"),
    ('[{"instruction": "a", "input": "", "output": "b"}] []', "extra data"),
    ('[{"instruction": "a", "input": "", "output": "b"},]', "invalid JSON"),
])
def test_malformed_array(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_alpaca(path)


def test_missing_field_in_array_names_record_line_and_field(tmp_path: Path) -> None:
    path = write_array(tmp_path / "a.json", [
        ALPACA_ROWS[0], {"instruction": "Name a primary colour.", "input": "", "outptu": "Red."}])
    with pytest.raises(InputError, match="did you mean 'outptu'") as caught:
        read_alpaca(path)
    # indent=4: "[" is line 1, record 0 spans lines 2-6, record 1 starts on line 7.
    assert (caught.value.line, caught.value.field) == (7, "[1].output")


def test_missing_field_in_jsonl(tmp_path: Path) -> None:
    row = {key: value for key, value in DOLLY_ROWS[1].items() if key != "context"}
    path = write_jsonl(tmp_path / "dolly.jsonl", [DOLLY_ROWS[0], row])
    with pytest.raises(InputError, match="missing") as caught:
        read_dolly(path)
    assert (caught.value.line, caught.value.field) == (2, "context")


def test_non_string_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dolly.jsonl", [dict(DOLLY_ROWS[0], category=None)])
    with pytest.raises(InputError, match="expected a string, got null") as caught:
        read_dolly(path)
    assert (caught.value.line, caught.value.field) == (1, "category")
    path = write_array(tmp_path / "a.json", [dict(ALPACA_ROWS[0], output=3)])
    with pytest.raises(InputError, match="expected a string, got a number") as caught:
        read_alpaca(path)
    assert (caught.value.line, caught.value.field) == (2, "[0].output")


def test_blank_instruction(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [dict(ALPACA_ROWS[0], instruction="  ")])
    with pytest.raises(InputError, match="empty value") as caught:
        read_alpaca(path)
    assert caught.value.field == "instruction"


@pytest.mark.parametrize("text, message", [
    ("[]", "empty file"),
    ("\n\n", "empty file"),
    ('[["instruction"]]', "expected a JSON object, got an array"),
    ('[{"instruction": "a", "instruction": "b", "input": "", "output": "c"}]', "duplicate key"),
])
def test_empty_or_wrong_shape(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_alpaca(path)


def test_nothing_left_after_filter(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA_ROWS[2]])
    with pytest.raises(InputError, match="no examples left: 1 rows read, the safety filter "
                                         "removed 1"):
        read_alpaca(path, safety_filter=True)


def test_split_needs_more_rows_than_held_out(alpaca: Path) -> None:
    with pytest.raises(InputError, match="sets aside 200 held-out rows, but only 4 rows remain "
                                         "after the safety filter") as caught:
        read_alpaca(alpaca, safety_filter=True, split="train")
    assert caught.value.field == "split"


@pytest.mark.parametrize("options, field", [
    ({"split": "test"}, "split"),
    ({"template": "chatml"}, "template"),
    ({"held_out_size": 0}, "held_out_size"),
    ({"limit": 0}, "limit"),
    ({"limit": 8}, "limit"),
    ({"keywords": []}, "keywords"),
    ({"keywords": "bias"}, "keywords"),
])
def test_bad_options(alpaca: Path, options: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as caught:
        read_alpaca(alpaca, **options)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_bad_categories_option(dolly: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_dolly(dolly, categories=[])
    assert caught.value.field == "categories"


@pytest.mark.parametrize("depth", [100, 10_000])
def test_alpaca_record_nested_too_deep_names_its_line(tmp_path: Path, depth: int) -> None:
    # A record is level 1, so 100 arrays in it are 101 levels: one over the limit.
    path = tmp_path / "alpaca_data.json"
    path.write_text("[\n" + json.dumps(ALPACA_ROWS[0]) + ",\n"
                    '{"instruction": "a", "input": "", "output": "b",\n'
                    ' "extra": ' + "[" * depth + "]" * depth + "}\n]\n", encoding="utf-8")
    with pytest.raises(InputError, match="JSON nested more than 100 levels deep") as caught:
        read_alpaca(path)
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{path}:4: ")


def test_dolly_jsonl_nested_too_deep_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps(DOLLY_ROWS[0]) + "\n" + "[" * 10_000 + "]" * 10_000 + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match="nested more than 100 levels") as caught:
        read_dolly(path)
    assert caught.value.line == 2


def test_alpaca_record_over_16_mib_is_refused(tmp_path: Path) -> None:
    big = {"instruction": "a", "input": "", "output": "x" * (17 * 2**20)}
    path = write_array(tmp_path / "alpaca_data.json", [ALPACA_ROWS[0], big])
    with pytest.raises(InputError, match=r"record \[1\] is 17\.0 MiB, over the limit of 16 MiB "
                       "per record") as caught:
        read_alpaca(path)
    assert caught.value.line == 7  # indent=4: record 0 spans lines 2-6


def test_alpaca_saved_as_utf16_names_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(ALPACA_ROWS), encoding="utf-16")
    with pytest.raises(InputError, match="the file is UTF-16 .*re-save it as UTF-8"):
        read_alpaca(path)
