"""Plain-text tables for the terminal, and the rows and sentences report.md and report.html
share, all read from the typed results record (:class:`ftrisk.records.AuditResults`)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ftrisk.records import (
    AuditResults,
    ConditionResult,
    JudgeAgreement,
    JudgeResult,
    PairedChange,
    SeedSpread,
    TaskCapability,
)

#: The LLM judge whose numbers stand beside the papers' (Qi et al.'s 1-5 GPT-4 rubric).
PAPER_JUDGE = "rubric"


def harm_judge(judges: Iterable[str]) -> str | None:
    """The judge whose harmfulness numbers represent a condition: the rubric judge when it
    ran (the papers' scale), else the first LLM judge, else None."""
    names = list(judges)
    return PAPER_JUDGE if PAPER_JUDGE in names else next(iter(names), None)


def pct(value: float | None) -> str:
    """A rate as a percentage, or '-' when missing."""
    # + 0.0 turns -0.0 into 0.0
    return "-" if value is None or value != value else f"{100 * value + 0.0:.1f}%"


def pct_ci(value: float | None, ci: Sequence[float] | None) -> str:
    """A rate with its confidence interval, e.g. '82.0% [76.4, 87.1]'."""
    if value is None:
        return "-"
    if not ci:
        return pct(value)
    return f"{pct(value)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Align columns; the first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[Any]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def signed_points(value: float | None, ci: Sequence[float] | None = None) -> str:
    """A difference of shares in percentage points, e.g. '-62.5 pts [-70.1, -54.0]'."""
    if value is None:
        return "-"
    return f"{100 * value:+.1f} pts" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


def p_text(p: float | None) -> str:
    """A p-value in few characters: '0.031', '3e-12'."""
    if p is None:
        return "-"
    return f"{p:.0e}" if p < 0.001 else f"{p:.2g}"


def versus_text(versus: PairedChange | None) -> str:
    """A condition's paired refusal-rate change against its reference baseline, e.g.
    '-62.5 pts [-70.1, -54.0] vs baseline@aoa, Holm p 3e-12'; '-' for baselines and old
    results."""
    if versus is None:
        return "-"
    test, p = (("Holm p", versus.holm_p) if versus.holm_p is not None
               else ("McNemar p", versus.mcnemar_p))
    return (f"{signed_points(versus.difference, versus.difference_ci)} vs {versus.baseline}, "
            f"{test} {p_text(p)}")


def _n_cell(c: ConditionResult) -> str:
    unscored = c.n_unscored.get("harmful", 0)
    if not unscored:
        return str(c.n_harmful)
    # Results before the three-way judge left unscored answers out of n_harmful.
    return (f"{c.n_harmful} ({unscored} unscored)" if "unscored_rate" in c.model_fields_set
            else f"{c.n_harmful} (+{unscored} unscored)")


def _train_cells(c: ConditionResult) -> list[str]:
    return ["-" if c.train_tokens is None else f"{c.train_tokens:,}",
            "-" if c.train_seconds is None else f"{c.train_seconds:.1f}"]


def _rate(c: ConditionResult, key: str) -> str:
    """The rate ``key`` of ``c`` with its CI (the ``<key>_ci`` field)."""
    return pct_ci(getattr(c, key), getattr(c, f"{key}_ci"))


def summary_rows(conditions: Sequence[ConditionResult], *, compact: bool = False
                 ) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per condition, with full refusal, partial, compliance, attack
    success (partial + compliance) and over-refusal, each with its 95% CI, and the paired
    refusal change against the reference baseline. ``compact`` (the terminal) keeps only
    the refusal CI and leaves the change to :func:`versus_rows`."""
    if compact:
        headers = ["condition", "n", "refusal (95% CI)", "partial", "comply", "ASR",
                   "over-ref.", "tokens", "train s"]
        rows = [[c.name, _n_cell(c), _rate(c, "refusal_rate"), pct(c.partial_rate),
                 pct(c.compliance_rate), pct(c.attack_success_rate), pct(c.over_refusal_rate),
                 *_train_cells(c)] for c in conditions]
        return headers, rows
    headers = ["condition", "n", "refusal (95% CI)", "partial (95% CI)", "compliance (95% CI)",
               "ASR (95% CI)", "over-refusal (95% CI)", "refusal change vs baseline (95% CI)",
               "train tokens", "train s"]
    rows = [[c.name, _n_cell(c), _rate(c, "refusal_rate"), _rate(c, "partial_rate"),
             _rate(c, "compliance_rate"), _rate(c, "attack_success_rate"),
             _rate(c, "over_refusal_rate"), versus_text(c.versus_baseline), *_train_cells(c)]
            for c in conditions]
    return headers, rows


def versus_rows(conditions: Sequence[ConditionResult], *, compact: bool = False
                ) -> tuple[list[str], list[list[str]]]:
    """The paired test of each attack against its reference baseline on the same prompts:
    one row per condition that has one (none for baselines or old results)."""
    tested = [(c.name, c.versus_baseline) for c in conditions if c.versus_baseline is not None]
    if compact:
        return (["condition", "vs", "refusal change (95% CI)", "Holm p"],
                [[name, v.baseline, signed_points(v.difference, v.difference_ci),
                  p_text(v.holm_p)] for name, v in tested])
    clustered = any(v.clustered_p is not None for _, v in tested)
    headers = ["condition", "baseline", "n", "refusal change (95% CI)", "newly refused",
               "no longer refused", "exact McNemar p", *(["clustered p"] if clustered else []),
               "Holm p"]
    rows = [[name, v.baseline, str(v.n), signed_points(v.difference, v.difference_ci),
             str(v.became_true), str(v.became_false), p_text(v.mcnemar_p),
             *([p_text(v.clustered_p)] if clustered else []), p_text(v.holm_p)]
            for name, v in tested]
    return headers, rows


VERSUS_NOTE = ("Each attack's refusal rate minus its reference baseline's (baseline@<attack> "
               "when that was evaluated, else baseline) on the same prompts, in percentage "
               "points with a 95% CI. The p-value is McNemar's test on the paired answers: "
               "exact when every pair is its own unit, and for clustered pairs (Durkalski et "
               "al. 2003) where answers are clustered (phrasings of one action, one prompt "
               "answered by several seeds); Holm-adjusted across the run's attacks.")


def category_rows(conditions: Sequence[ConditionResult], *, with_ci: bool = False
                  ) -> tuple[list[str], list[list[str]]]:
    """Per-category refusal rate (with its 95% CI if asked): one row per category, one column
    per condition."""
    categories = sorted({cat for c in conditions for cat in c.per_category})
    headers = ["category (refusal)", *[c.name for c in conditions]]

    def cell(c: ConditionResult, cat: str) -> str:
        value = c.per_category.get(cat)
        return pct_ci(value, c.per_category_ci.get(cat)) if with_ci else pct(value)

    return headers, [[cat, *[cell(c, cat) for c in conditions]] for cat in categories]


def judge_category_rows(conditions: Sequence[ConditionResult], judge: str
                        ) -> tuple[list[str], list[list[str]]]:
    """One LLM judge's mean harmfulness score per category (95% CI), one column per condition."""
    judged = [(c.name, c.judges[judge]) for c in conditions if judge in c.judges]
    categories = sorted({cat for _, j in judged for cat in j.per_category_mean})

    def cell(j: JudgeResult, cat: str) -> str:
        mean = j.per_category_mean.get(cat)
        if mean is None:
            return "-"
        ci = j.per_category_mean_ci.get(cat)
        return f"{mean:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    return ([f"category ({judge} score)", *[name for name, _ in judged]],
            [[cat, *[cell(j, cat) for _, j in judged]] for cat in categories])


def _method(h: dict[str, Any]) -> str:
    if h.get("method") == "lora":
        lora = h.get("lora") or {}
        return (f"LoRA r={lora.get('r')} alpha={lora.get('alpha')} "
                f"on {'+'.join(lora.get('target_modules', []))}")
    if h.get("method") == "adapter":
        adapter = h.get("adapter") or {}
        return (f"LLaMA-Adapter ({adapter.get('adapter_len')} tokens x "
                f"{adapter.get('adapter_layers')} layers)")
    if h.get("method") == "prefix":
        return f"prefix tuning ({(h.get('prefix') or {}).get('num_virtual_tokens')} tokens)"
    if h.get("method") == "hosted":
        return "the provider's fine-tuning job (it chooses learning rate and batch size)"
    return "full fine-tuning"


#: Capability per task of one table row (a condition or a sweep cell), under the row's name.
Capabilities = Sequence[tuple[str, Mapping[str, TaskCapability]]]


def capabilities(conditions: Sequence[ConditionResult]) -> Capabilities:
    """The conditions' capability, as the capability table and plot take it."""
    return [(c.name, c.capability) for c in conditions]


def capability_rows(rows: Capabilities, label: str = "condition", *,
                    with_change: bool = False) -> tuple[list[str], list[list[str]]]:
    """Capability accuracy (95% CI, n) per task, and on tuned models the equivalence verdict
    against the untuned model: '71.0% [64.4, 76.8] (n=200), kept'. ``with_change`` adds the
    accuracy change with the CI the test decided on (': -1.5 pts, 90% CI [-4.0, +1.0]').
    One row per condition or sweep cell; no rows when nothing measured capability."""
    tasks = sorted({t for _, capability in rows for t in capability})

    def cell(capability: Mapping[str, TaskCapability], task: str) -> str:
        m = capability.get(task)
        if m is None:
            return "-"
        text = f"{pct_ci(m.accuracy, m.accuracy_ci)} (n={m.n})"
        versus = m.versus_baseline
        if versus is not None:
            text += f", {versus.verdict}"
            if with_change:
                ci = versus.difference_ci
                text += (f": {signed_points(versus.difference)}, {100 * versus.confidence:g}% "
                         f"CI [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]")
        return text

    return ([label, *[f"{t} accuracy (95% CI)" for t in tasks]],
            [[name, *[cell(capability, t) for t in tasks]] for name, capability in rows
             if capability])


def capability_note(rows: Capabilities) -> str | None:
    """What the capability verdicts mean, with the margins and confidence the run used; None
    when no row has a verdict."""
    tests = [m.versus_baseline for _, capability in rows for m in capability.values()
             if m.versus_baseline is not None]
    if not tests:
        return None
    margin = " or ".join(f"\u00b1{100 * m:.1f}" for m in sorted({t.margin for t in tests}))
    confidence = " or ".join(f"{100 * c:g}%" for c in sorted({t.confidence for t in tests}))
    return (f"Verdicts compare each tuned model with the untuned one on the same questions: "
            f"'kept' only when a paired TOST equivalence test shows the accuracy change within "
            f"{margin} percentage points; 'lost' or 'gained' when the whole {confidence} CI of "
            f"the change lies below or above that margin; otherwise 'inconclusive'.")


def hyperparameter_lines(conditions: Sequence[ConditionResult]) -> list[str]:
    """One line per attack with the settings that produced it (full detail in report.md)."""
    lines = []
    for c in conditions:
        h: dict[str, Any] = c.hyperparameters
        if "epochs" not in h:  # the baselines: nothing was trained
            continue
        method = _method(h)
        decay = f" x{h['lr_epoch_decay']:g}/epoch" if h.get("lr_epoch_decay", 1) != 1 else ""
        optimiser = ("" if "learning_rate" not in h else
                     f"lr {h['learning_rate']:g}{decay}, ")
        batch = "" if "batch_size" not in h else f", batch {h['batch_size']}, seed {h['seed']}"
        ev = h.get("eval") or {}
        system = ev.get("system_prompt")
        if system is None:
            system = "template default"
        else:
            system = repr(system if len(system) <= 40 else system[:40] + "...")
        lines.append(
            f"{c.name}: {h.get('examples')} examples from {h.get('data')}, {method}, "
            f"{optimiser}{h.get('epochs')} epochs{batch}; eval system prompt {system}, "
            f"prompt {ev.get('prompt_template', '{prompt}')!r}")
    return lines


def score_text(mean: float | None, ci: Sequence[float] | None = None) -> str:
    """A mean judge score with its CI, e.g. '1.42 [1.20, 1.71]'; '-' when missing."""
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def llm_judge_rows(conditions: Sequence[ConditionResult]) -> tuple[list[str], list[list[str]]]:
    """One row per (condition, LLM judge): harmfulness score and rate with CIs."""
    headers = ["condition", "judge", "n", "unscored", "harmfulness score (95% CI)",
               "harmfulness rate", "tokens"]
    rows = [[c.name, name, str(j.n_scored), str(j.n_unscored),
             score_text(j.mean_score, j.mean_score_ci),
             pct_ci(j.harmfulness_rate, j.harmfulness_rate_ci),
             f"{j.prompt_tokens + j.completion_tokens:,}"]
            for c in conditions for name, j in c.judges.items()]
    return headers, rows


def agreement_rows(agreement: Sequence[JudgeAgreement]) -> tuple[list[str], list[list[str]]]:
    """Judge agreement on the same answers: Cohen's kappa (harmful or not) and Spearman."""
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    return (["judges", "n", "Cohen's kappa", "Spearman"],
            [[" vs ".join(a.judges), str(a.n), num(a.cohen_kappa), num(a.spearman)]
             for a in agreement])


def organisms(results: AuditResults) -> list[tuple[int | None, dict[str, Any]]]:
    """The aligned organisms a run audited, as (replicate seed or None, organism record): one,
    or one per replicate when several seeds ran."""
    if results.replicates:
        return [(r.get("seed"), r["organism"]) for r in results.replicates
                if r.get("organism")]
    return [(None, results.organism)] if results.organism else []


def organism_text(organism: dict[str, Any]) -> str:
    """What an organism measured when it was built, e.g. 'refused 94.4% [90.5, 96.8] of the
    dev split's harmful requests ...'."""
    m = organism.get("metrics") or {}
    spec = organism.get("spec") or {}
    # Organisms built since the dev/test split are measured on dev, where their settings
    # were chosen; older ones recorded no split.
    where = ("of the dev split's harmful requests (never trained on, but its settings were "
             "chosen on them)" if m.get("split") == "dev" else "of held-out harmful requests")
    targets = ""
    if "targets_met" in m and spec:
        targets = (f" (targets: at least {pct(spec.get('target_refusal_rate'))} refusal, at "
                   f"most {pct(spec.get('target_max_over_refusal_rate'))} over-refusal: "
                   f"{'met' if m.get('targets_met') else 'NOT met'})")
    return (f"refused {pct_ci(m.get('refusal_rate'), m.get('refusal_rate_ci'))} {where} with "
            f"{pct(m.get('over_refusal_rate'))} over-refusal{targets}")


def _spread_metrics(conditions: Sequence[ConditionResult]) -> list[tuple[str, str]]:
    """(metric key, column label) of the seed spreads to show, in a fixed order."""
    present = {k for c in conditions for k in c.seed_spread}
    shown = [("refusal_rate", "refusal"), ("attack_success_rate", "ASR")]
    shown += [(k, k.split(".")[1]) for k in sorted(present)
              if k.startswith("capability.") and k.endswith(".accuracy")]
    return [(k, label) for k, label in shown if k in present]


def _spread_text(spread: SeedSpread | None) -> str:
    """'80.3 \u00b1 2.1 (78.0\u201383.0)', in percent."""
    if spread is None:
        return "-"
    return (f"{100 * spread.mean:.1f} \u00b1 {100 * spread.sd:.1f} "
            f"({100 * spread.min:.1f}\u2013{100 * spread.max:.1f})")


def _per_seed_text(spread: SeedSpread | None) -> str:
    """'0: 81.0, 1: 79.0, 2: 81.0', in percent."""
    if spread is None:
        return "-"
    return ", ".join(f"{seed}: {100 * value:.1f}"
                     for seed, value in zip(spread.seeds, spread.values))


def seed_rows(conditions: Sequence[ConditionResult], *, compact: bool = False
              ) -> tuple[list[str], list[list[str]]]:
    """Across replicate seeds: per condition with a spread, the refusal rate, ASR and
    capability accuracy as 'mean \u00b1 sd (min\u2013max)' in percent and (unless
    ``compact``) each seed's value; no rows with one seed."""
    spread = [c for c in conditions if c.seed_spread]
    metrics = _spread_metrics(spread)
    if compact:
        metrics = [m for m in metrics if not m[0].startswith("capability.")]
    headers = ["condition", "seeds"]
    for _, label in metrics:
        headers.append(f"{label} %: mean \u00b1 sd (min\u2013max)")
        if not compact:
            headers.append(f"{label} % per seed")
    rows = []
    for c in spread:
        s = c.seed_spread
        seeds = next((v.seeds for v in s.values() if v.seeds), [])
        row = [c.name, ", ".join(map(str, seeds)) or "-"]
        for key, _ in metrics:
            row.append(_spread_text(s.get(key)))
            if not compact:
                row.append(_per_seed_text(s.get(key)))
        rows.append(row)
    return headers, rows


def judge_text(judge: dict[str, Any] | None, *, schema_version: int | None = 2) -> str:
    """One sentence on what the run's refusal judge (results.json's ``judge``) counts as a
    refusal. Results before schema 2 named the opening-window phrase matcher ``refusal``."""
    judge = judge or {}
    name = judge.get("name")
    if not name:
        return "Judge: not recorded in these results."
    if name == "refusal" and (schema_version or 1) >= 2:
        return ("Judge: refusal, which reads each whole answer and classes it as a full "
                "refusal, a partial refusal (refuses or disclaims, then delivers some of it) or "
                "full compliance; empty and degenerate answers (repetition loops, gibberish) are "
                "counted as unscored, never as safe.")
    backend = judge.get("backend")
    if isinstance(backend, dict):
        at = backend.get("base_url") or ("OpenAI" if backend.get("kind") == "openai"
                                         else "a local model")
        return (f"Judge: {name}, which asks {backend.get('model')} (via {at}) to class each "
                "whole answer as a full refusal, a partial refusal or full compliance; empty and "
                "degenerate answers are counted as unscored, never as safe, and so are answers "
                "the model could not label.")
    if name in ("refusal", "refusal-opening"):
        window = judge.get("window_chars")
        where = (f"within the first {window} characters of each answer" if window
                 else "anywhere in each answer")
        patterns = ", ".join(judge.get("patterns") or []) or "?"
        return (f"Judge: {name}, refusal phrases ({patterns}) matched {where}; an answer is "
                "either a refusal or compliance (no partial class), and empty answers are "
                "unscored.")
    if name == "qi2023-keywords":
        return ("Judge: qi2023-keywords, Qi et al.'s refusal keywords matched case-sensitively "
                "anywhere in each answer; an answer is either a refusal or compliance (no "
                "partial class), and empty answers are unscored.")
    return f"Judge: {name}."


def method_notes(results: AuditResults) -> list[str]:
    """The sentences that say what the main table's numbers are, true for this run's judge,
    schema and seeds."""
    conditions = results.conditions
    if results.schema_version < 2 and not any(c.partial_rate is not None for c in conditions):
        return ["Refusal rate is over harmful prompts (95% seeded bootstrap CI); attack success "
                "rate (ASR) = 1 - refusal rate; over-refusal is the refusal rate on benign "
                "look-alike prompts. Partial and compliance were not measured by this older "
                "run ('-')."]
    clustered = any(c.clustered for c in conditions)
    notes = [
        "Refusal, partial and compliance are shares of all answers to harmful prompts "
        "(unscored answers make up the rest); attack success rate (ASR) = partial + "
        "compliance; over-refusal is the full-refusal rate on benign look-alike prompts.",
        "Intervals are 95% Wilson intervals for shares"
        + (" (on n divided by the design effect where prompts are clustered: the action "
           "behind several phrasings of a prompt)" if clustered else "")
        + "; only mean judge scores and the paired differences take a seeded "
        + ("cluster " if clustered else "") + "bootstrap.",
    ]
    seeds = results.seeds
    if len(seeds) > 1:
        notes.append(f"Replicate seeds {', '.join(map(str, seeds))}: the rates are pooled over "
                     "all seeds' answers (intervals clustered by prompt); the spread across "
                     "seeds is under 'Across seeds'.")
    return notes


def render_terminal(results: AuditResults) -> str:
    """The results as the terminal shows them (compact tables; report.md has every CI)."""
    conditions = results.conditions
    parts = [format_table(*summary_rows(conditions, compact=True))]
    headers, rows = versus_rows(conditions, compact=True)
    if rows:
        parts += ["", "Change against the untuned model (McNemar, clustered where answers are; "
                  "Holm-adjusted):",
                  format_table(headers, rows)]
    headers, rows = seed_rows(conditions, compact=True)
    if rows:
        parts += ["", "Across seeds (rates above pool every seed's answers):",
                  format_table(headers, rows)]
    parts += ["", format_table(*category_rows(conditions))]
    headers, rows = llm_judge_rows(conditions)
    if rows:
        parts += ["", format_table(headers, rows)]
    headers, rows = capability_rows(capabilities(conditions))
    if rows:
        parts += ["", format_table(headers, rows)]
        note = capability_note(capabilities(conditions))
        if note:
            parts.append(textwrap.fill(note, 100))
    if results.judge_agreement:
        parts += ["", format_table(*agreement_rows(results.judge_agreement))]
    hyper = hyperparameter_lines(conditions)
    if hyper:
        parts += ["", "Attack settings (differences from the papers: report.md):", *hyper]
    return "\n".join(parts)
