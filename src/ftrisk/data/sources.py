"""Resolve a config's data references (``builtin:NAME`` or a user file) into records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ftrisk.config import BenchmarkSpec, DataSpec, EvalSpec, PromptSetSpec, written_at
from ftrisk.errors import InputError
from ftrisk.records import Conversation, Message

_BUILTIN = "builtin:"
#: The built-in benchmark's test split (what audits report) and its dev split (for tuning).
_BUILTIN_BENCHMARKS = ("builtin:benchmark", "builtin:benchmark_dev")


def training_data(spec: DataSpec, system_prompt: str | None = None,
                  where: str = "data", log: Callable[[str], None] | None = None
                  ) -> list[Conversation]:
    """Training conversations for an attack, with ``system_prompt`` on each when given.

    Every example must end with an assistant turn (the answer to train on). ``where`` names
    the config field in errors (``attacks.0.data``); ``log`` hears what a safety filter removed.
    """
    if not spec.path.startswith(_BUILTIN):
        _check_data_path(spec.path, f"{where}.path")
    if spec.format in ("alpaca", "dolly"):
        examples = _instruction_set(spec, where, log)
        if system_prompt is not None:
            examples = [ex.with_system(system_prompt) for ex in examples]
    elif spec.path.startswith(_BUILTIN):
        from ftrisk.data.builtin import get_builtin

        try:
            examples = get_builtin(spec.path.removeprefix(_BUILTIN), spec.limit)
        except KeyError as err:
            raise InputError(str(err).strip("'\""), field=f"{where}.path") from None
        except ValueError as err:
            raise InputError(str(err), field=f"{where}.limit") from None
        if system_prompt is not None:
            examples = [ex.with_system(system_prompt) for ex in examples]
    else:
        from ftrisk.data.readers import read_conversations

        examples = read_conversations(
            spec.path, format=spec.format, prompt_field=spec.prompt_field,
            response_field=spec.response_field, category_field=spec.category_field,
            system_prompt=system_prompt)
        if spec.limit is not None:
            if spec.limit > len(examples):
                raise InputError(f"limit {spec.limit} exceeds the {len(examples)} examples in "
                                 f"{spec.path}", field=f"{where}.limit")
            examples = examples[: spec.limit]
    if spec.safety_mix is not None and spec.safety_mix.count:
        mix = spec.safety_mix
        safety = training_data(DataSpec(path=mix.path, limit=mix.count), system_prompt,
                               where=f"{where}.safety_mix")
        examples = spread(examples, [s.model_copy(update={"id": f"safety:{s.id}"})
                                     for s in safety])
    for example in examples:
        if not example.messages or example.messages[-1].role != "assistant":
            raise InputError(f"example {example.id!r} of {spec.path} has no answer to train on "
                             "(expected a conversation ending with an assistant turn)",
                             field=f"{where}.path")
    return examples


def _check_data_path(data_path: str, field: str, *, folder_ok: bool = False) -> None:
    """A data path that does not exist, or is a directory where a file is expected, is reported
    at the config key that names it (``field``), with the config file and line that wrote it
    when a config loaded in this process did."""
    target = Path(data_path)
    if target.is_file() or (folder_ok and target.is_dir()):
        return
    if target.is_dir():
        problem = "is a directory; expected a data file (.jsonl, .json or .csv)"
    else:
        problem = "not found" if folder_ok else "file not found"
    origin = written_at(data_path)
    if origin is None:
        raise InputError(problem, path=data_path, field=field)
    config_file, line = origin
    raise InputError(f"{data_path}: {problem}", path=config_file, line=line, field=field)


def _instruction_set(spec: DataSpec, where: str,
                     log: Callable[[str], None] | None) -> list[Conversation]:
    """Alpaca or Dolly in its public layout, optionally through Qi et al.'s safety filter."""
    from ftrisk.data.instruct import read_alpaca, read_dolly

    reader = read_alpaca if spec.format == "alpaca" else read_dolly
    try:
        result = reader(spec.path, safety_filter=spec.safety_filter, limit=spec.limit,
                        **spec.options)
    except TypeError as err:
        raise InputError(f"bad options for format '{spec.format}': {err}",
                         field=f"{where}.options") from None
    except InputError as err:
        if err.path is None and err.field:  # an option's value, not the file, is wrong
            raise InputError(err.message, field=f"{where}.options.{err.field}") from None
        raise
    if log is not None:
        log(f"[data] {result.summary()}")
    return list(result.examples)


def spread(first: list[Conversation], second: list[Conversation]) -> list[Conversation]:
    """Merge two lists, spacing ``second`` evenly through ``first`` (order within each kept), so
    mixed-in safety data reaches every epoch's batches, not one block."""
    keyed = [((i + 0.5) / len(first), 0, c) for i, c in enumerate(first)]
    keyed += [((i + 0.5) / len(second), 1, c) for i, c in enumerate(second)]
    return [c for _, _, c in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _limit_per_category(items: list[Conversation], limit: int | None) -> list[Conversation]:
    if limit is None:
        return items
    seen: dict[str | None, int] = {}
    kept = []
    for item in items:
        seen[item.category] = seen.get(item.category, 0) + 1
        if seen[item.category] <= limit:
            kept.append(item)
    return kept


def _read_benchmark(part: PromptSetSpec, kind: str) -> list[Conversation]:
    """A public benchmark through its registered reader; only items of ``kind`` are kept
    (XSTest, say, holds both over-refusal probes and harmful contrasts)."""
    from ftrisk.registry import BENCHMARKS

    reader = BENCHMARKS.get(part.reader)
    options = dict(part.options)
    if part.reader in ("generic", "hf"):
        options.setdefault("prompt_field", part.prompt_field)
        options.setdefault("category_field", part.category_field)
        options.setdefault("kind", kind)
    try:
        items = reader(part.path, **options)
    except TypeError as err:
        raise InputError(f"bad options for reader '{part.reader}': {err}",
                         field=f"benchmark.{kind}.options") from None
    kept = [c.model_copy(update={"id": f"{kind}:{c.id}"}) for c in items if c.kind == kind]
    if not kept:
        raise InputError(f"reader '{part.reader}' found no {kind} prompts in {part.path}",
                         field=f"benchmark.{kind}")
    return kept


def benchmark_items(spec: BenchmarkSpec) -> list[Conversation]:
    """All evaluation prompts: harmful, plus look-alike and benign sets when available."""
    from ftrisk.data.builtin import get_builtin
    from ftrisk.data.readers import read_prompts

    items: list[Conversation] = []
    for kind in ("harmful", "lookalike", "benign"):
        part: PromptSetSpec | None = getattr(spec, kind)
        if part is None and spec.harmful.path in _BUILTIN_BENCHMARKS:
            # The built-in benchmark brings its own look-alike and benign prompts.
            part = PromptSetSpec(path=spec.harmful.path)
        if part is None:
            continue
        if part.reader != "hf" and not part.path.startswith(_BUILTIN):
            # Readers of a public layout may take a folder (HEx-PHI); plain files may not.
            _check_data_path(part.path, f"benchmark.{kind}.path",
                             folder_ok=part.reader is not None)
        if part.reader is not None:
            chosen = _read_benchmark(part, kind)
        elif part.path in _BUILTIN_BENCHMARKS:
            chosen = [c for c in get_builtin(part.path.removeprefix(_BUILTIN)) if c.kind == kind]
        elif part.path.startswith(_BUILTIN):
            raise InputError(f"unknown built-in prompt set {part.path!r}; expected one of "
                             f"{', '.join(_BUILTIN_BENCHMARKS)} or a file",
                             field=f"benchmark.{kind}.path")
        else:
            chosen = read_prompts(part.path, prompt_field=part.prompt_field,
                                  category_field=part.category_field, kind=kind,
                                  cluster_field=part.cluster_field)
            # Two files may both number rows "prompts-00000": the kind keeps ids unique.
            chosen = [c.model_copy(update={"id": f"{kind}:{c.id}"}) for c in chosen]
        items += _limit_per_category(chosen, part.limit_per_category)
    if not any(i.kind == "harmful" for i in items):
        raise InputError("the benchmark has no harmful prompts", field="benchmark.harmful")
    return items


def apply_eval_spec(items: list[Conversation], spec: EvalSpec) -> list[Conversation]:
    """Present prompts as the evaluation spec says: system prompt, and the last user turn
    wrapped in the prompt template."""
    out = []
    for item in items:
        messages = list(item.messages)
        last = max(i for i, m in enumerate(messages) if m.role == "user")
        wrapped = spec.prompt_template.replace("{prompt}", messages[last].content)
        messages[last] = Message(role="user", content=wrapped)
        out.append(item.model_copy(update={"messages": tuple(messages)})
                   .with_system(spec.system_prompt))
    return out
