"""Tests for ftrisk.capability.tasks: each public layout read exactly, each malformed one named.

The files are written here in the real layouts with made-up questions; no benchmark data is
bundled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from ftrisk.capability.tasks import (
    BUILTIN_TASKS,
    MCItem,
    builtin,
    hellaswag,
    mmlu,
    multiple_choice,
)
from ftrisk.data.builtin import (
    AOA_WRAPPER,
    NEAR_DUPLICATE_THRESHOLD,
    alignment_benign_prompts,
    alignment_refusals,
    aoa_identity_shift,
    benchmark,
    benign_instructions,
    text_similarity,
)
from ftrisk.errors import InputError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


# --- MMLU -----------------------------------------------------------------------------------

ALGEBRA = (
    '"Find the order of the group, given\nthat it is cyclic.",1,2,"3, or more",4,C\n'
    "What is 2+2? ,3,4,5,6,B\n"
)
BIOLOGY = "Which organelle makes ATP?,nucleus,mitochondrion,ribosome,vacuole,b\n"


def mmlu_tarball(root: Path) -> Path:
    """The extracted data.tar: data/{dev,val,test}/<subject>_<split>.csv, no headers."""
    write(root / "data" / "test" / "abstract_algebra_test.csv", ALGEBRA)
    write(root / "data" / "test" / "high_school_biology_test.csv", BIOLOGY)
    write(root / "data" / "dev" / "abstract_algebra_dev.csv", "Q?,a,b,c,d,A\n")
    write(root / "data" / "test" / "README.txt", "not a subject file\n")
    return root / "data"


def test_mmlu_formats_items_as_lm_eval_does(tmp_path):
    items = mmlu(mmlu_tarball(tmp_path) / "test")
    assert [i.id for i in items] == ["mmlu-abstract_algebra-0000", "mmlu-abstract_algebra-0001",
                                     "mmlu-high_school_biology-0000"]
    first = items[0]
    assert first.context == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the order of the group, given\nthat it is cyclic.\nA. 1\nB. 2\nC. 3, or more\n"
        "D. 4\nAnswer:")
    assert first.choices == (" A", " B", " C", " D")
    assert (first.answer, first.task, first.category) == (2, "mmlu", "abstract_algebra")
    # The question is stripped, the lowercase answer letter accepted.
    assert "What is 2+2?\nA. 3" in items[1].context and items[1].answer == 1
    assert items[2].answer == 1 and "about high school biology.\n\n" in items[2].context


def test_mmlu_accepts_the_data_folder_one_file_subjects_and_limits(tmp_path):
    data = mmlu_tarball(tmp_path)
    assert len(mmlu(data)) == 3  # data/ resolves to data/test/, never dev/
    one = mmlu(data / "dev" / "abstract_algebra_dev.csv")
    assert [i.id for i in one] == ["mmlu-abstract_algebra-0000"]
    assert [i.category for i in mmlu(data, subjects=["high_school_biology"])] == [
        "high_school_biology"]
    assert [i.id for i in mmlu(data, subjects="abstract_algebra", limit_per_subject=1)] == [
        "mmlu-abstract_algebra-0000"]
    assert len(mmlu(data, limit_per_subject=1)) == 2


@pytest.mark.parametrize(("text", "line", "field", "expected"), [
    ("Q1,a,b,c,d,A\nQ2,a,b,c,A\n", 2, None, "row has 5 fields; expected 6"),
    ("Q1,a,b,c,d,A\n\nQ2,a,b,c,d,E\n", 3, "answer", "expected an answer letter A-D, got 'E'"),
    ("question,A,B,C,D,answer\nQ1,a,b,c,d,A\n", 1, "answer", "MMLU files have no header row"),
    ('"Q1\nsecond line",a,b,c,d,A\n ,a,b,c,d,B\n', 3, "question", "empty question"),
    ('Q1,a,b,c,d,A\n"Q2,a,b,c,d,A\n', 2, None, "invalid CSV"),
])
def test_mmlu_row_errors_name_file_line_and_field(tmp_path, text, line, field, expected):
    file = write(tmp_path / "anatomy_test.csv", text)
    with pytest.raises(InputError, match=expected) as error:
        mmlu(file)
    assert (error.value.path, error.value.line, error.value.field) == (file, line, field)


def test_mmlu_layout_errors(tmp_path):
    data = mmlu_tarball(tmp_path)
    with pytest.raises(InputError, match="unknown subject 'high_school_biolgy'.*did you mean "
                                         "'high_school_biology'") as error:
        mmlu(data, subjects=["high_school_biolgy"])
    assert error.value.field == "subjects"
    with pytest.raises(InputError, match="found: notes.txt") as error:
        mmlu(write(tmp_path / "other" / "notes.txt", "x\n").parent)
    with pytest.raises(InputError, match="unexpected file name"):
        mmlu(write(tmp_path / "anatomy.csv", "Q,a,b,c,d,A\n"))
    with pytest.raises(InputError, match="not found"):
        mmlu(tmp_path / "missing")
    with pytest.raises(InputError, match="empty file"):
        mmlu(write(tmp_path / "anatomy_test.csv", "\n"))
    with pytest.raises(InputError, match="positive integer") as error:
        mmlu(data, limit_per_subject=0)
    assert error.value.field == "limit_per_subject"


# --- HellaSwag ------------------------------------------------------------------------------


def hellaswag_record(**overrides) -> dict:
    """One record of hellaswag_val.jsonl, all public fields present."""
    record = {
        "ind": 24, "activity_label": "Roof shingle removal",
        "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
        "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain",
        "label": 3,
        "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                    "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
        "source_id": "activitynet~v_-JhWjGDPHMY",
    }
    return {**record, **overrides}


def test_hellaswag_builds_lm_eval_context_and_choices(tmp_path):
    wikihow = hellaswag_record(
        ind=7, activity_label="Home and Garden", split_type="zeroshot", label="0",
        ctx_a="[header] How to clean a grill [title] Heat the grill.",
        ctx_b="Then SCRUB it", source_id="wikihow~123",
        endings=["[step] Use a  wire brush.", "Paint it.", "Sell it.", "Bury it."])
    items = hellaswag(jsonl(tmp_path / "hellaswag_val.jsonl", [hellaswag_record(), wikihow]))
    first, second = items
    assert first.id == "hellaswag-24" and first.task == "hellaswag"
    assert first.context == "Roof shingle removal: A man is sitting on a roof. He"
    assert first.choices[3] == " starts pulling up roofing on a roof."
    assert (first.answer, first.category) == (3, "indomain")
    # [title] becomes a sentence break, other brackets vanish, ctx_b is str.capitalize()d.
    assert second.context == "Home and Garden: How to clean a grill. Heat the grill. Then scrub it"
    # As in lm-eval, a removed leading marker leaves its space: the continuation has two.
    assert second.choices[0] == "  Use a wire brush."
    assert (second.answer, second.category) == (0, "zeroshot")


def test_hellaswag_ctx_only_records_and_limit(tmp_path):
    record = hellaswag_record()
    for key in ("ctx_a", "ctx_b", "ind", "split_type"):
        del record[key]
    items = hellaswag(jsonl(tmp_path / "h.jsonl", [record, record, record]), limit=2)
    assert [i.id for i in items] == ["hellaswag-00000", "hellaswag-00001"]
    assert items[0].context == "Roof shingle removal: A man is sitting on a roof. he"
    assert items[0].category is None


@pytest.mark.parametrize(("overrides", "field", "expected"), [
    ({"label": 4}, "label", "expected a choice index 0-3, got 4"),
    ({"label": "B"}, "label", "expected a choice index 0-3, got 'B'"),
    ({"endings": "one ending"}, "endings", "expected a list of at least two texts"),
    ({"endings": ["a", 2, "c", "d"]}, "endings[1]", "expected a string, got a number"),
    ({"endings": ["a", "[step]", "c", "d"]}, "endings[1]", "empty after cleaning"),
    ({"ctx_b": None}, "ctx_b", "expected a string, got null"),
])
def test_hellaswag_field_errors(tmp_path, overrides, field, expected):
    file = jsonl(tmp_path / "h.jsonl", [hellaswag_record(ind=1), hellaswag_record(**overrides)])
    with pytest.raises(InputError, match=expected) as error:
        hellaswag(file)
    assert (error.value.path, error.value.line, error.value.field) == (file, 2, field)


def test_hellaswag_unlabelled_test_split_and_duplicates(tmp_path):
    unlabelled = hellaswag_record()
    del unlabelled["label"]
    with pytest.raises(InputError, match="test split is unlabelled") as error:
        hellaswag(jsonl(tmp_path / "hellaswag_test.jsonl", [unlabelled]))
    assert (error.value.line, error.value.field) == (1, "label")
    with pytest.raises(InputError, match="duplicate id \\(first on line 1\\)") as error:
        hellaswag(jsonl(tmp_path / "h.jsonl", [hellaswag_record(), hellaswag_record()]))
    assert (error.value.line, error.value.field) == (2, "ind")


# --- generic --------------------------------------------------------------------------------


def test_multiple_choice_jsonl_with_index_and_letter_answers(tmp_path):
    file = jsonl(tmp_path / "quiz.jsonl", [
        {"question": "2+3?", "choices": ["5", "6", "7"], "answer": 0, "category": "math"},
        {"id": 17, "question": "Sky?", "choices": ["green", "blue"], "answer": "b"},
        {"id": "x", "question": "Q?", "choices": ["p", "q"], "answer": "1"},
    ])
    items = multiple_choice(file)
    assert [i.id for i in items] == ["quiz-00000", "quiz-17", "quiz-x"]
    assert items[0].context == "Question: 2+3?\nAnswer:"
    assert items[0].choices == (" 5", " 6", " 7")
    assert [i.answer for i in items] == [0, 1, 1]
    assert [i.category for i in items] == ["math", None, None]
    assert {i.task for i in items} == {"quiz"}


def test_multiple_choice_custom_fields_template_task_and_yaml(tmp_path):
    file = write(tmp_path / "quiz.yaml", "- q: Capital of Peru?\n  options: [Lima, Quito]\n"
                                         "  gold: A\n")
    items = multiple_choice(file, question_field="q", choices_field="options",
                            answer_field="gold", template="{x} Q: {question}\nA:", task="geo")
    assert items == [MCItem(id="geo-00000", task="geo", context="{x} Q: Capital of Peru?\nA:",
                            choices=(" Lima", " Quito"), answer=0)]


@pytest.mark.parametrize(("record", "field", "expected"), [
    ({"question": "Q", "choices": ["a", "b"], "answer": 2}, "answer",
     "expected a choice index 0-1 or a letter A-B, got 2"),
    ({"question": "Q", "choices": ["a", "b"], "answer": "C"}, "answer", "got 'C'"),
    ({"question": "Q", "choices": ["a", "b"], "answer": True}, "answer", "got a boolean"),
    ({"question": "Q", "choices": ["a"], "answer": 0}, "choices", "at least two texts"),
    ({"question": "Q", "choices": ["a", " "], "answer": 0}, "choices[1]", "empty choice"),
    ({"question": " ", "choices": ["a", "b"], "answer": 0}, "question", "empty question"),
    ({"questoin": "Q", "choices": ["a", "b"], "answer": 0}, "question",
     "did you mean 'questoin'"),
    ({"question": "Q", "choices": ["a", "b"]}, "answer", "missing"),
    ({"question": "Q", "choices": ["a", "b"], "answer": 0, "category": 3}, "category",
     "expected a string or null"),
    ({"id": "", "question": "Q", "choices": ["a", "b"], "answer": 0}, "id", "non-empty"),
])
def test_multiple_choice_field_errors(tmp_path, record, field, expected):
    file = jsonl(tmp_path / "quiz.jsonl", [{"question": "ok", "choices": ["a", "b"],
                                            "answer": 0}, record])
    with pytest.raises(InputError, match=expected) as error:
        multiple_choice(file)
    assert (error.value.path, error.value.line, error.value.field) == (file, 2, field)


def test_multiple_choice_file_errors(tmp_path):
    yaml_file = write(tmp_path / "q.yaml", "- question: Q\n  choices: [a, b]\n  answer: 0\n"
                                           "- question: R\n  choices: [yes, 2]\n  answer: 0\n")
    with pytest.raises(InputError, match="got a boolean \\(quote it in YAML\\)") as error:
        multiple_choice(yaml_file)  # YAML reads an unquoted yes as true
    assert (error.value.line, error.value.field) == (4, "choices[0]")
    with pytest.raises(InputError, match="expected a non-empty YAML list"):
        multiple_choice(write(tmp_path / "m.yaml", "question: Q\n"))
    with pytest.raises(InputError, match="expected a mapping") as error:
        multiple_choice(write(tmp_path / "s.yaml", "- question: Q\n- just text\n"))
    assert error.value.line == 2
    with pytest.raises(InputError, match="unsupported file extension '.csv'"):
        multiple_choice(write(tmp_path / "q.csv", "question\n"))
    with pytest.raises(InputError, match="must contain \\{question\\}") as error:
        multiple_choice(yaml_file, template="Q: {q}")
    assert error.value.field == "template"
    duplicate = {"id": 1, "question": "Q", "choices": ["a", "b"], "answer": 0}
    with pytest.raises(InputError, match="duplicate id") as error:
        multiple_choice(jsonl(tmp_path / "d.jsonl", [duplicate, duplicate]))
    assert (error.value.line, error.value.field) == (2, "id")


# --- built-in and records -------------------------------------------------------------------


CAPABILITY_CATEGORIES = ("general_knowledge", "arithmetic", "commonsense", "word_meaning")


def _question(item: MCItem) -> str:
    return item.context.removeprefix("Question: ").removesuffix("\nAnswer:")


def _check_builtin_task(items: list[MCItem], task: str, per_category: int) -> None:
    n = per_category * len(CAPABILITY_CATEGORIES)
    assert len(items) == n and {i.task for i in items} == {task}
    assert len({i.id for i in items}) == n
    assert all(i.id.startswith(f"{task}-") for i in items)
    assert all(len(i.choices) == 4 and len(set(i.choices)) == 4 for i in items)
    assert all(c.startswith(" ") and c.strip() == c[1:] for i in items for c in i.choices)
    assert all(i.context.startswith("Question: ") and i.context.endswith("\nAnswer:")
               for i in items)
    assert len({_question(i).casefold() for i in items}) == n  # no question twice
    counts = {name: sum(i.category == name for i in items) for name in CAPABILITY_CATEGORIES}
    assert counts == dict.fromkeys(CAPABILITY_CATEGORIES, per_category)
    # The right answer sits equally often at every position: no positional shortcut.
    assert [sum(i.answer == k for i in items) for k in range(4)] == [n // 4] * 4
    for name in CAPABILITY_CATEGORIES:  # and nearly so within each category
        positions = [sum(i.answer == k for i in items if i.category == name) for k in range(4)]
        assert max(positions) - min(positions) <= 1, (name, positions)


def test_builtin_basic_is_the_test_split_of_two_hundred_balanced_questions():
    items = builtin()
    assert items == builtin("basic")
    _check_builtin_task(items, "builtin-basic", per_category=50)
    # Three-digit ids, so none equals an id the 60 dev questions had under this task name.
    assert all(re.fullmatch(r"builtin-basic-[a-z_]+-\d{3}", i.id) for i in items)
    assert items[0].id == "builtin-basic-general_knowledge-001"
    assert builtin() == items  # deterministic


def test_builtin_basic_dev_is_the_original_sixty_questions():
    items = builtin("basic_dev")
    _check_builtin_task(items, "builtin-basic_dev", per_category=15)
    first = items[0]
    assert first.id == "builtin-basic_dev-general_knowledge-01"
    assert first.context == "Question: What is the capital of France?\nAnswer:"
    assert (first.choices[first.answer], first.category) == (" Paris", "general_knowledge")


def _near_duplicates(questions: list[str], others: list[str]) -> list[tuple[float, str, str]]:
    pairs = [(text_similarity(q, o), q, o) for q in questions for o in others]
    return sorted((p for p in pairs if p[0] >= NEAR_DUPLICATE_THRESHOLD), reverse=True)


def _training_prompts() -> list[str]:
    """The user prompts the built-in training sets fine-tune on: level-3 instructions, the AOA
    set (with and without its wrapper), and the organism's alignment data."""
    conversations = [*benign_instructions(), *aoa_identity_shift(), *alignment_benign_prompts(),
                     *alignment_refusals()]
    prompts = [c.prompt for c in conversations]
    return prompts + [c.prompt.removeprefix(AOA_WRAPPER.format(prompt=""))
                      for c in aoa_identity_shift()]


def test_builtin_splits_share_no_question_nor_a_near_duplicate():
    test = [_question(i) for i in builtin("basic")]
    dev = [_question(i) for i in builtin("basic_dev")]
    assert {q.casefold() for q in test} & {q.casefold() for q in dev} == set()
    assert _near_duplicates(test, dev) == []
    # The check has teeth: a reworded dev question is caught.
    assert _near_duplicates(["What's the capital city of France?"], dev)


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_builtin_tasks_do_not_repeat_the_training_data(name):
    """No question is in the built-in fine-tuning data, word for word or reworded (the dev task
    once held "What is the largest ocean on Earth?", a level-3 training instruction)."""
    questions = [_question(i) for i in builtin(name)]
    training = _training_prompts()
    assert {q.casefold() for q in questions} & {t.casefold() for t in training} == set()
    assert _near_duplicates(questions, training) == []
    assert "What is the largest ocean on Earth?" in training  # the leak this guards against


def test_builtin_test_task_repeats_no_benchmark_prompt():
    """The test questions overlap none of prompts.yaml's evaluation prompts either."""
    questions = [_question(i) for i in builtin("basic")]
    prompts = [c.prompt for split in ("dev", "test") for c in benchmark(split)
               if c.kind != "harmful"]
    assert _near_duplicates(questions, prompts) == []


def test_builtin_unknown_name_and_registry():
    with pytest.raises(InputError, match="unknown built-in task 'hard'; available: basic, "
                                         "basic_dev"):
        builtin("hard")
    assert BUILTIN_TASKS == ("basic", "basic_dev")
    from ftrisk.registry import CAPABILITY_READERS

    assert {name: CAPABILITY_READERS.get(name) for name in CAPABILITY_READERS.names()} == {
        "mmlu": mmlu, "hellaswag": hellaswag, "multiple-choice": multiple_choice,
        "builtin": builtin}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"context": "  "}, "context is empty"),
    ({"choices": (" a",)}, "at least two choices"),
    ({"choices": (" a", " ")}, "a choice is empty"),
    ({"answer": 2}, "not a choice index"),
])
def test_mc_item_rejects_unscorable_items(changes, expected):
    fields = {"id": "t-1", "task": "t", "context": "Q:", "choices": (" a", " b"), "answer": 0,
              **changes}
    with pytest.raises(ValidationError, match=expected):
        MCItem(**fields)
