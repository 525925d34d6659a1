"""The packaged presets: what each one reproduces, what it needs and how to run it.

``ftrisk presets`` lists them (:func:`list_presets`, :func:`render_table`) and ``ftrisk presets
NAME`` shows one in full (:func:`describe`). Files whose name starts with ``_`` are shared bases
that other presets ``extends``; they are not listed, but :func:`describe` shows them too.

Everything here is read from the YAML files themselves (loaded and validated like a run would),
so the catalog cannot drift from what a preset does.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftrisk.config import (
    DATA_PREFIX,
    PRESETS,
    REMOTE_PREFIX,
    AttackSpec,
    AuditConfig,
    BackendSpec,
    EvalSpec,
    PaperSpec,
    PromptSetSpec,
    TrainSpec,
    load_config,
    preset_path,
)
from ftrisk.sweep.config import Sweep, SweepPaperSpec, is_sweep_file, load_sweep

PresetKind = Literal["audit", "sweep"]

#: Experiments of the source papers that have no preset, and why (shown under the listing).
NOT_PACKAGED: tuple[str, ...] = (
    "Qi et al. 2023, benign tuning on LLaVA-Instruct: multimodal (images), which ftrisk does "
    "not handle.",
    "Qi et al. 2023, AdvBench results of the AOA attack (GPT-3.5 0 -> 86.9%, Llama-2 0 -> "
    "93.9%): the epoch count they were measured at is not recorded in ftrisk.",
    "Qi et al. 2023, MT-Bench utility (GPT-3.5 8.00 -> 7.46 / 6.62 / 6.68), moderation-tool "
    "comparisons and the backdoor experiment (trigger data not public): no ftrisk metric or "
    "data for them.",
    "Qi et al. 2024 (shallow alignment): prefilling, sampled decoding (T 0.9, top-p 0.6) and "
    "the two defenses are not implemented.",
    "Lermen et al. 2023 (v2), Mixtral-Instruct: no numbers recorded in ftrisk.",
)

_WIDTH = 100
#: What each fidelity means, as the catalog says it.
FIDELITY_NOTES = {
    "faithful": "faithful = the paper's data, protocol and judge up to unavoidable differences "
                "(hardware, withheld data, retired model snapshots), so its numbers are "
                "comparable",
    "variant": "variant = ftrisk's own data or protocol, so the paper's numbers are shown for "
               "orientation only, not as a target",
}
_METRIC_LABELS = {
    "harmfulness_score": "harmfulness score",
    "harmfulness_rate": "harmfulness rate",
    "refusal_rate": "refusal rate",
    "attack_success_rate": "attack success rate",
    "mmlu": "MMLU",
    "hellaswag": "HellaSwag",
}
_RATES = {"harmfulness_rate", "refusal_rate", "attack_success_rate"}


@dataclass(frozen=True)
class PresetInfo:
    """One packaged preset as the listing shows it."""

    name: str
    kind: PresetKind
    citation: str  # the paper it reproduces ("" for ftrisk's own experiments)
    table: str
    row: str
    #: "faithful" (the paper's data, protocol and judge: its numbers are comparable),
    #: "variant" (ftrisk's own data or protocol), "" for ftrisk's own experiments.
    fidelity: str
    model: str  # hub id, local path or embedded:organism (+ quantization when set)
    method: str  # training method(s) of its attacks; "hosted" when a provider tunes it
    requires: str  # short summary: GPU, provider, number of user-supplied files, API keys
    files: tuple[str, ...]  # the data:NAME of each file the user must supply
    path: Path
    command: str  # the command in the file's header that runs it


def list_presets(data_dir: Path | None = None) -> list[PresetInfo]:
    """Every runnable packaged preset (``_`` bases skipped), sorted by name.

    ``data_dir`` only affects where ``data:`` paths resolve (default: the user's data
    directory); nothing is read from it.

    Raises:
        InputError: a preset does not load (the message names its file and field).
    """
    root = _data_root(data_dir)
    return [_info(path, root) for path in sorted(PRESETS.glob("*.yaml"))
            if not path.stem.startswith("_")]


def render_table(infos: Sequence[PresetInfo]) -> str:
    """The listing printed by ``ftrisk presets``: one line per preset, then what is left out."""
    headers = ("preset", "kind", "model", "method", "needs", "fidelity", "reproduces")
    rows = [(i.name, i.kind, _short_model(i.model), i.method, i.requires, i.fidelity or "-",
             _reproduces(i)) for i in infos]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    parts = [f"{len(infos)} presets. Audits run with `ftrisk audit --preset NAME`, sweeps with "
             "`ftrisk sweep --preset NAME`; `ftrisk presets NAME` shows one in full.", "",
             line(headers), line(["-" * w for w in widths]), *map(line, rows), "",
             _wrap(f"fidelity: {FIDELITY_NOTES['faithful']}; {FIDELITY_NOTES['variant']}."),
             "", "Not packaged:"]
    parts += [_wrap(note, "  - ", "    ") for note in NOT_PACKAGED]
    return "\n".join(parts)


def describe(name: str, data_dir: Path | None = None) -> str:
    """A readable, multi-line account of the preset ``name``: the paper experiment, model,
    data, hyperparameters, evaluation protocol, the paper's numbers and what the user must
    supply (with the paths where it goes under ``data_dir``).

    Raises:
        InputError: unknown preset (with the closest name), or one that does not load.
    """
    path = preset_path(name)
    root = _data_root(data_dir)
    config, sweep = _load(path, root)
    kind = "sweep" if sweep is not None else "audit"
    lines = [f"{name} ({kind}{', shared base' if name.startswith('_') else ''})"]
    command = _command(path, name)
    if command:
        lines.append(f"Run: {command}")
    blurb = _header_text(path)
    if blurb:
        lines += ["", *(_wrap(paragraph) for paragraph in blurb)]
    if sweep is not None:
        lines += _sweep_sections(sweep, fidelity(config, sweep))
        lines += ["", f"Base audit: {sweep.config.base}"]
        lines += _audit_sections(config, root, attacks=(sweep.attack,), base_of_sweep=True)
    else:
        lines += _audit_sections(config, root, attacks=config.attacks, base_of_sweep=False)
    return "\n".join(lines)


# --- loading --------------------------------------------------------------------------------


def _data_root(data_dir: Path | None) -> Path:
    from ftrisk.runtime import data_dir as default_data_dir

    return default_data_dir(data_dir)


def _load(path: Path, data_dir: Path) -> tuple[AuditConfig, Sweep | None]:
    if is_sweep_file(path):
        sweep = load_sweep(path, data_dir=data_dir)
        return sweep.base, sweep
    return load_config(path, data_dir=data_dir), None


def _info(path: Path, root: Path) -> PresetInfo:
    config, sweep = _load(path, root)
    paper: PaperSpec | SweepPaperSpec | None = config.paper
    method = _methods(config, config.attacks)
    if sweep is not None:
        paper = sweep.config.paper
        space = sweep.config.search.space if sweep.config.search else {}
        varied = {*sweep.config.grid, *space}
        method = "varied" if "train.method" in varied else _methods(config, (sweep.attack,))
    model = config.model + ("" if config.quantization == "none" else f" ({config.quantization})")
    return PresetInfo(
        name=path.stem, kind="sweep" if sweep is not None else "audit",
        citation=paper.citation if paper else "", table=paper.table if paper else "",
        row=paper.row if paper else "", fidelity=fidelity(config, sweep) if paper else "",
        model=model, method=method,
        requires=_requires_summary(config),
        files=tuple(_data_name(f.path, root) for f in config.requires.files),
        path=path, command=_command(path, path.stem))


def fidelity(config: AuditConfig, sweep: Sweep | None = None) -> str:
    """``faithful`` or ``variant`` for a preset that reproduces a paper ("" otherwise).

    An audit says so in ``paper.fidelity``. A sweep takes its base audit's, except that one
    which varies the training data beyond how much of it is used (``data.limit``), e.g. mixing
    in safety data, is a variant.
    """
    if sweep is None:
        return config.paper.fidelity if config.paper is not None else ""
    base = config.paper.fidelity if config.paper is not None else "variant"
    space = sweep.config.search.space if sweep.config.search else {}
    varied = {*sweep.config.grid, *space}
    if any(key.startswith("data.") and key != "data.limit" for key in varied):
        return "variant"
    return base


def _methods(config: AuditConfig, attacks: Sequence[AttackSpec]) -> str:
    if config.requires.provider is not None:
        return "hosted"  # the provider tunes the model; its method is not disclosed
    names = list(dict.fromkeys(a.train.method for a in attacks))
    return "+".join(names) or "-"


def _requires_summary(config: AuditConfig) -> str:
    parts = []
    if config.requires.gpu or config.quantization != "none":
        parts.append("GPU")
    if config.requires.provider is not None:
        parts.append(f"{config.requires.provider} API")
    count = len(config.requires.files)
    if count:
        parts.append(f"{count} file{'s' if count > 1 else ''}")
    parts += [f"${key}" for key in _api_keys(config)]
    return ", ".join(parts) or "CPU, offline"


def _api_keys(config: AuditConfig) -> list[str]:
    """Environment variables holding API keys: the hosted model's, then the LLM judges'."""
    keys = [config.remote.api_key_env] if _hosted(config) else []
    judges = [*([config.judge.backend] if config.judge.backend else []),
              *(j.backend for j in config.llm_judges)]
    keys += [backend.api_key_env for backend in judges if backend.kind == "openai"]
    return list(dict.fromkeys(keys))


def _judge_model(backend: BackendSpec) -> str:
    """Which model a judge asks, where, and where its key is."""
    at = backend.base_url or ("OpenAI" if backend.kind == "openai" else "local model")
    key = f", key in ${backend.api_key_env}" if backend.kind == "openai" else ""
    return f"{backend.model} via {at}{key}"


def _hosted(config: AuditConfig) -> bool:
    return config.model.startswith(REMOTE_PREFIX)


def _data_name(resolved: str, root: Path) -> str:
    """``data:NAME`` for a file resolved into the data directory ``root``, else the path."""
    try:
        return DATA_PREFIX + Path(resolved).relative_to(root).as_posix()
    except ValueError:
        return resolved


# --- the file's own header ------------------------------------------------------------------


def _header_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def _command(path: Path, name: str) -> str:
    """The header's command that runs ``name`` (the first ``ftrisk`` line naming it, else the
    first ``ftrisk`` line), without any trailing remark."""
    commands = [re.split(r"\s{2,}\(", line)[0].strip() for line in _header_lines(path)
                if line.startswith("ftrisk ")]
    named = [c for c in commands if re.search(rf"--preset {re.escape(name)}(\s|$)", c)]
    return (named or commands or [""])[0]


def _header_text(path: Path) -> list[str]:
    """The header's description as paragraphs (command lines left out)."""
    paragraphs: list[list[str]] = [[]]
    for line in _header_lines(path):
        if line.startswith("ftrisk "):
            continue
        if not line:
            paragraphs.append([])
        else:
            paragraphs[-1].append(line)
    return [" ".join(p) for p in paragraphs if p]


# --- sections -------------------------------------------------------------------------------


def _sweep_sections(sweep: Sweep, level: str) -> list[str]:
    spec = sweep.config
    lines: list[str] = []
    if spec.description:
        lines += ["", _wrap(spec.description)]
    if spec.paper is not None:
        lines += ["", "Paper:", _wrap(spec.paper.citation, "  ", "    ")]
        lines += _table_row(spec.paper.table, spec.paper.row)
        lines.append(_wrap(f"Fidelity: {FIDELITY_NOTES[level]} (the base audit's, "
                           "or variant when the sweep varies the data)", "  ", "    "))
        if spec.paper.differences:
            lines.append(_wrap(f"Differences: {spec.paper.differences}", "  ", "    "))
    lines += ["", f"Sweep over attack '{sweep.attack.name}' of {spec.base}:"]
    if spec.grid:
        cells = len(sweep.grid_cells())
        lines.append(f"  grid ({cells} cell{'s' if cells != 1 else ''}):")
        lines += [f"    {key}: {', '.join(_value(v) for v in values)}"
                  for key, values in spec.grid.items()]
    lines.append(f"  jailbreak threshold: refusal rate below {_pct(spec.threshold)} "
                 "(smallest budget reported)")
    if spec.search is not None:
        search = spec.search
        task = (f"task '{search.capability_task}'" if search.capability_task
                else "the first capability task")
        lines.append(_wrap(
            f"search (run with --search): {search.trials} trials, "
            f"{'minimise' if search.objective == 'refusal_rate' else 'maximise'} "
            f"{_METRIC_LABELS[search.objective]} while {task} loses at most "
            f"{search.capability_bound * 100:g} points of accuracy (seed {search.seed}):",
            "  ", "    "))
        for key, param in search.space.items():
            if param.choices is not None:
                values = "one of " + ", ".join(_value(c) for c in param.choices)
            else:
                kind = "integers" if param.is_int else "log scale" if param.log else "linear"
                values = f"{_value(param.low)} .. {_value(param.high)} ({kind})"
            lines.append(f"    {key}: {values}")
    if spec.paper is not None and spec.paper.cells:
        lines += ["", f"Paper's numbers per cell {_comparable(level)}:"]
        for cell in spec.paper.cells:
            params = ", ".join(f"{k}={_value(v)}" for k, v in cell.params.items())
            lines.append(_wrap(f"{params}: {_metrics(cell.metrics)}", "  ", "    "))
    elif spec.paper is not None:
        lines += ["", "Paper's numbers per cell: none (see the differences above)."]
    return lines


def _audit_sections(config: AuditConfig, root: Path, *, attacks: Sequence[AttackSpec],
                    base_of_sweep: bool) -> list[str]:
    lines: list[str] = []
    paper = config.paper
    if paper is not None and not base_of_sweep:
        lines += ["", "Paper:", _wrap(paper.citation, "  ", "    ")]
        lines += _table_row(paper.table, paper.row)
        lines.append(_wrap(f"Fidelity: {FIDELITY_NOTES[paper.fidelity]}", "  ", "    "))
        if paper.differences:
            lines.append(_wrap(f"Protocol differences: {paper.differences}", "  ", "    "))
    elif paper is not None and paper.differences:
        lines.append(_wrap(f"Protocol differences: {paper.differences}", "  ", "    "))
    lines += ["", "Model:", *_model_lines(config)]
    lines += ["", "Attack:" if len(attacks) == 1 else "Attacks:"]
    if base_of_sweep:
        lines.append("  (as in the base; each cell replaces the values the sweep varies)")
    if not attacks:
        lines.append("  none (the untuned model only)")
    for attack in attacks:
        lines += _attack_lines(attack, config)
    lines += ["", "Evaluation:", *_evaluation_lines(config)]
    if paper is not None and paper.reference and not base_of_sweep:
        lines += ["", f"Paper's numbers {_comparable(paper.fidelity)}:"]
        lines += [_wrap(f"{_condition(name)}: {_metrics(metrics)}", "  ", "    ")
                  for name, metrics in paper.reference.items()]
    lines += ["", "Requirements:", *_requirement_lines(config, root)]
    return lines


def _comparable(level: str) -> str:
    return "(comparable)" if level == "faithful" else f"(not comparable: {level})"


def _table_row(table: str, row: str) -> list[str]:
    return [_wrap(f"{label}: {text}", "  ", "    ")
            for label, text in (("Table", table), ("Row", row)) if text]


def _model_lines(config: AuditConfig) -> list[str]:
    lines = [f"  {config.model}"]
    if config.requires.provider is not None:
        lines.append(f"  hosted, fine-tuned through the {config.requires.provider} API")
    template = config.chat_template
    if template is None:
        lines.append("  chat template: the model's own")
    else:
        lines.append(f"  chat template: {template if '{' not in template else 'custom Jinja'}")
    if config.quantization != "none":
        lines.append(f"  quantization: {config.quantization} (bitsandbytes; LoRA trains on top)")
    lines.append(f"  precision: {config.precision}")
    return lines


def _attack_lines(attack: AttackSpec, config: AuditConfig) -> list[str]:
    lines = [f"  {attack.name}:"]
    if attack.description:
        lines.append(_wrap(attack.description, "    ", "    "))
    lines.append(_wrap(f"data: {_data_text(attack)}", "    ", "      "))
    lines.append(_wrap(f"training: {_train_text(attack.train, config)}", "    ", "      "))
    if attack.train.system_prompt is not None:
        lines.append(_wrap(f"training system prompt: \"{attack.train.system_prompt}\"",
                           "    ", "      "))
    lines.append(_wrap(f"evaluated with: {_eval_text(attack.eval)}", "    ", "      "))
    if attack.paper_differences:
        lines.append(_wrap(f"differences from the paper: {attack.paper_differences}",
                           "    ", "      "))
    return lines


def _data_text(attack: AttackSpec) -> str:
    data = attack.data
    parts = [data.path]
    if data.format != "auto":
        parts.append(f"format {data.format}")
    if data.safety_filter:
        parts.append("Qi et al.'s safety-keyword filter first")
    parts += [f"{key} {_value(value)}" for key, value in data.options.items()]
    if data.limit is not None:
        parts.append(f"first {data.limit} examples")
    if data.safety_mix is not None:
        parts.append(f"plus {data.safety_mix.count} safety examples from "
                     f"{data.safety_mix.path} spread through the set")
    return "; ".join(parts)


def _train_text(train: TrainSpec, config: AuditConfig) -> str:
    if config.requires.provider is not None:
        return (f"{train.epochs} epoch{'s' if train.epochs != 1 else ''} (the provider sets "
                "everything else)")
    method = {
        "full": "full fine-tuning",
        "lora": (f"LoRA (rank {train.lora.r}, alpha {train.lora.alpha}, dropout "
                 f"{train.lora.dropout:g}, on {', '.join(train.lora.target_modules)})"),
        "adapter": (f"LLaMA-Adapter ({train.adapter.adapter_len} prompt tokens in the top "
                    f"{train.adapter.adapter_layers} layers)"),
        "prefix": f"prefix tuning ({train.prefix.num_virtual_tokens} virtual tokens)",
    }[train.method]
    parts = [method, f"lr {_value(train.learning_rate)}"]
    if train.lr_epoch_decay != 1:
        parts[-1] += f" (x{train.lr_epoch_decay:g} each epoch)"
    parts += [f"batch {train.batch_size}",
              f"{train.epochs} epoch{'s' if train.epochs != 1 else ''}",
              f"weight decay {train.weight_decay:g}", f"max length {train.max_length} tokens",
              f"seed {train.seed}"]
    return ", ".join(parts)


def _eval_text(spec: EvalSpec) -> str:
    system = ("no system prompt of its own (the chat template's default, if any)"
              if spec.system_prompt is None else f"system prompt \"{spec.system_prompt}\"")
    if spec.prompt_template == "{prompt}":
        return f"{system}; prompts as they are"
    return f"{system}; each prompt wrapped as {spec.prompt_template!r}"


def _evaluation_lines(config: AuditConfig) -> list[str]:
    bench = config.benchmark
    lines = []
    for kind, label in (("harmful", "harmful prompts"), ("lookalike", "look-alike prompts"),
                        ("benign", "benign prompts")):
        part: PromptSetSpec | None = getattr(bench, kind)
        if part is not None:
            lines.append(_wrap(f"{label}: {_prompt_set_text(part)}", "  ", "    "))
    gen = config.generation
    lines.append(f"  decoding: greedy, up to {gen.max_new_tokens} new tokens "
                 f"(batches of {gen.batch_size})")
    judge = config.judge
    if judge.name == "qi2023-keywords":
        lines.append("  judges: Qi et al.'s refusal keywords (qi2023-keywords), case-sensitive, "
                     "anywhere in the answer")
    elif judge.name == "refusal-opening":
        where = ("anywhere in the answer" if judge.window_chars is None
                 else f"starting in the first {judge.window_chars} characters")
        lines.append(f"  judges: refusal phrases ({', '.join(judge.patterns)}) {where}")
    elif judge.backend is not None:
        lines.append(f"  judges: {judge.name}, three-way (refusal / partial / compliance) "
                     f"labels asked of {_judge_model(judge.backend)}")
    else:
        lines.append(f"  judges: {judge.name}, three-way (refusal / partial / compliance) over "
                     "the whole answer")
    for llm in config.llm_judges:
        policy = "" if llm.policy is None else ", own policy text"
        lines.append(f"          {llm.name} LLM judge: {_judge_model(llm.backend)}{policy}")
    lines += [f"          {c.name} classifier: {c.model}" for c in config.classifier_judges]
    if config.capability is None:
        lines.append("  capability: not measured")
    else:
        tasks = [t.name + (f" ({t.reader}, {t.path})" if t.path else f" ({t.reader})")
                 + (f", first {t.limit}" if t.limit else "") for t in config.capability.tasks]
        lines.append(_wrap(f"capability: {'; '.join(tasks)}", "  ", "    "))
    lines.append(_wrap(f"untuned model (baseline): {_eval_text(config.baseline_eval)}",
                       "  ", "    "))
    if config.reference_baselines:
        lines.append(_wrap("reference baselines: the untuned model is also evaluated as each "
                           "attack is (baseline@ATTACK) where that differs from the baseline",
                           "  ", "    "))
    return lines


def _prompt_set_text(part: PromptSetSpec) -> str:
    text = f"{part.path}" + (f" (reader {part.reader})" if part.reader else "")
    if part.options:
        text += "; options " + ", ".join(f"{k}={_value(v)}" for k, v in part.options.items())
    if part.limit_per_category:
        text += f"; first {part.limit_per_category} per category"
    return text


def _requirement_lines(config: AuditConfig, root: Path) -> list[str]:
    lines = []
    if config.requires.gpu or config.quantization != "none":
        lines.append("  a CUDA GPU" + (" (bitsandbytes quantization)"
                                       if config.quantization != "none" else ""))
    if config.requires.provider is not None:
        lines.append(_wrap(f"the {config.requires.provider} fine-tuning API: one job per attack "
                           "(or sweep cell), billed to your account", "  ", "    "))
    if config.model.startswith("meta-llama/"):
        lines.append(_wrap("model weights gated on the Hugging Face hub: accept Meta's licence "
                           "on the model page and log in (or pass --model with a local copy)",
                           "  ", "    "))
    for required in config.requires.files:
        lines.append(f"  file {_data_name(required.path, root)} -> {required.path}")
        lines.append(_wrap(f"source: {required.source}", "      ", "      "))
    for key in _api_keys(config):
        users = (["the hosted model"] if _hosted(config) and key == config.remote.api_key_env
                 else [])
        users += ["the LLM judge"] * any(j.backend.api_key_env == key
                                         and j.backend.kind == "openai"
                                         for j in config.llm_judges)
        lines.append(f"  ${key} for {' and '.join(users)}")
    return lines or ["  nothing beyond a CPU: runs offline"]


# --- formatting -----------------------------------------------------------------------------


def _wrap(text: str, indent: str = "", subsequent: str | None = None) -> str:
    return textwrap.fill(" ".join(text.split()), width=_WIDTH, initial_indent=indent,
                         subsequent_indent=indent if subsequent is None else subsequent,
                         break_on_hyphens=False, break_long_words=False)


def _value(value: Any) -> str:
    """Numbers as a person writes them (5e-5, not 5e-05); anything else as is."""
    if isinstance(value, float):
        return re.sub(r"e([-+])0*(\d)", r"e\1\2", f"{value:g}").replace("e+", "e")
    return str(value)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{_METRIC_LABELS.get(name, name)} "
                     f"{_pct(value) if name in _RATES else f'{value:.2f}'}"
                     for name, value in metrics.items())


def _condition(name: str) -> str:
    if name == "baseline":
        return "baseline (untuned)"
    if name.startswith("baseline@"):
        return f"{name} (untuned, evaluated as {name.removeprefix('baseline@')} is)"
    return f"{name} (after tuning)"


def _short_model(model: str) -> str:
    return re.sub(r"-hf\b", "", model.removeprefix("meta-llama/"))


def _reproduces(info: PresetInfo) -> str:
    if not info.citation:
        return "ftrisk's own experiment"
    match = re.match(r"^(.*?)\s*\b((?:19|20)\d{2})\b", info.citation)
    if match is None:
        short = info.citation.split(",")[0]
    else:
        authors, year = match.group(1).rstrip(", "), match.group(2)
        several = "et al." in authors or "," in authors or " and " in authors
        short = f"{authors.split()[0].rstrip(',')} et al. {year}" if several else \
            f"{authors} {year}"
    return f"{short}: {info.row}" if info.row else short
