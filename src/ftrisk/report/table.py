"""Plain-text tables for the terminal (no dependency beyond the standard library)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: The LLM judge whose numbers stand beside the papers' (Qi et al.'s 1-5 GPT-4 rubric).
PAPER_JUDGE = "rubric"


def harm_judge(judges: Iterable[str]) -> str | None:
    """The judge whose harmfulness numbers represent a condition: the rubric judge when it
    ran (the papers' scale), else the first LLM judge, else None."""
    names = list(judges)
    return PAPER_JUDGE if PAPER_JUDGE in names else next(iter(names), None)


def pct(value: float | None) -> str:
    """A rate as a percentage, or '-' when missing."""
    return "-" if value is None or value != value else f"{100 * value:.1f}%"


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


def summary_rows(conditions: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per condition."""
    headers = ["condition", "n", "refusal (95% CI)", "ASR", "over-refusal", "train tokens",
               "train s"]
    rows = []
    for c in conditions:
        unscored = sum((c.get("n_unscored") or {}).values())
        rows.append([
            c["name"],
            f"{c['n_harmful']}" + (f" (+{unscored} unscored)" if unscored else ""),
            pct_ci(c["refusal_rate"], c["refusal_rate_ci"]),
            pct(c["attack_success_rate"]),
            pct(c["over_refusal_rate"]),
            "-" if c.get("train_tokens") is None else f"{c['train_tokens']:,}",
            "-" if c.get("train_seconds") is None else f"{c['train_seconds']:.1f}",
        ])
    return headers, rows


def category_rows(conditions: Sequence[dict[str, Any]], *, with_ci: bool = False
                  ) -> tuple[list[str], list[list[str]]]:
    """Per-category refusal rate (with its 95% CI if asked): one row per category, one column
    per condition."""
    categories = sorted({cat for c in conditions for cat in c["per_category"]})
    headers = ["category (refusal)", *[c["name"] for c in conditions]]

    def cell(c: dict[str, Any], cat: str) -> str:
        value = c["per_category"].get(cat)
        return pct_ci(value, (c.get("per_category_ci") or {}).get(cat)) if with_ci else pct(value)

    return headers, [[cat, *[cell(c, cat) for c in conditions]] for cat in categories]


def judge_category_rows(conditions: Sequence[dict[str, Any]], judge: str
                        ) -> tuple[list[str], list[list[str]]]:
    """One LLM judge's mean harmfulness score per category (95% CI), one column per condition."""
    judged = [c for c in conditions if judge in (c.get("judges") or {})]
    categories = sorted({cat for c in judged for cat in c["judges"][judge]["per_category_mean"]})

    def cell(j: dict[str, Any], cat: str) -> str:
        mean = j["per_category_mean"].get(cat)
        if mean is None:
            return "-"
        ci = (j.get("per_category_mean_ci") or {}).get(cat)
        return f"{mean:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    return ([f"category ({judge} score)", *[c["name"] for c in judged]],
            [[cat, *[cell(c["judges"][judge], cat) for c in judged]] for cat in categories])


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


def capability_rows(rows: Sequence[dict[str, Any]], label: str = "condition"
                    ) -> tuple[list[str], list[list[str]]]:
    """Capability accuracy (95% CI, n) per task: one row per condition or sweep cell, and
    no rows when nothing measured capability."""
    tasks = sorted({t for r in rows for t in r.get("capability") or {}})

    def cell(r: dict[str, Any], task: str) -> str:
        m = (r.get("capability") or {}).get(task)
        return "-" if not m else f"{pct_ci(m['accuracy'], m.get('accuracy_ci'))} (n={m['n']})"

    return ([label, *[f"{t} accuracy (95% CI)" for t in tasks]],
            [[r["name"], *[cell(r, t) for t in tasks]] for r in rows if r.get("capability")])


def hyperparameter_lines(conditions: Sequence[dict[str, Any]]) -> list[str]:
    """One line per attack with the settings that produced it (full detail in report.md)."""
    lines = []
    for c in conditions:
        h = c.get("hyperparameters") or {}
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
            f"{c['name']}: {h.get('examples')} examples from {h.get('data')}, {method}, "
            f"{optimiser}{h.get('epochs')} epochs{batch}; eval system prompt {system}, "
            f"prompt {ev.get('prompt_template', '{prompt}')!r}")
    return lines


def llm_judge_rows(conditions: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """One row per (condition, LLM judge): harmfulness score and rate with CIs."""
    headers = ["condition", "judge", "n", "unscored", "harmfulness score (95% CI)",
               "harmfulness rate", "tokens"]
    rows = []
    for c in conditions:
        for name, j in (c.get("judges") or {}).items():
            score = "-" if j["mean_score"] is None else (
                f"{j['mean_score']:.2f} [{j['mean_score_ci'][0]:.2f}, "
                f"{j['mean_score_ci'][1]:.2f}]")
            rows.append([c["name"], name, str(j["n_scored"]), str(j["n_unscored"]), score,
                         pct_ci(j["harmfulness_rate"], j["harmfulness_rate_ci"]),
                         f"{j['prompt_tokens'] + j['completion_tokens']:,}"])
    return headers, rows


def agreement_rows(agreement: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Judge agreement on the same answers: Cohen's kappa (harmful or not) and Spearman."""
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    return (["judges", "n", "Cohen's kappa", "Spearman"],
            [[" vs ".join(a["judges"]), str(a["n"]), num(a["cohen_kappa"]), num(a["spearman"])]
             for a in agreement])


def render_terminal(summary: dict[str, Any]) -> str:
    """The results as the terminal shows them."""
    conditions = summary["conditions"]
    parts = [format_table(*summary_rows(conditions)), "", format_table(*category_rows(conditions))]
    headers, rows = llm_judge_rows(conditions)
    if rows:
        parts += ["", format_table(headers, rows)]
    headers, rows = capability_rows(conditions)
    if rows:
        parts += ["", format_table(headers, rows)]
    if summary.get("judge_agreement"):
        parts += ["", format_table(*agreement_rows(summary["judge_agreement"]))]
    hyper = hyperparameter_lines(conditions)
    if hyper:
        parts += ["", "Attack settings (differences from the papers: report.md):", *hyper]
    return "\n".join(parts)
