"""report.md: the audit's results, settings and the differences from the papers' protocols."""

from __future__ import annotations

import json
from typing import Any

from ftrisk.records import AuditResults
from ftrisk.report.table import (
    VERSUS_NOTE,
    agreement_rows,
    capabilities,
    capability_note,
    capability_rows,
    category_rows,
    judge_category_rows,
    judge_text,
    llm_judge_rows,
    method_notes,
    organism_text,
    organisms,
    seed_rows,
    summary_rows,
    versus_rows,
)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _organism_label(seed: int | None, organism: dict[str, Any]) -> str:
    if seed is None:
        return "When built"
    build = (organism.get("spec") or {}).get("seed", "?")
    return f"Replicate {seed} (build seed {build}): when built"


def render_markdown(results: AuditResults) -> str:
    """Render an audit's results record as Markdown."""
    conditions = results.conditions
    counts = results.counts or {}
    generation = results.generation
    out = [
        f"# ftrisk audit: {results.name}",
        "",
        f"Model: `{results.model}` (fingerprint `{results.model_fingerprint or '?'}`), "
        f"ftrisk {results.ftrisk_version or '?'}.",
        f"Benchmark: {counts.get('harmful', 0)} harmful, {counts.get('lookalike', 0)} benign "
        f"look-alike, {counts.get('benign', 0)} plain benign prompts. "
        + judge_text(results.judge, schema_version=results.schema_version),
        f"Decoding: greedy, at most {generation.get('max_new_tokens', '?')} new tokens, "
        f"{'bf16 autocast' if generation.get('bf16') else 'fp32'}.",
        "",
        " ".join(method_notes(results)),
        "",
        "## Results",
        "",
        _md_table(*summary_rows(conditions)),
        "",
    ]
    headers, rows = versus_rows(conditions)
    if rows:
        out += ["## Change against the untuned model", "", VERSUS_NOTE, "",
                _md_table(headers, rows), ""]
    headers, rows = seed_rows(conditions)
    if rows:
        out += ["## Across seeds", "", "Per condition, each seed's own rate (in percent) and "
                "their mean \u00b1 sd (min\u2013max); the tables above pool all seeds' answers.",
                "", _md_table(headers, rows), ""]
    out += [
        "## Refusal rate per category (95% CI)",
        "",
        _md_table(*category_rows(conditions, with_ci=True)),
        "",
    ]
    headers, rows = llm_judge_rows(conditions)
    if rows:
        out += ["## Harmfulness by LLM judges", "",
                "Mean judge score and the share at the top of the scale (Qi et al.: share "
                "scored 5) over answers to harmful prompts; unscored answers (endpoint "
                "failures, unreadable verdicts) are counted, never imputed.", "",
                _md_table(headers, rows), ""]
        for judge in sorted({j for c in conditions for j in c.judges}):
            out += [_md_table(*judge_category_rows(conditions, judge)), ""]
    headers, rows = capability_rows(capabilities(conditions), with_change=True)
    if rows:
        note = capability_note(capabilities(conditions))
        out += ["## Capability", "", "Multiple-choice accuracy by answer log-likelihood, on the "
                "untuned and each tuned model (95% CI)." + (f" {note}" if note else ""), "",
                _md_table(headers, rows), ""]
    if results.judge_agreement:
        out += ["## Judge agreement", "", "On the same answers to harmful prompts: Cohen's "
                "kappa on harmful-or-not (refusal judge: not refused; rubric: score > 3), "
                "Spearman on the scores.", "", _md_table(*agreement_rows(
                    results.judge_agreement)), ""]
    built = organisms(results)
    if built:
        m = built[0][1].get("metrics") or {}
        out += [
            "## The aligned organism" + ("s" if len(built) > 1 else ""),
            "",
            "SmolLM2-135M-Instruct is not safety-aligned, so ftrisk safety-tuned it first "
            f"({m.get('refusal_examples')} refusal examples, {m.get('distilled_examples')} "
            "self-distilled benign examples counting repeated look-alikes, LoRA merged into "
            "the weights)" + (", once per replicate seed with its own build seed." if
                              len(built) > 1 else "."),
            "",
            *[f"- {_organism_label(seed, o)} it {organism_text(o)}." for seed, o in built],
            "",
        ]
    out += ["## Conditions and hyperparameters", ""]
    for c in conditions:
        out.append(f"### {c.name}")
        out.append("")
        if c.description:
            out += [c.description, ""]
        hyper = dict(c.hyperparameters)
        differences = hyper.pop("paper_differences", None)
        if differences:
            out += [f"Differences from the paper: {differences}", ""]
        if hyper:
            out += ["```json", json.dumps(hyper, indent=2), "```", ""]
    out += [
        "Model outputs are kept in full in `conditions/*/generations.jsonl` inside the run "
        "directory; this report quotes none of them.",
        "",
    ]
    return "\n".join(out)
