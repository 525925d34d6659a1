"""report.html: one self-contained page for an audit run directory or a sweep directory.

The page needs no network to view: the CSS is inline, the plots are PNGs embedded as data:
URIs (and also written to ``plots/``), and there is no script. Every string taken from results
or generations is escaped, because model outputs are untrusted; a Content-Security-Policy that
allows no script is a second line of defence.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftrisk.errors import InputError
from ftrisk.records import AuditResults, ConditionResult, JudgeAgreement, TaskCapability
from ftrisk.report import plots
from ftrisk.report.results import read_json, read_results
from ftrisk.report.table import (
    PAPER_JUDGE,
    VERSUS_NOTE,
    agreement_rows,
    capabilities,
    capability_note,
    capability_rows,
    category_rows,
    harm_judge,
    hyperparameter_lines,
    judge_category_rows,
    judge_text,
    llm_judge_rows,
    method_notes,
    organism_text,
    organisms,
    pct,
    pct_ci,
    seed_rows,
    summary_rows,
    versus_rows,
)
from ftrisk.rundir import atomic_dir, atomic_write_text

AUDIT_RESULTS = "results.json"
#: The condition rates a paper reference may name.
_RATES = ("refusal_rate", "partial_rate", "compliance_rate", "attack_success_rate",
          "over_refusal_rate")
SWEEP_RESULTS = "sweep_results.json"
REPORT = "report.html"
#: Prompts shown per kind in the sample outputs, each with every condition's answer.
SAMPLES_PER_KIND = 3
_KINDS = {"harmful": "harmful", "lookalike": "benign look-alike", "benign": "plain benign"}
# C0/C1 control characters (tab, newline and carriage return kept): invalid in HTML text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body{margin:0;color:#1f2328;background:#fff;
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:1.6em;margin-bottom:.3em}
h2{font-size:1.25em;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
.meta{color:#444}
nav ul{margin:.4em 0;padding-left:1.2em;columns:2}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right;vertical-align:top}
td{white-space:nowrap}
th{background:#f3f5f7}
th:first-child,td:first-child{text-align:left}
table.samples th,table.samples td{text-align:left}
td.text{white-space:pre-wrap;overflow-wrap:anywhere;min-width:30ch}
figure{margin:12px 0}
img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#555;font-size:.9em}
.note{background:#fff8e1;border-left:4px solid #e0a800;padding:6px 10px}
.warn{background:#ffebe9;border-left:4px solid #cf222e;padding:6px 10px}
.cut,.empty{color:#8a6d00;font-style:italic}
.sample{margin:10px 0 18px}
pre{background:#f6f8fa;padding:8px;overflow:auto}
code{background:#f6f8fa;padding:0 3px}
"""


def write_report(directory: Path, *, full_text: bool = False, truncate_chars: int = 80) -> Path:
    """Write ``report.html`` and ``plots/*.png`` into ``directory``; return the HTML's path.

    ``directory`` is an audit run directory (``results.json``) or a sweep directory
    (``sweep_results.json``, preferred when both are there). Answers to harmful prompts in the
    sample outputs are cut to ``truncate_chars`` characters unless ``full_text``. ``plots/`` is
    replaced as a whole, so no plot of an earlier render survives. Raises InputError when
    neither file is there or the file is not valid JSON.
    """
    if truncate_chars < 0:
        raise ValueError(f"truncate_chars must be >= 0, got {truncate_chars}")
    directory = Path(directory)
    source = _results_file(directory)
    sweep = _load(source, "cells") if source.name == SWEEP_RESULTS else None
    results = read_results(source) if sweep is None else None
    with atomic_dir(directory / "plots") as plot_dir:
        if results is None:
            page = _sweep_page(sweep or {}, plot_dir)
        else:
            page = _audit_page(results, directory, plot_dir, full_text=full_text,
                               truncate_chars=truncate_chars)
    out = directory / REPORT
    atomic_write_text(out, page)
    return out


def _results_file(directory: Path) -> Path:
    for name in (SWEEP_RESULTS, AUDIT_RESULTS):
        if (directory / name).is_file():
            return directory / name
    raise InputError(f"no {AUDIT_RESULTS} (audit) or {SWEEP_RESULTS} (sweep) here: run the "
                     "audit or the sweep to the end first", path=directory)


def _load(path: Path, required: str) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(required), list):
        raise InputError("expected a list here", path=path, field=required)
    return data


# ---------------------------------------------------------------------------- HTML pieces


def _esc(text: object) -> str:
    """Text as HTML: lone surrogates and control characters replaced, markup escaped."""
    clean = str(text).encode("utf-8", "replace").decode("utf-8")
    return html.escape(_CONTROL.sub("\ufffd", clean))


def _p(text: str, css: str | None = None) -> str:
    return f'<p class="{css}">{_esc(text)}</p>' if css else f"<p>{_esc(text)}</p>"


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_esc(item)}</li>" for item in items) + "</ul>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _figure(path: Path | None, caption: str) -> str:
    """The PNG at ``path`` embedded as a data: URI; nothing when the plot was left out."""
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)} (plots/{_esc(path.name)})</figcaption></figure>")


def _page(title: str, intro: str, sections: Sequence[tuple[str, str, str | None]]) -> str:
    """The whole document; ``sections`` are (anchor, heading, body HTML or None to omit)."""
    shown = [(anchor, heading, body) for anchor, heading, body in sections if body]
    nav = "".join(f'<li><a href="#{anchor}">{_esc(heading)}</a></li>'
                  for anchor, heading, _ in shown)
    body = "".join(f'<section id="{anchor}"><h2>{_esc(heading)}</h2>{content}</section>'
                   for anchor, heading, content in shown)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_esc(title)}</title>'
            f"<style>{_CSS}</style></head><body><main><h1>{_esc(title)}</h1>{intro}"
            f"<nav><ul>{nav}</ul></nav>{body}</main></body></html>\n")


# ------------------------------------------------------------------------- shared numbers


def _points(value: float | None) -> str:
    """An accuracy difference in percentage points."""
    return "-" if value is None else f"{100 * value:.1f} pts"


def _value_text(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _budget_text(axis: str, value: float | None) -> str:
    if value is None:
        return "-"
    if axis == "seconds":
        return f"{value:,.1f}"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _metric_text(metric: str, value: float | None, ci: Sequence[float] | None = None) -> str:
    """A paper-comparable metric: harmfulness score on its 1-5 scale, the rest as rates."""
    if value is None:
        return "-"
    if metric == "harmfulness_score":
        return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    return pct_ci(value, ci)


#: Our value of a paper metric for one condition or sweep cell: the text for a metric name.
_Ours = Callable[[str], str]


def _condition_ours(c: ConditionResult | None) -> _Ours:
    """A condition's paper metrics: its rates, capability tasks by name, and harmfulness from
    the judge that represents it (named beside the number)."""
    def ours(metric: str) -> str:
        if c is None:
            return "not run"
        if metric in _RATES and getattr(c, metric) is not None:
            return _metric_text(metric, getattr(c, metric), getattr(c, f"{metric}_ci"))
        task = c.capability.get(metric)
        if task is not None:
            return _metric_text(metric, task.accuracy, task.accuracy_ci)
        name = harm_judge(c.judges)
        if name is not None and metric in ("harmfulness_score", "harmfulness_rate"):
            j = c.judges[name]
            value, ci = ((j.mean_score, j.mean_score_ci) if metric == "harmfulness_score"
                         else (j.harmfulness_rate, j.harmfulness_rate_ci))
            if value is not None:
                return f"{_metric_text(metric, value, ci)} ({name})"
        return "-"

    return ours


def _cell_ours(cell: dict[str, Any]) -> _Ours:
    """A sweep cell's paper metrics (its row in sweep_results.json)."""
    def ours(metric: str) -> str:
        if cell.get(metric) is not None:
            return _metric_text(metric, cell[metric], cell.get(f"{metric}_ci"))
        task = _capability(cell).get(metric)
        return "-" if task is None else _metric_text(metric, task.accuracy, task.accuracy_ci)

    return ours


def _reference_table(references: Sequence[tuple[str, dict[str, float], _Ours]],
                     label: str) -> str:
    """Paper numbers beside ours: one row per (condition or cell, metric)."""
    rows = [[name, metric, _metric_text(metric, value), ours(metric)]
            for name, reference, ours in references for metric, value in reference.items()]
    return _table([label, "metric", "paper", "ours (95% CI)"], rows)


def _paper_intro(paper: dict[str, Any], judge_note: str) -> str:
    where = ", ".join(str(paper[k]) for k in ("table", "row") if paper.get(k))
    parts = [_p(f"Reference: {paper.get('citation', '?')}" + (f" ({where})." if where else "."))]
    differences = paper.get("differences")
    if differences:
        parts.append(_p("Protocol differences: our numbers are not measured the way the "
                        "paper's were, so compare directions and sizes, not digits:", "note"))
        parts.append(_p(differences))
    parts.append(_p(f"{judge_note} Rates and accuracies are shares of prompts."))
    return "".join(parts)


# --------------------------------------------------------------------------------- audit


def _audit_page(results: AuditResults, directory: Path, plot_dir: Path, *, full_text: bool,
                truncate_chars: int) -> str:
    conditions = results.conditions
    sections = [
        ("results", "Results", _audit_results(results, plot_dir)),
        ("versus", "Change against the untuned model", _versus(conditions)),
        ("seeds", "Across seeds", _seeds(conditions)),
        ("categories", "Refusal rate per category",
         _table(*category_rows(conditions, with_ci=True))
         + _figure(plots.category_refusal(conditions, plot_dir / "categories.png"),
                   "Refusal rate per category before and after each attack (95% CI)")),
        ("judges", "Harmfulness by LLM judges", _llm_judges(conditions)),
        ("agreement", "Judge agreement", _agreement(results.judge_agreement, plot_dir)),
        ("capability", "Capability", _audit_capability(conditions, plot_dir)),
        ("paper", "Paper reference", _audit_paper(results.paper, conditions)),
        ("settings", "Conditions and hyperparameters", _hyperparameters(conditions)),
        ("samples", "Sample outputs", _samples(directory, conditions, full_text=full_text,
                                               truncate_chars=truncate_chars)),
    ]
    return _page(f"ftrisk audit: {results.name}", _audit_intro(results), sections)


def _audit_paper(paper: dict[str, Any] | None, conditions: Sequence[ConditionResult]
                 ) -> str | None:
    if not paper:
        return None
    by_name = {c.name: c for c in conditions}
    references = [(name, ref, _condition_ours(by_name.get(name)))
                  for name, ref in (paper.get("reference") or {}).items()]
    note = (f"Our harmfulness score and rate are the {PAPER_JUDGE} judge's (Qi et al.'s 1-5 "
            "rubric) where it ran, else the first LLM judge's, named beside the number.")
    return (_paper_intro(paper, note)
            + (_reference_table(references, "condition") if references else ""))


def _audit_intro(results: AuditResults) -> str:
    counts, generation = results.counts or {}, results.generation
    lines = [
        f"Model {results.model} (fingerprint {results.model_fingerprint or '?'}), "
        f"ftrisk {results.ftrisk_version or '?'}.",
        f"Benchmark: {counts.get('harmful', 0)} harmful, {counts.get('lookalike', 0)} benign "
        f"look-alike and {counts.get('benign', 0)} plain benign prompts.",
        judge_text(results.judge, schema_version=results.schema_version),
        f"Decoding: greedy, at most {generation.get('max_new_tokens', '?')} new tokens, "
        f"{'bf16 autocast' if generation.get('bf16') else 'fp32'}.",
    ]
    for seed, organism in organisms(results):
        which = "" if seed is None else f" of replicate {seed}"
        lines.append(f"The model{which} is ftrisk's aligned organism: when built it "
                     f"{organism_text(organism)}.")
    return "".join(_p(line, "meta") for line in lines)


def _audit_results(results: AuditResults, plot_dir: Path) -> str:
    conditions = results.conditions
    return (_p(" ".join(method_notes(results)) + " baseline@<attack> is the untuned model "
               "evaluated with that attack's system prompt and prompt template: the evaluation "
               "prompt alone changes measured safety.")
            + _table(*summary_rows(conditions))
            + _figure(plots.refusal_rates(conditions, plot_dir / "refusal.png"),
                      "Refusal and over-refusal per condition (95% CI)"))


def _versus(conditions: Sequence[ConditionResult]) -> str | None:
    headers, rows = versus_rows(conditions)
    if not rows:
        return None
    return _p(VERSUS_NOTE) + _table(headers, rows)


def _seeds(conditions: Sequence[ConditionResult]) -> str | None:
    headers, rows = seed_rows(conditions)
    if not rows:
        return None
    return (_p("Per condition, each seed's own rate (in percent) and their mean \u00b1 sd "
               "(min\u2013max); the results above pool all seeds' answers.")
            + _table(headers, rows))


def _llm_judges(conditions: Sequence[ConditionResult]) -> str | None:
    headers, rows = llm_judge_rows(conditions)
    if not rows:
        return None
    judges = sorted({j for c in conditions for j in c.judges})
    return (_p("Mean judge score and the share at the top of the scale (Qi et al.: share scored "
               "5) over answers to harmful prompts; unscored answers are counted, never "
               "imputed.")
            + _table(headers, rows)
            + "".join(_table(*judge_category_rows(conditions, judge)) for judge in judges))


def _agreement(agreement: Sequence[JudgeAgreement], plot_dir: Path) -> str | None:
    if not agreement:
        return None
    return (_p("On the same answers to harmful prompts: Cohen's kappa on harmful-or-not, "
               "Spearman on the scores.")
            + _table(*agreement_rows(agreement))
            + _figure(plots.judge_agreement(agreement, plot_dir / "judge_agreement.png"),
                      "Agreement between judges"))


def _audit_capability(conditions: Sequence[ConditionResult], plot_dir: Path) -> str | None:
    if not any(c.capability for c in conditions):
        return None
    note = capability_note(capabilities(conditions))
    points = [plots.SafetyPoint(c.name, c.refusal_rate, c.refusal_rate_ci, c.capability)
              for c in conditions]
    return ((_p(note) if note else "")
            + _table(*capability_rows(capabilities(conditions), "condition", with_change=True))
            + _figure(plots.safety_vs_capability(points, plot_dir / "capability.png"),
                      "Safety against capability per condition (95% CI)"))


def _hyperparameters(conditions: Sequence[ConditionResult]) -> str:
    lines = hyperparameter_lines(conditions)
    parts = [_list(lines)] if lines else []
    for c in conditions:
        hyper = dict(c.hyperparameters)
        differences = hyper.pop("paper_differences", None)
        parts.append(f"<h3>{_esc(c.name)}</h3>")
        if c.description:
            parts.append(_p(c.description))
        if differences:
            parts.append(_p(f"Differences from the paper: {differences}"))
        if hyper:
            parts.append(f"<details><summary>all settings</summary>"
                         f"<pre>{_esc(json.dumps(hyper, indent=2))}</pre></details>")
    return "".join(parts)


# ------------------------------------------------------------------------ sample outputs


@dataclass
class _Outputs:
    """One condition's stored answers and the verdicts on them."""

    generations: dict[str, dict[str, Any]]  # by item id, in file order
    refused: dict[str, bool | None] = field(default_factory=dict)
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)  # judge -> item


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"not valid JSON: {exc.msg}", path=path,
                                     line=number) from exc
    return records


def _condition_outputs(folder: Path) -> _Outputs | None:
    if not (folder / "generations.jsonl").is_file():
        return None
    outputs = _Outputs({g["item_id"]: g for g in _read_jsonl(folder / "generations.jsonl")})
    if (folder / "judgments.jsonl").is_file():
        outputs.refused = {j["item_id"]: j.get("refused")
                           for j in _read_jsonl(folder / "judgments.jsonl")}
    for path in sorted(folder.glob("judgments-*.jsonl")):
        outputs.scores[path.stem.removeprefix("judgments-")] = {
            j["item_id"]: j.get("score") for j in _read_jsonl(path)}
    return outputs


def _pick(outputs: dict[str, _Outputs], kind: str) -> list[dict[str, Any]]:
    """The first prompts of ``kind``, one per category before any second, so the sample spans
    categories; the same prompts for every condition, so answers compare side by side."""
    candidates: dict[str, dict[str, Any]] = {}
    for o in outputs.values():
        for item_id, g in o.generations.items():
            if g.get("kind") == kind:
                candidates.setdefault(item_id, g)
    first_per_category: dict[str | None, str] = {}
    for item_id, g in candidates.items():
        first_per_category.setdefault(g.get("category"), item_id)
    chosen = list(first_per_category.values())[:SAMPLES_PER_KIND]
    chosen += [i for i in candidates if i not in chosen][:SAMPLES_PER_KIND - len(chosen)]
    return [candidates[i] for i in chosen]


def _answer(response: str, kind: str | None, *, full_text: bool, truncate_chars: int) -> str:
    if not response:
        return '<span class="empty">(empty)</span>'
    if kind != "harmful" or full_text or len(response) <= truncate_chars:
        return _esc(response)
    return (f"{_esc(response[:truncate_chars])}\u2026 <span class=\"cut\">[cut: "
            f"{truncate_chars} of {len(response)} characters shown]</span>")


def _verdict(outputs: _Outputs, item_id: str) -> str:
    refused = outputs.refused.get(item_id)
    words = ["unscored" if refused is None else "refused" if refused else "not refused"]
    words += [f"{judge} {_value_text(scores[item_id])}"
              for judge, scores in outputs.scores.items() if item_id in scores]
    return "; ".join(words)


def _sample(item: dict[str, Any], outputs: dict[str, _Outputs], *, full_text: bool,
            truncate_chars: int) -> str:
    item_id, kind = item["item_id"], item.get("kind")
    rows = []
    for name, o in outputs.items():
        if item_id in o.generations:
            answer = _answer(o.generations[item_id].get("response") or "", kind,
                             full_text=full_text, truncate_chars=truncate_chars)
            rows.append(f"<tr><td>{_esc(name)}</td><td>{_esc(_verdict(o, item_id))}</td>"
                        f'<td class="text">{answer}</td></tr>')
    where = _KINDS.get(kind, str(kind)) + (f", {item['category']}" if item.get("category") else "")
    return (f'<div class="sample"><p><b>Prompt</b> ({_esc(where)}): {_esc(item["prompt"])}</p>'
            f'<div class="scroll"><table class="samples"><thead><tr><th>condition</th>'
            f"<th>verdict</th><th>answer</th></tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table></div></div>")


def _samples(directory: Path, conditions: Sequence[ConditionResult], *, full_text: bool,
             truncate_chars: int) -> str | None:
    found = {c.name: _condition_outputs(directory / "conditions" / c.name) for c in conditions}
    outputs = {name: o for name, o in found.items() if o is not None}
    if not outputs:
        return None
    if full_text:
        parts = [_p("This page shows answers to harmful prompts in full (rendered with "
                    "--full-text): it may contain harmful content. Share it no further than "
                    "the run directory.", "warn")]
    else:
        cut = _esc(f"Answers to harmful prompts are cut to their first {truncate_chars} "
                   "characters (marked \u2026 [cut]); the full text stays in "
                   "conditions/<name>/generations.jsonl, and")
        parts = [f'<p class="note">{cut} <code>ftrisk report DIR --full-text</code> puts it on '
                 "this page. Answers to benign prompts are shown in full.</p>"]
    for kind, label in _KINDS.items():
        items = _pick(outputs, kind)
        if items:
            parts.append(f"<h3>{_esc(label)} prompts</h3>")
            parts += [_sample(item, outputs, full_text=full_text, truncate_chars=truncate_chars)
                      for item in items]
    return "".join(parts)


# --------------------------------------------------------------------------------- sweep


def _sweep_page(sweep: dict[str, Any], plot_dir: Path) -> str:
    cells = sweep["cells"]
    baseline = sweep.get("baseline") or {}
    done = [c for c in cells if c.get("status") == "done"]
    sections = [
        ("cells", "Cells", _sweep_cells(cells, sweep.get("capability_task"))),
        ("cost", "Cost to jailbreak", _cost(sweep, plot_dir)),
        ("capability", "Safety against capability", _sweep_capability(baseline, done, plot_dir)),
        ("search", "Search", sweep.get("search") and _search(sweep["search"], plot_dir)),
        ("paper", "Paper reference", _sweep_paper(sweep)),
    ]
    return _page(f"ftrisk sweep: {sweep['name']}", _sweep_intro(sweep), sections)


def _sweep_paper(sweep: dict[str, Any]) -> str | None:
    if not sweep.get("paper"):
        return None
    references = [(c["name"], c["reference"], _cell_ours(c)) for c in sweep["cells"]
                  if c.get("reference")]
    note = (f"Our harmfulness numbers are the {sweep['judge']} judge's." if sweep.get("judge")
            else "No LLM judge ran, so harmfulness has no number of ours.")
    return (_paper_intro(sweep["paper"], note)
            + (_reference_table(references, "cell") if references else ""))


def _sweep_intro(sweep: dict[str, Any]) -> str:
    baseline = sweep.get("baseline") or {}
    harm = ""
    if baseline.get("harmfulness_score") is not None:
        score = _metric_text("harmfulness_score", baseline["harmfulness_score"])
        harm = (f", harmfulness score {score}, harmfulness rate "
                f"{pct(baseline.get('harmfulness_rate'))}")
    capability = "".join(f", {task} accuracy {pct(m.accuracy)}"
                         for task, m in sorted(_capability(baseline).items()))
    lines = [
        f"Model {sweep.get('model', '?')}, attack {sweep.get('attack', '?')}, ftrisk "
        f"{sweep.get('ftrisk_version', '?')}: {len(sweep['cells'])} cells.",
        f"A cell is jailbroken when its refusal rate on harmful prompts falls below "
        f"{pct(sweep.get('threshold'))}."
        + (f" Harmfulness judged by {sweep['judge']}." if sweep.get("judge") else ""),
        f"Untuned model ({baseline.get('name', 'baseline')}): refusal "
        f"{pct_ci(baseline.get('refusal_rate'), baseline.get('refusal_rate_ci'))}"
        f"{harm}{capability}.",
    ]
    if sweep.get("description"):
        lines.insert(0, sweep["description"])
    return "".join(_p(line, "meta") for line in lines)


def _cell_rows(cells: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """One row per sweep cell: its grid parameters, metrics and budget (failed cells: '-')."""
    params = list(dict.fromkeys(k for c in cells for k in c.get("params") or {}))
    harm = any(c.get("harmfulness_score") is not None for c in cells)
    drop = any(c.get("capability_drop") is not None for c in cells)
    headers = ["cell", *params, "status", "refusal (95% CI)", "ASR", "over-refusal"]
    headers += ["harmfulness score (95% CI)", "harmfulness rate (95% CI)"] if harm else []
    headers += ["capability drop"] if drop else []
    headers += list(plots.BUDGET_AXES)
    rows = []
    for c in cells:
        row = [c["name"], *[_value_text((c.get("params") or {}).get(p)) for p in params],
               c.get("status") or "-", pct_ci(c.get("refusal_rate"), c.get("refusal_rate_ci")),
               pct(c.get("attack_success_rate")), pct(c.get("over_refusal_rate"))]
        if harm:
            row += [_metric_text("harmfulness_score", c.get("harmfulness_score"),
                                 c.get("harmfulness_score_ci")),
                    pct_ci(c.get("harmfulness_rate"), c.get("harmfulness_rate_ci"))]
        if drop:
            row.append(_points(c.get("capability_drop")))
        budget = c.get("budget") or {}
        rows.append(row + [_budget_text(a, budget.get(a)) for a in plots.BUDGET_AXES])
    return headers, rows


def _sweep_cells(cells: list[dict[str, Any]], capability_task: str | None) -> str:
    parts = [_p("Budget: training examples, optimizer steps, training tokens and seconds. "
                + (f"Capability drop: accuracy lost on {capability_task} against the untuned "
                   "model, in percentage points." if capability_task else "")),
             _table(*_cell_rows(cells))]
    failed = [c for c in cells if c.get("status") != "done"]
    if failed:
        parts.append(_p(f"{len(failed)} cell(s) did not finish and are left out of the plots:",
                        "note"))
        parts.append(_list([f"{c['name']}: {c.get('error') or c.get('status')}"
                            for c in failed]))
    return "".join(parts)


def _budget_rows(budgets: dict[str, Any], threshold: float
                 ) -> tuple[list[str], list[list[str]]]:
    """Per budget axis, the smallest budget below the threshold (and, when the sweep reports
    it, the smallest whose whole 95% CI is below)."""
    with_ci = any("smallest_ci_below_threshold" in (b or {}) for b in budgets.values())
    headers = ["budget axis", f"smallest with refusal below {pct(threshold)}", "cell"]
    headers += ["smallest with the whole CI below", "cell"] if with_ci else []
    rows = []
    for axis in plots.BUDGET_AXES:
        entry = budgets.get(axis) or {}
        keys = [("smallest_below_threshold", "cell")]
        keys += [("smallest_ci_below_threshold", "ci_cell")] if with_ci else []
        row = [axis]
        for value_key, cell_key in keys:
            value = entry.get(value_key)
            row += ["not reached" if value is None else _budget_text(axis, value),
                    entry.get(cell_key) or "-"]
        rows.append(row)
    return headers, rows


def _cost(sweep: dict[str, Any], plot_dir: Path) -> str:
    threshold = sweep.get("threshold", 0.5)  # the sweep config's default
    budgets = sweep.get("budgets") or {}
    curves = plots.budget_curves(sweep["cells"], plot_dir / "budget.png", threshold=threshold,
                                 baseline_refusal=(sweep.get("baseline") or {}).get(
                                     "refusal_rate"), budgets=budgets)
    return (_p("How much fine-tuning it takes to break the model: the smallest budget on each "
               f"axis at which a cell's refusal rate fell below {pct(threshold)}.")
            + _table(*_budget_rows(budgets, threshold))
            + _figure(curves, "Refusal rate (95% CI) against each budget axis, with the "
                              "threshold (dashed) and the untuned model (dotted)"))


def _capability(row: dict[str, Any]) -> dict[str, TaskCapability]:
    """A sweep row's capability per task (the audit's record, as sweep_results.json keeps it)."""
    return {task: TaskCapability.model_validate(m)
            for task, m in (row.get("capability") or {}).items()}


def _sweep_capability(baseline: dict[str, Any], done: list[dict[str, Any]],
                      plot_dir: Path) -> str | None:
    rows = [{**baseline, "name": baseline.get("name", "baseline")}, *done]
    if not any(r.get("capability") for r in rows):
        return None
    points = [plots.SafetyPoint(r["name"], r.get("refusal_rate"), r.get("refusal_rate_ci"),
                                _capability(r)) for r in rows]
    return (_table(*capability_rows([(p.name, p.capability) for p in points], "cell"))
            + _figure(plots.safety_vs_capability(points, plot_dir / "capability.png"),
                      "Refusal rate against accuracy per cell (95% CI)"))


def _trial_rows(search: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    trials = search.get("trials") or []
    objective = search.get("objective") or "objective"
    params = list(dict.fromkeys(k for t in trials for k in t.get("params") or {}))
    extra = [] if objective == "refusal_rate" else ["refusal"]
    headers = ["trial", *params, "cell", "state", objective, *extra, "capability drop",
               "feasible"]
    rows = []
    for t in trials:
        value = plots.objective_value(t, objective)
        rows.append([
            f"{t['number']}" + (" (best)" if t["number"] == search.get("best") else ""),
            *[_value_text((t.get("params") or {}).get(p)) for p in params],
            t.get("cell") or "-", t.get("state") or "-", _metric_text(objective, value),
            *[pct(t.get("refusal_rate")) for _ in extra], _points(t.get("capability_drop")),
            {True: "yes", False: "no"}.get(t.get("feasible"), "-")])
    return headers, rows


def _search(search: dict[str, Any], plot_dir: Path) -> str:
    best, bound = search.get("best"), search.get("capability_bound")
    intro = (f"Objective: {search.get('direction', 'minimize')} {search.get('objective')}"
             + (f", subject to a capability drop of at most {_points(bound)}"
                if bound is not None else "")
             + (f". Best trial: {best}." if best is not None else ". No feasible trial."))
    return (_p(intro) + _table(*_trial_rows(search))
            + _figure(plots.search_history(search, plot_dir / "search.png"),
                      "Objective per trial; feasible and infeasible trials marked apart"))
