"""Tests for ftrisk.data.benchmarks: each public layout read exactly, each malformed one named.

The files are written here in the real layouts, with placeholder text; no benchmark data is
bundled.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from ftrisk.data import benchmarks
from ftrisk.data.benchmarks import (
    advbench,
    generic,
    harmbench,
    hex_phi,
    hf_dataset,
    qi2023_csv,
    refusalbench,
    strongreject,
    xstest,
)
from ftrisk.errors import InputError
from ftrisk.registry import BENCHMARKS

#: Tiny files written for these tests in the layouts of Qi et al.'s repository (placeholder text).
QI_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qi2023"



def _input_error(read, path, message):
    """The InputError that ``read(path)`` raises, checked to match ``message`` and name
    ``path``."""
    with pytest.raises(InputError, match=message) as info:
        read(path)
    assert str(path) in str(info.value)
    return info.value

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def prompts(items) -> list[str]:
    return [c.prompt for c in items]


def assert_user_only(items, source: str) -> None:
    for item in items:
        assert [m.role for m in item.messages] == ["user"]
        assert item.source == source


# --- HEx-PHI --------------------------------------------------------------------------------


def hex_phi_dir(root: Path, numbers=(1, 3, 7, 8, 11), rows: int = 3) -> Path:
    """A HEx-PHI release: no header, one prompt per row, category_2 withheld."""
    root.mkdir()
    for n in numbers:
        lines = [f"placeholder harmful request {n}.{i}" for i in range(rows)]
        lines[1] = f'"placeholder, with a comma {n}"'  # quoted, as CSV writers do
        write(root / f"category_{n}.csv", "\n".join(lines) + "\n")
    write(root / "README.md", "not a category file\n")
    return root


def test_hex_phi_reads_directory_with_names_ids_and_order(tmp_path):
    items = hex_phi(hex_phi_dir(tmp_path / "HEx-PHI"))
    assert len(items) == 15
    assert_user_only(items, "hex-phi")
    assert {i.kind for i in items} == {"harmful"}
    # numeric, not lexicographic, file order: 1, 3, 7, 8, 11
    assert [i.category for i in items[::3]] == [
        "Illegal Activity", "Hate/Harass/Violence", "Fraud/Deception", "Adult Content",
        "Tailored Financial Advice"]
    assert [i.id for i in items[:3]] == ["hex-phi-01-000", "hex-phi-01-001", "hex-phi-01-002"]
    assert items[-1].id == "hex-phi-11-002"
    assert items[1].prompt == "placeholder, with a comma 1"
    assert items[0].prompt == "placeholder harmful request 1.0"


def test_hex_phi_full_release_has_330_in_11_categories(tmp_path):
    items = hex_phi(hex_phi_dir(tmp_path / "h", numbers=range(1, 12), rows=30))
    assert len(items) == 330
    assert len({i.category for i in items}) == 11
    assert len({i.id for i in items}) == 330


def test_hex_phi_exclude_by_number_stem_or_name(tmp_path):
    root = hex_phi_dir(tmp_path / "h")
    items = hex_phi(root, exclude_categories=[3, "category_7", "adult content"])
    assert {i.category for i in items} == {"Illegal Activity", "Tailored Financial Advice"}
    assert len(hex_phi(root, exclude_categories=11)) == 12


def test_hex_phi_single_file_and_renamed_categories(tmp_path):
    root = hex_phi_dir(tmp_path / "h")
    items = hex_phi(root / "category_7.csv", category_names={7: "Adult Content"})
    assert len(items) == 3
    assert {i.category for i in items} == {"Adult Content"}
    assert items[0].id == "hex-phi-07-000"
    # keys as a YAML or JSON config gives them
    assert {i.category for i in hex_phi(root / "category_8.csv",
                                        category_names={"8": "Fraud/Deception"})} == {
        "Fraud/Deception"}
    with pytest.raises(InputError, match="key 'seven' is not a category file number"):
        hex_phi(root, category_names={"seven": "Adult Content"})


def test_hex_phi_blank_lines_and_trailing_empty_cells_are_skipped(tmp_path):
    root = tmp_path / "h"
    write(root / "category_4.csv", "placeholder one,\n\nplaceholder two\n,\n")
    items = hex_phi(root)
    assert prompts(items) == ["placeholder one", "placeholder two"]
    assert [i.id for i in items] == ["hex-phi-04-000", "hex-phi-04-001"]


@pytest.mark.parametrize(("files", "message", "line"), [
    ({"notes.txt": "x\n", "data.csv": "x\n"}, "expected the HEx-PHI directory", None),
    ({"category_12.csv": "x\n"}, "no category name for file number 12", None),
    ({"category_1.csv": "prompt\nplaceholder\n"}, "looks like a header row", 1),
    ({"category_1.csv": "placeholder a\nplaceholder, b\n"}, "row has 2 fields", 2),
    ({"category_1.csv": "\n\n"}, "empty file", None),
    ({"category_1.csv": 'placeholder a\n"unclosed\n'}, "invalid CSV", 2),
    ({"category_1.csv": "a\n", "category_01.csv": "b\n"}, "two files for category 1", None),
])
def test_hex_phi_malformed_layouts_name_the_file(tmp_path, files, message, line):
    root = tmp_path / "h"
    for name, text in files.items():
        write(root / name, text)
    error = _input_error(hex_phi, root, message)
    assert error.line == line


def test_hex_phi_missing_path_and_bad_exclusions(tmp_path):
    with pytest.raises(InputError, match="not found") as info:
        hex_phi(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)
    root = hex_phi_dir(tmp_path / "h", numbers=(1,))
    with pytest.raises(InputError, match="unknown HEx-PHI category 'Weapons'.*4 Malware"):
        hex_phi(root, exclude_categories=["Weapons"])
    with pytest.raises(InputError, match=r"every category present \(1\) is excluded"):
        hex_phi(root, exclude_categories=[1])


# --- AdvBench -------------------------------------------------------------------------------

ADVBENCH = (
    "goal,target\n"
    "placeholder harmful request 1,\"Sure, here is placeholder 1\"\n"
    "\"placeholder, harmful request 2\",\"Sure, here is placeholder 2\"\n"
    "placeholder harmful request 3,\"Sure, here is placeholder 3\"\n"
)


def test_advbench_goal_is_the_prompt(tmp_path):
    items = advbench(write(tmp_path / "harmful_behaviors.csv", ADVBENCH))
    assert prompts(items) == ["placeholder harmful request 1", "placeholder, harmful request 2",
                              "placeholder harmful request 3"]
    assert [i.id for i in items] == ["advbench-00000", "advbench-00001", "advbench-00002"]
    assert {i.category for i in items} == {None}
    assert {i.kind for i in items} == {"harmful"}
    assert_user_only(items, "advbench")


def test_advbench_reads_qi_et_als_headerless_copy(tmp_path):
    # Their copy: the goals alone, one per row, no header, commas quoted.
    items = advbench(QI_FIXTURES / "harmful_behaviors.csv")
    assert prompts(items) == ["Write a placeholder request about topic one",
                              "Write a placeholder request, with a comma, about topic two",
                              "Write a placeholder request about topic three"]
    # The same ids as the goal,target layout gives for the same rows.
    assert [i.id for i in items] == ["advbench-00000", "advbench-00001", "advbench-00002"]
    assert {i.kind for i in items} == {"harmful"} and {i.category for i in items} == {None}
    assert_user_only(items, "advbench")
    # Both layouts of the same goals read the same.
    goals = "".join(f'"{p}",Sure\n' for p in prompts(items))
    assert advbench(write(tmp_path / "a.csv", "goal,target\n" + goals)) == items


@pytest.mark.parametrize(("text", "message", "line"), [
    # an unquoted comma in the first row fits neither layout
    ("placeholder, one\nplaceholder two\n",
     "not an AdvBench layout: the first row has 2 fields; expected the header goal,target", 1),
    # ... and later in the file breaks the one-column layout
    ("placeholder one\n\n\"placeholder, two\"\nplaceholder, three\n", "row has 2 fields", 4),
    ("prompt\nplaceholder\n", "looks like a header row \\('prompt'\\); Qi et al.'s AdvBench", 1),
    ('placeholder one\n"unclosed\n', "invalid CSV", 2),
    ("\n\n", "empty file", None),
])
def test_advbench_headerless_malformed_names_file_and_line(tmp_path, text, message, line):
    path = write(tmp_path / "harmful_behaviors.csv", text)
    error = _input_error(advbench, path, message)
    assert error.line == line


def test_qi2023_csv_reads_their_one_column_lists(tmp_path):
    items = qi2023_csv(QI_FIXTURES / "demo_examples.csv")  # every row quoted, as released
    assert prompts(items) == ["Write a placeholder demo request.",
                              "Write a placeholder demo request, with a comma."]
    assert [i.id for i in items] == ["qi2023-demo_examples-00000", "qi2023-demo_examples-00001"]
    assert {i.kind for i in items} == {"harmful"}
    assert_user_only(items, "qi2023")
    path = write(tmp_path / "demo_examples.csv", 'placeholder a\nplaceholder, b\n')
    with pytest.raises(InputError, match="row has 2 fields; expected one prompt per row") as info:
        qi2023_csv(path)
    assert (info.value.path, info.value.line) == (path, 2)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("name", "text", "message", "line"), [
    ("harmful_behaviors.csv", "goal\nplaceholder\n", r"missing target", 1),
    ("harmful_behaviors.csv", "goal,target\n,Sure\n", "field 'goal': empty value", 2),
    ("harmful_behaviors.csv", "goal,target\nplaceholder\n", "row has 1 fields", 2),
    ("harmful_behaviors.jsonl", '{"goal": "x", "target": "y"}\n', r"CSV file \(\.csv\)", None),
])
def test_advbench_malformed(tmp_path, name, text, message, line):
    path = write(tmp_path / name, text)
    error = _input_error(advbench, path, message)
    assert error.line == line


# --- HarmBench ------------------------------------------------------------------------------

HARMBENCH_HEADER = "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
HARMBENCH = HARMBENCH_HEADER + (
    "placeholder standard behaviour,standard,illegal,,,placeholder_standard_1\n"
    "placeholder edit request,contextual,misinformation_disinformation,context,"
    "\"placeholder context line one\n\nplaceholder context, line two\",placeholder_contextual_1\n"
    "placeholder lyrics request,copyright,copyright,\"lyrics, hash_check\",,placeholder_copy_1\n"
    "\"placeholder, second standard\",standard,cybercrime_intrusion,,,placeholder_standard_2\n"
)


def test_harmbench_categories_ids_and_context_joining(tmp_path):
    items = harmbench(write(tmp_path / "harmbench_behaviors_text_all.csv", HARMBENCH))
    assert [i.id for i in items] == [
        "harmbench-placeholder_standard_1", "harmbench-placeholder_contextual_1",
        "harmbench-placeholder_copy_1", "harmbench-placeholder_standard_2"]
    assert [i.category for i in items] == [
        "illegal", "misinformation_disinformation", "copyright", "cybercrime_intrusion"]
    assert items[0].prompt == "placeholder standard behaviour"
    # HarmBench's direct-request format: context, blank line, ---, blank line, behaviour
    assert items[1].prompt == ("placeholder context line one\n\nplaceholder context, line two"
                               "\n\n---\n\nplaceholder edit request")
    assert items[3].prompt == "placeholder, second standard"
    assert {i.kind for i in items} == {"harmful"}
    assert_user_only(items, "harmbench")


def test_harmbench_functional_category_filter(tmp_path):
    path = write(tmp_path / "hb.csv", HARMBENCH)
    assert [i.id for i in harmbench(path, functional_categories=["standard"])] == [
        "harmbench-placeholder_standard_1", "harmbench-placeholder_standard_2"]
    assert len(harmbench(path, functional_categories="contextual")) == 1
    assert len(harmbench(path, functional_categories=("standard", "contextual"))) == 3
    with pytest.raises(InputError, match="unknown value multimodal") as info:
        harmbench(path, functional_categories=["multimodal"])
    assert info.value.field == "functional_categories"
    only_standard = write(tmp_path / "std.csv", HARMBENCH_HEADER + "b,standard,illegal,,,id1\n")
    with pytest.raises(InputError, match="no behaviours with functional category copyright"):
        harmbench(only_standard, functional_categories=["copyright"])


@pytest.mark.parametrize(("row", "message", "field"), [
    ("b,multimodal,illegal,,,id1\n", "unknown functional category 'multimodal'",
     "FunctionalCategory"),
    ("b,contextual,illegal,context,,id1\n", "needs a ContextString", "ContextString"),
    ("b,standard,illegal,,,\n", "empty value", "BehaviorID"),
    (" ,standard,illegal,,,id1\n", "empty value", "Behavior"),
    ("b,standard,illegal,,,id1\nc,standard,illegal,,,id1\n", "duplicate id", "BehaviorID"),
])
def test_harmbench_malformed_rows(tmp_path, row, message, field):
    path = write(tmp_path / "hb.csv", HARMBENCH_HEADER + row)
    error = _input_error(harmbench, path, message)
    assert error.field == field
    assert error.line is not None and error.line >= 2


def test_harmbench_wrong_header_lists_expected_columns(tmp_path):
    path = write(tmp_path / "hb.csv", "behavior,category\nb,illegal\n")
    with pytest.raises(InputError, match="expected columns Behavior,FunctionalCategory,"
                       "SemanticCategory,ContextString,BehaviorID; found behavior,category"
                       ) as info:
        harmbench(path)
    assert info.value.line == 1


# --- StrongREJECT ---------------------------------------------------------------------------

STRONGREJECT = (
    "category,source,forbidden_prompt\n"
    "Disinformation and deception,custom,placeholder harmful request 1\n"
    "Violence,AdvBench,\"placeholder, harmful request 2\"\n"
    "Violence,custom,placeholder harmful request 3\n"
)


def test_strongreject_reads_prompts_and_categories(tmp_path):
    items = strongreject(write(tmp_path / "strongreject_dataset.csv", STRONGREJECT))
    assert prompts(items)[1] == "placeholder, harmful request 2"
    assert [i.category for i in items] == [
        "Disinformation and deception", "Violence", "Violence"]
    assert [i.id for i in items] == [
        "strongreject-00000", "strongreject-00001", "strongreject-00002"]
    assert {i.kind for i in items} == {"harmful"}
    assert_user_only(items, "strongreject")


@pytest.mark.parametrize(("text", "message", "line"), [
    ("category,prompt\nViolence,x\n",
     "expected columns category,source,forbidden_prompt; found category,prompt", 1),
    ("category,source,forbidden_prompt\nViolence,custom,\n", "field 'forbidden_prompt'", 2),
    ("category,source,forbidden_prompt\n", "no records after the header", 1),
])
def test_strongreject_malformed(tmp_path, text, message, line):
    path = write(tmp_path / "sr.csv", text)
    error = _input_error(strongreject, path, message)
    assert error.line == line


# --- XSTest ---------------------------------------------------------------------------------

XSTEST = (
    "id,prompt,type,label,focus,note\n"
    "1,placeholder lookalike request 1,homonyms,safe,kill,violence\n"
    "2,\"placeholder, lookalike request 2\",safe_targets,safe,,\n"
    "26,placeholder harmful request 1,contrast_homonyms,unsafe,kill,violence\n"
    "301,placeholder lookalike request 3,privacy_public,safe,,\n"
)


def test_xstest_safe_become_lookalikes_and_unsafe_harmful(tmp_path):
    items = xstest(write(tmp_path / "xstest_prompts.csv", XSTEST))
    assert [i.id for i in items] == ["xstest-1", "xstest-2", "xstest-26", "xstest-301"]
    assert [i.kind for i in items] == ["lookalike", "lookalike", "harmful", "lookalike"]
    assert [i.category for i in items] == [
        "homonyms", "safe_targets", "contrast_homonyms", "privacy_public"]
    assert items[1].prompt == "placeholder, lookalike request 2"
    assert_user_only(items, "xstest")


def test_xstest_without_label_column_uses_contrast_prefix(tmp_path):
    text = "id,prompt,type\n1,placeholder a,homonyms\n2,placeholder b,contrast_homonyms\n"
    items = xstest(write(tmp_path / "xstest_v1.csv", text))
    assert [i.kind for i in items] == ["lookalike", "harmful"]


#: The legacy xstest_v2_prompts.csv layout: ids of v1 (empty for prompts new in v2) and v2, no
#: label column, CRLF line endings (placeholder text).
XSTEST_V2 = (
    "id_v1,id_v2,type,prompt,focus,note\r\n"
    "v1-1,v2-1,homonyms,placeholder lookalike request 1,kill,violence\r\n"
    ",v2-2,safe_targets,\"placeholder, lookalike request 2\",,\r\n"
    "v1-26,v2-26,contrast_homonyms,placeholder harmful request 1,kill,violence\r\n"
    ",v2-301,privacy_public,placeholder lookalike request 3,,\r\n"
)


def test_xstest_legacy_v2_layout_with_crlf_reads_like_the_current_one(tmp_path):
    path = tmp_path / "xstest_v2_prompts.csv"
    path.write_bytes(XSTEST_V2.encode("utf-8"))
    assert b"\r\n" in path.read_bytes()
    items = xstest(path)
    # id_v2 "v2-N" is the current release's id N, so both layouts give the same records.
    assert items == xstest(write(tmp_path / "xstest_prompts.csv", XSTEST))
    assert [i.kind for i in items] == ["lookalike", "lookalike", "harmful", "lookalike"]
    assert items[1].prompt == "placeholder, lookalike request 2"  # no stray \r anywhere
    assert all("\r" not in (i.prompt + (i.category or "")) for i in items)


def test_xstest_legacy_layout_errors_name_file_and_line(tmp_path):
    path = tmp_path / "xstest_v2_prompts.csv"
    path.write_bytes(XSTEST_V2.replace(",v2-301,", ",v2-1,").encode("utf-8"))
    with pytest.raises(InputError, match="duplicate id 'xstest-1'") as info:
        xstest(path)
    assert (info.value.path, info.value.line, info.value.field) == (path, 5, "id_v2")
    path.write_bytes(b"id_v1,id_v2,type,text\r\nv1-1,v2-1,homonyms,a\r\n")
    with pytest.raises(InputError, match=r"id_v1,id_v2,type,prompt,focus,note \(xstest_v2_prompts"
                       r"\.csv\); found id_v1,id_v2,type,text \(missing prompt\)") as info:
        xstest(path)
    assert (info.value.line, str(path) in str(info.value)) == (1, True)


@pytest.mark.parametrize(("text", "message", "field", "line"), [
    ("id,text,type,label\n1,a,homonyms,safe\n",
     "expected columns id,prompt,type,label,focus,note \\(xstest_prompts.csv\\) or "
     "id_v1,id_v2,type,prompt,focus,note \\(xstest_v2_prompts.csv\\); found id,text,type,label",
     None, 1),
    ("id,prompt,type,label\n1,a,homonyms,maybe\n", "unknown label 'maybe'", "label", 2),
    ("id,prompt,type,label\n1,a,homonyms,safe\n1,b,homonyms,safe\n", "duplicate id", "id", 3),
    ("id,prompt,type,label\n,a,homonyms,safe\n", "empty value", "id", 2),
])
def test_xstest_malformed(tmp_path, text, message, field, line):
    path = write(tmp_path / "xs.csv", text)
    error = _input_error(xstest, path, message)
    assert (error.field, error.line) == (field, line)


@pytest.mark.parametrize("label", ["Unsafe ", "UNSAFE", "Safe", " safe", "unsafe\t"])
def test_xstest_labels_are_read_exactly_as_released_not_folded(tmp_path, label):
    # The released xstest_prompts.csv writes exactly "safe" or "unsafe" in all 450 rows.
    path = write(tmp_path / "xs.csv", XSTEST.replace(",contrast_homonyms,unsafe,",
                                                     f",contrast_homonyms,{label},"))
    error = _input_error(xstest, path, re.escape(
        f"xs.csv:4 field 'label': unknown label {label!r}; expected exactly 'safe' or 'unsafe'"))
    assert (error.field, error.line) == ("label", 4)


# --- RefusalBench ---------------------------------------------------------------------------


def test_refusalbench_category_mapping(tmp_path):
    data = {"hate": ["placeholder harmful request 1", "placeholder harmful request 2"],
            "Illegal Activity": ["placeholder harmful request 3"]}
    items = refusalbench(write(tmp_path / "refusalbench.json", json.dumps(data, indent=2)))
    assert [i.id for i in items] == [
        "refusalbench-hate-000", "refusalbench-hate-001", "refusalbench-illegal_activity-000"]
    assert [i.category for i in items] == ["hate", "hate", "Illegal Activity"]
    assert prompts(items)[2] == "placeholder harmful request 3"
    assert {i.kind for i in items} == {"harmful"}
    assert_user_only(items, "refusalbench")


def test_refusalbench_excludes_categories_like_the_paper(tmp_path):
    data = {"hate": ["placeholder harmful request 1"], "copyright": ["placeholder request 2"]}
    path = write(tmp_path / "refusalbench.json", json.dumps(data))
    kept = refusalbench(path, exclude_categories=["Copyright"])
    assert [i.category for i in kept] == ["hate"]
    with pytest.raises(InputError, match="does not have") as err:
        refusalbench(path, exclude_categories=["copyrite"])
    assert err.value.field == "exclude_categories"


def test_refusalbench_record_list_with_and_without_ids(tmp_path):
    data = [{"prompt": "placeholder harmful request 1", "category": "hacking", "id": 7},
            {"prompt": "placeholder harmful request 2", "category": "weapons"},
            {"prompt": "placeholder harmful request 3", "category": "weapons", "id": "w-3"}]
    items = refusalbench(write(tmp_path / "rb.json", json.dumps(data)))
    assert [i.id for i in items] == ["refusalbench-7", "refusalbench-00001", "refusalbench-w-3"]
    assert [i.category for i in items] == ["hacking", "weapons", "weapons"]


@pytest.mark.parametrize(("text", "message", "field", "line"), [
    ('{"hate": ["a",]}', "invalid JSON", None, 1),
    ('{"hate": ["a"], "hate": ["b"]}', "duplicate key 'hate'", None, None),
    ('"just a string"', "expected {category: \\[prompts\\]}.*got a string", None, None),
    ("{}", "got an empty object", None, None),
    ('{"hate": "a"}', "expected a non-empty list of prompt strings, got a string", "hate", None),
    ('{"hate": []}', "got an empty array", "hate", None),
    ('{"hate": ["a", 3]}', "expected a string, got a number", "hate[1]", None),
    ('{"hate": ["a", "  "]}', "empty value", "hate[1]", None),
    ('[{"prompt": "a"}]', "missing; fields found: prompt", "[0].category", None),
    ('[{"prompt": "a", "category": "x"}, 5]', "expected an object", "[1]", None),
    ('[{"prompt": "a", "category": "x", "id": 1}, {"prompt": "b", "category": "x", "id": 1}]',
     "duplicate id 'refusalbench-1'", "id", None),
])
def test_refusalbench_malformed(tmp_path, text, message, field, line):
    path = write(tmp_path / "rb.json", text)
    error = _input_error(refusalbench, path, message)
    assert (error.field, error.line) == (field, line)


def test_refusalbench_rejects_jsonl_and_missing_file(tmp_path):
    path = write(tmp_path / "rb.jsonl", '{"prompt": "a", "category": "x"}\n')
    with pytest.raises(InputError, match="use the 'generic' reader"):
        refusalbench(path)
    with pytest.raises(InputError, match="file not found"):
        refusalbench(tmp_path / "absent.json")


@pytest.mark.parametrize("depth", [101, 10_000])
def test_refusalbench_nested_too_deep_is_one_line_error(tmp_path, depth):
    # 10,000 levels used to crash Python's parser with a RecursionError traceback.
    path = write(tmp_path / "rb.json",
                 '{\n  "hate": ["a"],\n  "deep": ' + "[" * depth + "]" * depth + "\n}\n")
    error = _input_error(refusalbench, path, "JSON nested more than 100 levels deep")
    assert error.line == 3


def test_refusalbench_in_utf16_names_the_encoding(tmp_path):
    path = tmp_path / "rb.json"
    path.write_text('{"hate": ["a"]}', encoding="utf-16")
    _input_error(refusalbench, path, "the file is UTF-16 .*re-save it as UTF-8")


# --- generic and Hugging Face ---------------------------------------------------------------


def test_generic_delegates_with_column_mapping(tmp_path):
    path = write(tmp_path / "mine.csv",
                 "text,topic,key\nplaceholder a,t1,k1\nplaceholder b,t2,k2\n")
    items = generic(path, prompt_field="text", category_field="topic", kind="benign",
                    id_field="key", source="mine")
    assert [(i.id, i.prompt, i.category, i.kind, i.source) for i in items] == [
        ("k1", "placeholder a", "t1", "benign", "mine"),
        ("k2", "placeholder b", "t2", "benign", "mine")]
    with pytest.raises(InputError, match="missing column") as info:
        generic(path, prompt_field="prompt")
    assert str(path) in str(info.value)


def test_hf_dataset_without_datasets_package_names_file_and_reader(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(InputError) as info:
        hf_dataset("LLM-Tuning-Safety/HEx-PHI")
    message = str(info.value)
    assert message.startswith("hf:LLM-Tuning-Safety/HEx-PHI:")
    assert "'datasets' package" in message
    assert "category_1.csv" in message and "'hex-phi' reader" in message


def test_hf_dataset_unreachable_hub_names_file_and_reader(monkeypatch):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConnectionError("Couldn't reach 'walledai/AdvBench' (OfflineModeIsEnabled)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(InputError) as info:
        hf_dataset("walledai/AdvBench", split="train")
    message = str(info.value)
    assert calls == [(("walledai/AdvBench",), {"name": None, "split": "train"})]
    assert "ConnectionError" in message and "OfflineModeIsEnabled" in message
    assert "harmful_behaviors.csv" in message and "'advbench' reader" in message


def test_hf_dataset_rejects_unknown_kind_before_loading(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match="unknown prompt kind 'evil'") as info:
        hf_dataset("walledai/AdvBench", kind="evil")
    assert info.value.field == "kind"


def test_hf_dataset_unknown_dataset_suggests_generic_reader(monkeypatch):
    def load_dataset(*args, **kwargs):
        raise FileNotFoundError("no such dataset")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(InputError, match="huggingface.co/datasets/someone/prompts.*'generic' "
                       "reader with path=<that file>"):
        hf_dataset("someone/prompts")


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs hub offline mode")
def test_hf_dataset_real_library_in_offline_mode():
    pytest.importorskip("datasets")
    with pytest.raises(InputError, match="cannot load split 'train' from the hub.*'xstest' reader"):
        hf_dataset("walledai/XSTest")


# --- registry -------------------------------------------------------------------------------


def test_registry_resolves_every_reader(tmp_path):
    assert BENCHMARKS.get("advbench") is advbench
    assert BENCHMARKS.get("hex-phi") is hex_phi
    assert BENCHMARKS.get("hf") is hf_dataset
    assert BENCHMARKS.get("qi2023-csv") is qi2023_csv
    assert BENCHMARKS.names() == sorted(
        ["advbench", "generic", "harmbench", "hex-phi", "hf", "qi2023-csv", "refusalbench",
         "strongreject", "xstest"])
    for name in BENCHMARKS.names():
        assert callable(BENCHMARKS.get(name))
        assert BENCHMARKS.get(name).__module__ == benchmarks.__name__
    items = BENCHMARKS.get("xstest")(write(tmp_path / "x.csv", XSTEST))
    assert len(items) == 4


def test_registry_unknown_name_lists_known_ones():
    with pytest.raises(InputError, match="unknown benchmark 'advbnech'; available: advbench, "
                       "generic, harmbench, hex-phi, hf, qi2023-csv, refusalbench, strongreject, "
                       "xstest"):
        BENCHMARKS.get("advbnech")
