"""The report stage: ``results.json`` (the record every renderer reads), ``report.md`` and
``report.html``."""

from __future__ import annotations

from typing import Any

import ftrisk
from ftrisk.generate.backend import ModelRef
from ftrisk.records import RESULTS_SCHEMA_VERSION, AuditResults, ConditionResult
from ftrisk.rundir import atomic_write_text
from ftrisk.stages.context import Context
from ftrisk.stages.judge import JudgePanel


def write_results(ctx: Context, base: ModelRef, conditions: list[ConditionResult],
                  judges: JudgePanel, *, threads: int, counts: dict[str, int],
                  organism: dict[str, Any] | None,
                  replicates: list[dict[str, Any]] | None = None) -> AuditResults:
    """Write the run's results record and reports; returns the record."""
    from ftrisk.report.html import write_report
    from ftrisk.report.markdown import render_markdown

    config = ctx.config
    record = AuditResults(
        schema_version=RESULTS_SCHEMA_VERSION,
        ftrisk_version=ftrisk.__version__,
        name=config.name,
        model=config.model,
        model_path=base.path,
        model_fingerprint=base.fingerprint,
        organism=organism,
        seeds=list(config.seeds),
        # Several seeds: where each replicate's own results are, and what it audited.
        replicates=replicates,
        generation={**config.generation.model_dump(mode="json"), "bf16": ctx.bf16()},
        judge=config.judge.model_dump(mode="json"),
        benchmark=config.benchmark.model_dump(mode="json"),
        # Built-in sets: "test" is reported, "dev" was used to choose the default settings.
        benchmark_split={"builtin:benchmark": "test", "builtin:benchmark_dev": "dev"}.get(
            config.benchmark.harmful.path),
        baseline_eval=config.baseline_eval.model_dump(),
        threads=threads,
        # Prompts per kind: re-judging reads them from the results it rewrites.
        counts=counts,
        conditions=conditions,
        scoring_judges=judges.describe(),
        judge_agreement=judges.agreement(),
        paper=None if config.paper is None else config.paper.model_dump(),
    )
    ctx.run.write_json("results.json", record)
    atomic_write_text(ctx.run.path("report.md"), render_markdown(record))
    write_report(ctx.run.root)
    return record
