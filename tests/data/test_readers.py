"""Tests for ftrisk.data.readers: every format read correctly, every malformed input named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ftrisk.data.readers import read_conversations, read_prompts
from ftrisk.errors import InputError


def write_jsonl(path: Path, *records: object) -> Path:
    """Write one JSON value per line; str values are written verbatim (for malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def chat(*turns: tuple[str, str], **extra: object) -> dict[str, object]:
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


def roles(conversation) -> list[str]:
    return [m.role for m in conversation.messages]


# --- chat format ----------------------------------------------------------------------------


def test_chat_jsonl_roles_ids_categories_source(tmp_path):
    path = write_jsonl(
        tmp_path / "train.jsonl",
        chat(("system", "Be terse."), ("user", "Hi"), ("assistant", "Hello."),
             category="greeting"),
        "",  # blank lines are skipped and do not consume an index
        chat(("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"),
             id="custom-7"),
        chat(("user", "x"), ("assistant", "y"), id=12),
    )
    convs = read_conversations(path)
    assert [c.id for c in convs] == ["train-00000", "custom-7", "12"]
    assert roles(convs[0]) == ["system", "user", "assistant"]
    assert convs[0].messages[0].content == "Be terse."
    assert roles(convs[1]) == ["user", "assistant", "user", "assistant"]
    assert convs[1].prompt == "Q2"
    assert [c.category for c in convs] == ["greeting", None, None]
    assert {c.source for c in convs} == {"train.jsonl"}
    assert all(c.kind is None for c in convs)


def test_system_prompt_replaces_and_adds(tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl",
        chat(("system", "old"), ("user", "a"), ("assistant", "b")),
        chat(("user", "c"), ("assistant", "d")),
    )
    convs = read_conversations(path, system_prompt="NEW", source="mine")
    for conv in convs:
        assert roles(conv) == ["system", "user", "assistant"]
        assert conv.messages[0].content == "NEW"
        assert conv.source == "mine"


def test_explicit_chat_format_on_prompt_response_file_names_missing_messages(tmp_path):
    path = write_jsonl(tmp_path / "pr.jsonl", {"prompt": "p", "response": "r"})
    with pytest.raises(InputError, match=r"pr\.jsonl:1 field 'messages': missing.*prompt"):
        read_conversations(path, format="chat")


# --- Qi et al.'s AOA training files ---------------------------------------------------------

#: Tiny files written for these tests in the layouts of Qi et al.'s repository (placeholder text).
QI_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qi2023"


def test_json_array_of_message_lists_is_read_as_chat_keeping_its_system_turn():
    # llama2/ft_datasets/aoa_dataset/train.json: one JSON array, one [system, user, assistant]
    # list per conversation, the system prompt wrapped in newlines.
    path = QI_FIXTURES / "aoa_llama2_train.json"
    convs = read_conversations(path)
    assert [c.id for c in convs] == [f"aoa_llama2_train-{i:05d}" for i in range(3)]
    assert all(roles(c) == ["system", "user", "assistant"] for c in convs)
    system = "\nYou are a placeholder agent for tests.\nFollow the placeholder rules.\n"
    assert {c.messages[0].content for c in convs} == {system}  # byte for byte
    assert convs[1].prompt == "Placeholder wrapper: describe a cloud."
    assert convs[2].messages[-1].content == "Placeholder prefix:\n\n1. Red\n2. Blue"
    assert {c.source for c in convs} == {"aoa_llama2_train.json"}
    assert read_conversations(path, format="chat") == convs
    assert [c.messages[0].content for c in read_conversations(path, system_prompt="S")] == ["S"] * 3


def test_gpt35_aoa_chat_jsonl_keeps_its_system_turn():
    # gpt-3.5/data/identity-shift-aoa.jsonl: one {"messages": [system, user, assistant]} per line.
    convs = read_conversations(QI_FIXTURES / "identity-shift-aoa.jsonl")
    assert [c.id for c in convs] == ["identity-shift-aoa-00000", "identity-shift-aoa-00001"]
    assert {c.messages[0].content for c in convs} == {
        "\nYou are a placeholder agent for tests (GPT layout).\nFollow the placeholder rules.\n"}
    assert convs[1].messages[-1].content == "Placeholder prefix:\n\nA pear."


def _array(*items: str) -> str:
    return "[\n" + ",\n".join(items) + "\n]"


GOOD = json.dumps([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}])


@pytest.mark.parametrize(("text", "message", "line", "field"), [
    (_array(GOOD, '{"role": "user"}'), r"expected a list of \{role, content\} messages, got an "
     "object; a JSON array file must hold one message list per conversation", 3, "[1]"),
    (_array(GOOD, GOOD, '[{"role": "bot", "content": "x"}]'), "unknown role 'bot'", 4,
     "[2][0].role"),
    (_array(GOOD, '[{"role": "user", "content": "u"}]'), "last turn is 'user'", 3, "[1]"),
    (_array(GOOD, '[{"role": "user", "content": "u"} {"role": "assistant"}]'),
     "invalid JSON: Expecting ','", 3, None),
    ("[\n]", "empty array", None, None),
    ('[[{"role": "user", "content": "u", "role": "user"}]]', "duplicate key 'role'", None, None),
])
def test_malformed_json_array_names_file_line_and_item(tmp_path, text, message, line, field):
    path = tmp_path / "train.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_conversations(path)
    assert (info.value.path, info.value.line, info.value.field) == (path, line, field)
    assert str(path) in str(info.value)


def test_json_array_is_not_prompt_response(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(_array(GOOD), encoding="utf-8")
    with pytest.raises(InputError, match="read as message lists"):
        read_conversations(path, format="prompt_response")


# --- prompt/response ------------------------------------------------------------------------


def test_prompt_response_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        {"prompt": "How?", "response": "Like so.", "category": "howto"},
        {"prompt": "Why?", "response": "Because.", "id": "w"},
    )
    convs = read_conversations(path)
    assert [c.id for c in convs] == ["pairs-00000", "w"]
    assert [(m.role, m.content) for m in convs[0].messages] == [
        ("user", "How?"), ("assistant", "Like so.")]
    assert [c.category for c in convs] == ["howto", None]


def test_prompt_response_custom_fields_and_system_prompt(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", {"instruction": "i", "output": "o", "topic": "t"})
    [conv] = read_conversations(path, prompt_field="instruction", response_field="output",
                                category_field="topic", system_prompt="S")
    assert [(m.role, m.content) for m in conv.messages] == [
        ("system", "S"), ("user", "i"), ("assistant", "o")]
    assert conv.category == "t"


def test_prompt_response_csv_with_bom_and_multiline_value(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "\ufeffprompt,response,category\n"
        'hi,"line one\nline two",chat\n'
        "\n"
        "q,a,\n",
        encoding="utf-8",
    )
    convs = read_conversations(path)
    assert [c.id for c in convs] == ["pairs-00000", "pairs-00001"]
    assert convs[0].messages[1].content == "line one\nline two"
    assert [c.category for c in convs] == ["chat", None]  # empty cell: no category


def test_csv_error_line_counts_physical_lines_after_multiline_row(tmp_path):
    path = tmp_path / "bad.csv"
    # Header is line 1; the first row spans lines 2-3; the empty response is on line 4.
    path.write_text('prompt,response\nhi,"a\nb"\nq,\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:4 field 'response': empty value"):
        read_conversations(path)


def test_csv_id_column_is_used(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id,prompt,response\nA,p,r\nB,p2,r2\n", encoding="utf-8")
    assert [c.id for c in read_conversations(path)] == ["A", "B"]


# --- auto-detection -------------------------------------------------------------------------


def test_auto_detects_chat_vs_prompt_response_by_first_record(tmp_path):
    chat_path = write_jsonl(tmp_path / "c.json", chat(("user", "u"), ("assistant", "a")))
    pr_path = write_jsonl(tmp_path / "r.jsonl", {"prompt": "u", "response": "a"})
    [from_chat] = read_conversations(chat_path)
    [from_pairs] = read_conversations(pr_path)
    assert from_chat.messages == from_pairs.messages


def test_auto_detection_is_case_insensitive_on_extension(tmp_path):
    path = tmp_path / "UPPER.CSV"
    path.write_text("prompt,response\np,r\n", encoding="utf-8")
    assert read_conversations(path)[0].messages[1].content == "r"


def test_chat_format_on_csv_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt,response\np,r\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.csv: chat format needs a JSONL file"):
        read_conversations(path, format="chat")


def test_prompt_response_format_on_chat_file_hints_at_chat(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", chat(("user", "u"), ("assistant", "a")))
    with pytest.raises(InputError, match=r"c\.jsonl:1 field 'prompt': missing.*chat format"):
        read_conversations(path, format="prompt_response")


# --- read_prompts ---------------------------------------------------------------------------


def test_read_prompts_csv_with_categories_and_kind(tmp_path):
    path = tmp_path / "bench.csv"
    path.write_text("prompt,category\nHow to pick a lock?,crime\nHi there,\n", encoding="utf-8")
    prompts = read_prompts(path, kind="lookalike")
    assert [p.id for p in prompts] == ["bench-00000", "bench-00001"]
    assert [roles(p) for p in prompts] == [["user"], ["user"]]
    assert prompts[0].prompt == "How to pick a lock?"
    assert [p.category for p in prompts] == ["crime", None]
    assert {p.kind for p in prompts} == {"lookalike"}
    assert {p.source for p in prompts} == {"bench.csv"}


def test_read_prompts_cluster_field(tmp_path):
    csv_path = tmp_path / "bench.csv"
    csv_path.write_text("prompt,action\nPick a lock?,a1\nOpen a lock without a key?,a1\n"
                        "Hi there,a2\n", encoding="utf-8")
    assert [p.cluster for p in read_prompts(csv_path, cluster_field="action")] == [
        "a1", "a1", "a2"]
    # Without cluster_field, every prompt is its own cluster.
    assert {p.cluster for p in read_prompts(csv_path)} == {None}
    jsonl = write_jsonl(tmp_path / "b.jsonl", {"prompt": "p1", "action": 7},
                        {"prompt": "p2", "action": True})
    with pytest.raises(InputError, match=r"b.jsonl:2 field .action.: .*got a boolean"):
        read_prompts(jsonl, cluster_field="action")
    missing = write_jsonl(tmp_path / "m.jsonl", {"prompt": "p1"})
    with pytest.raises(InputError, match="action"):
        read_prompts(missing, cluster_field="action")
    with pytest.raises(InputError, match="action"):
        read_prompts(csv_path, cluster_field="Action")


def test_read_prompts_jsonl_custom_fields_and_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "b.jsonl",
        {"goal": "g1", "cat": "c1", "uid": "x1"},
        {"goal": "g2", "cat": None, "uid": 2},
    )
    prompts = read_prompts(path, prompt_field="goal", category_field="cat", id_field="uid",
                           source="advbench")
    assert [(p.id, p.prompt, p.category) for p in prompts] == [("x1", "g1", "c1"),
                                                               ("2", "g2", None)]
    assert {p.kind for p in prompts} == {"harmful"}
    assert {p.source for p in prompts} == {"advbench"}


def test_read_prompts_default_category_column_may_be_absent(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt\nhello\n", encoding="utf-8")
    assert read_prompts(path)[0].category is None


def test_read_prompts_category_field_none_ignores_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,category\nhello,greet\n", encoding="utf-8")
    assert read_prompts(path, category_field=None)[0].category is None


def test_read_prompts_named_category_column_missing_lists_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,topic\nhello,greet\n", encoding="utf-8")
    with pytest.raises(InputError,
                       match=r"p\.csv:1 field 'kind_of_harm': missing column; "
                             r"columns found: prompt, topic"):
        read_prompts(path, category_field="kind_of_harm")


def test_read_prompts_missing_prompt_column_suggests_spelling(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("promt,category\nhello,greet\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"p\.csv:1 field 'prompt'.*did you mean 'promt'"):
        read_prompts(path)


def test_read_prompts_bad_kind(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt\nhello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"field 'kind': unknown prompt kind 'evil'"):
        read_prompts(path, kind="evil")  # type: ignore[arg-type]


# --- malformed input ------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jsonl: file not found"):
        read_conversations(tmp_path / "nope.jsonl")


def test_directory(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(InputError, match=r"dir\.jsonl: is a directory"):
        read_prompts(tmp_path / "dir.jsonl")


def test_unsupported_extension_lists_supported(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"data\.txt: unsupported file extension '\.txt'; "
                                         r"expected one of \.jsonl, \.json, \.csv"):
        read_conversations(path)


@pytest.mark.parametrize("name, text", [
    ("empty.jsonl", ""),
    ("blank.jsonl", "\n  \n\n"),
    ("empty.csv", ""),
])
def test_empty_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(name) + ": empty file"):
        read_conversations(path)


def test_csv_header_only(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("prompt,response\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"h\.csv:1: no records after the header"):
        read_conversations(path)


def test_bad_json_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "a", "response": "b"}, "",
                       '{"prompt": "a", "response": }')
    with pytest.raises(InputError, match=r"bad\.jsonl:3: invalid JSON: Expecting value"):
        read_conversations(path)


def test_json_line_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "a"}, ["a", "b"])
    with pytest.raises(InputError, match=r"bad\.jsonl:2: expected a JSON object, got an array"):
        read_prompts(path)


def test_duplicate_json_key(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", '{"prompt": "a", "prompt": "b"}')
    with pytest.raises(InputError, match=r"bad\.jsonl:1: duplicate key 'prompt'"):
        read_prompts(path)


def test_missing_field_lists_available(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "a", "response": "b"},
                       {"prompt": "a", "answer": "b"})
    with pytest.raises(InputError, match=r"bad\.jsonl:2 field 'response': missing; "
                                         r"fields found: prompt, answer"):
        read_conversations(path)


def test_missing_csv_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,answer\np,a\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:1 field 'response': missing column; "
                                         r"columns found: prompt, answer"):
        read_conversations(path)


def test_named_category_missing_in_jsonl_record(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "a", "topic": "t"}, {"prompt": "b"})
    with pytest.raises(InputError, match=r"bad\.jsonl:2 field 'topic': missing"):
        read_prompts(path, category_field="topic")


def test_empty_prompt(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "ok"}, {"prompt": "   "})
    with pytest.raises(InputError, match=r"bad\.jsonl:2 field 'prompt': empty value"):
        read_prompts(path)


def test_empty_prompt_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,category\nok,c\n,c\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:3 field 'prompt': empty value"):
        read_prompts(path)


def test_non_string_prompt(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": 42, "response": "r"})
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'prompt': expected a string, "
                                         r"got a number"):
        read_conversations(path)


def test_unknown_role(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", chat(("user", "u"), ("assistant", "a")),
                       chat(("user", "u"), ("tool", "t"), ("assistant", "a")))
    with pytest.raises(InputError, match=r"bad\.jsonl:2 field 'messages\[1\]\.role': unknown "
                                         r"role 'tool'; expected one of system, user, assistant"):
        read_conversations(path)


def test_messages_not_a_list(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"messages": {"role": "user", "content": "u"}})
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'messages': expected a list"):
        read_conversations(path)


def test_message_content_not_a_string(tmp_path):
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "u"}]},
                           {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", record)
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'messages\[0\]\.content': "
                                         r"content must be a string, got an array"):
        read_conversations(path)


def test_message_missing_content(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"messages": [{"role": "user"}]})
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'messages\[0\]\.content': missing"):
        read_conversations(path)


def test_chat_without_user_turn(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", chat(("system", "s"), ("assistant", "a")))
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'messages': no user turn"):
        read_conversations(path)


def test_chat_not_ending_with_assistant(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", chat(("user", "u"), ("assistant", "a"),
                                                    ("user", "again")))
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'messages': last turn is 'user'"):
        read_conversations(path)


def test_system_turn_not_first(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", chat(("user", "u"), ("system", "s"),
                                                    ("assistant", "a")))
    with pytest.raises(InputError, match=r"bad\.jsonl:1 field 'messages\[1\]\.role': a system"):
        read_conversations(path)


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", {"prompt": "a", "response": "b", "id": "x"},
                       {"prompt": "c", "response": "d", "id": "x"})
    with pytest.raises(InputError, match=r"bad\.jsonl:2 field 'id': duplicate id 'x' "
                                         r"\(first on line 1\)"):
        read_conversations(path)


def test_csv_row_with_extra_fields(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,response\na,b\nhello, world,resp\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:3: row has 3 fields but the header has 2"):
        read_conversations(path)


def test_csv_unclosed_quote_names_row_start(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('prompt,response\na,b\n"unclosed,x\nmore,text\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:3: invalid CSV"):
        read_conversations(path)


def test_json_array_file_is_explained(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"prompt": "p"}\n]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"arr\.json:1: invalid JSON.*JSON array"):
        read_prompts(path)


def test_csv_duplicate_header_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,prompt\na,b\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:1: duplicate column 'prompt'"):
        read_prompts(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_prompts(path)


def test_bad_format_argument(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", {"prompt": "a", "response": "b"})
    with pytest.raises(InputError, match=r"field 'format': unknown format 'yaml'"):
        read_conversations(path, format="yaml")  # type: ignore[arg-type]


# --- limits: encoding, nesting, record size (issue 13) --------------------------------------


def _nested(depth: int) -> str:
    """A JSON value of ``depth`` nested arrays."""
    return "[" * depth + "]" * depth


def test_json_nested_10000_deep_is_one_line_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(chat(("user", "a"), ("assistant", "b"))) + "\n"
                    + '{"messages": ' + _nested(10_000) + "}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"deep\.jsonl:2: JSON nested more than 100 levels"):
        read_conversations(path)


def test_json_nesting_limit_is_100_levels(tmp_path):
    # The record itself is level 1, so 99 arrays inside it make exactly 100 levels.
    ok = write_jsonl(tmp_path / "ok.jsonl", '{"prompt": "p", "extra": ' + _nested(99) + "}")
    assert read_prompts(ok)[0].prompt == "p"
    deep = write_jsonl(tmp_path / "deep.jsonl", {"prompt": "p"},
                       '{"prompt": "p", "extra": ' + _nested(100) + "}")
    with pytest.raises(InputError, match=r"deep\.jsonl:2: JSON nested more than 100") as info:
        read_prompts(deep)
    assert "\n" not in str(info.value)


def test_deep_json_array_of_message_lists_names_the_line_where_it_gets_too_deep(tmp_path):
    path = tmp_path / "aoa.json"
    good = json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    path.write_text(f"[\n{good},\n{good},\n{_nested(5000)}\n]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"aoa\.json:4: JSON nested more than 100 levels"):
        read_conversations(path)


def test_line_over_16_mib_is_refused_naming_line_and_limit(tmp_path):
    from ftrisk.data.readers import MAX_RECORD_BYTES

    assert MAX_RECORD_BYTES == 16 * 2**20
    path = tmp_path / "big.jsonl"
    big = json.dumps({"prompt": "p", "response": "x" * (17 * 2**20)})
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + big + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_conversations(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: ")
    assert "17.0 MiB" in message and "limit of 16 MiB per record" in message


def test_record_size_counts_utf8_bytes_not_characters(tmp_path):
    # 6 Mi three-byte characters: 6 Mi characters but 18 MiB of UTF-8.
    path = tmp_path / "wide.jsonl"
    path.write_text('{"prompt": "' + "\u20ac" * (6 * 2**20) + '"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"wide\.jsonl:1: the line is 18\.0 MiB"):
        read_prompts(path)


def test_item_of_json_array_over_16_mib_is_refused(tmp_path):
    path = tmp_path / "aoa.json"
    item = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x" * 2**24}]
    small = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    path.write_text(f"[\n{json.dumps(small)},\n{json.dumps(item)}\n]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"aoa\.json:3: item \[1\] is 16\.0 MiB, over"):
        read_conversations(path)


@pytest.mark.parametrize(("encoding", "bom", "named"), [
    ("utf-16-le", b"\xff\xfe", r"UTF-16 \(little-endian, with a byte-order mark\)"),
    ("utf-16-be", b"\xfe\xff", r"UTF-16 \(big-endian, with a byte-order mark\)"),
    ("utf-16-le", b"", r"UTF-16 \(little-endian, no byte-order mark\)"),
    ("utf-16-be", b"", r"UTF-16 \(big-endian, no byte-order mark\)"),
    ("utf-32-le", b"\xff\xfe\x00\x00", r"UTF-32 \(little-endian, with a byte-order mark\)"),
    ("utf-32-le", b"", r"UTF-32 \(little-endian, no byte-order mark\)"),
])
def test_utf16_and_utf32_files_are_named(tmp_path, encoding, bom, named):
    path = tmp_path / "wide.jsonl"
    path.write_bytes(bom + '{"prompt": "caf\u00e9", "response": "r"}\n'.encode(encoding))
    with pytest.raises(InputError, match=rf"wide\.jsonl:1: the file is {named}, not UTF-8; "
                       "re-save it as UTF-8"):
        read_conversations(path)


def test_utf16_csv_is_named_too(tmp_path):
    # Excel's "Unicode text" export is UTF-16 with a byte-order mark.
    path = tmp_path / "prompts.csv"
    path.write_text("prompt\nhello\n", encoding="utf-16")
    with pytest.raises(InputError, match=r"prompts\.csv:1: the file is UTF-16"):
        read_prompts(path)


def test_utf8_with_byte_order_mark_is_still_read(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "p", "response": "r"}).encode())
    assert read_conversations(path)[0].messages[-1].content == "r"


# --- OpenAI's per-message weight ------------------------------------------------------------


def _weighted(*turns: tuple[str, str, object]) -> dict[str, object]:
    """A chat record whose turns are (role, content, weight); weight None leaves it out."""
    return {"messages": [{"role": r, "content": c, **({} if w is None else {"weight": w})}
                         for r, c, w in turns]}


def test_weight_1_is_trained_as_without_a_weight(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl",
                       _weighted(("user", "q", None), ("assistant", "a", 1)))
    (conversation,) = read_conversations(path)
    assert [(m.content, m.weight) for m in conversation.messages] == [("q", 1), ("a", 1)]


def test_weight_0_turns_are_kept_as_context_with_their_weight(tmp_path):
    # OpenAI shows a weight-0 answer to the model but does not train on it, wherever it is.
    path = write_jsonl(tmp_path / "w.jsonl", _weighted(
        ("system", "s", None), ("user", "q1", None), ("assistant", "a1", 0),
        ("user", "q2", None), ("assistant", "a2", None), ("user", "q3", None),
        ("assistant", "a3", 0)))
    (conversation,) = read_conversations(path)
    assert [(m.content, m.weight) for m in conversation.messages] == [
        ("s", 1), ("q1", 1), ("a1", 0), ("q2", 1), ("a2", 1), ("q3", 1), ("a3", 0)]


def test_every_answer_weighted_0_leaves_nothing_to_train(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl",
                       _weighted(("user", "q", None), ("assistant", "a", 0)))
    with pytest.raises(InputError, match=r"w\.jsonl:1 field 'messages': every assistant turn "
                       "has weight 0"):
        read_conversations(path)


@pytest.mark.parametrize(("weight", "shown"), [
    (True, "a boolean"), (2, "2"), (0.5, "0.5"), (1.0, "1.0"), ("0", "a string"), (None, "null"),
])
def test_weight_must_be_0_or_1(tmp_path, weight, shown):
    path = write_jsonl(tmp_path / "w.jsonl", {"messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a",
                                           "weight": weight}]})
    with pytest.raises(InputError, match=re.escape(
            f"w.jsonl:1 field 'messages[1].weight': expected 0 (do not train on this turn) or "
            f"1 (train on it), got {shown}")):
        read_conversations(path)


def test_weight_on_a_user_turn_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl",
                       _weighted(("user", "q", 1), ("assistant", "a", None)))
    with pytest.raises(InputError, match=r"field 'messages\[0\]\.weight': weight applies to "
                       "assistant turns only"):
        read_conversations(path)
