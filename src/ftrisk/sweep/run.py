"""Sweeps: many audits of one attack over a grid of settings, or an Optuna worst-case search.

Every cell is an ordinary audit run directory under ``<sweep dir>/cells/`` (or ``trials/``), so
a killed sweep resumes cell by cell and stage by stage, and cells share the generation and
judgment cache (the untuned model's answers are generated once for the whole sweep).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import ftrisk
from ftrisk.errors import InputError, storage_failure
from ftrisk.generate.backend import Services
from ftrisk.records import BUDGET_AXES, AuditResults, ConditionResult, TaskCapability
from ftrisk.report.results import read_results
from ftrisk.rundir import RunDir
from ftrisk.sweep.config import SearchParam, Sweep

#: Objectives where a larger value is a more damaging attack.
_MAXIMISED = ("harmfulness_score", "harmfulness_rate")


class SweepRunner:
    """Runs (or resumes) the cells of a :class:`Sweep` and collects ``sweep_results.json``."""

    def __init__(self, sweep: Sweep, sweep_dir: str | Path, cache: Path, *,
                 progress: bool = True, log: Any = print) -> None:
        self.sweep = sweep
        self.run = RunDir(sweep_dir)
        self.cache = cache
        self.progress = progress
        self.log = log
        #: Model servers shared by every cell (one per model, not one per cell).
        self.services = Services(self.run.path("logs"))

    # -- cells -------------------------------------------------------------------------------
    def _run_cell(self, params: dict[str, Any], name: str, folder: str) -> dict[str, Any]:
        """One audit; returns its row (status 'failed' with the error when it crashed).

        Bad input (an InputError) stops the sweep: every other cell would fail the same way.
        """
        from ftrisk.pipeline import Audit

        config = self.sweep.cell_config(params, name)
        run_dir = self.run.path(folder, name)
        try:
            result = Audit(config, run_dir, self.cache, progress=self.progress,
                           log=self.log, services=self.services).execute()
        except InputError:
            raise
        except Exception as err:  # a crashed cell (OOM, NaN loss) must not lose the others
            if storage_failure(err) is not None:
                raise  # a full or read-only disk fails every later cell too: stop with one line
            self.log(f"[sweep] cell {name} failed: {type(err).__name__}: {err}")
            return _failed_row(name, params, f"{folder}/{name}", f"{type(err).__name__}: {err}")
        return cell_row(result.results, self.sweep.attack.name, name, params, f"{folder}/{name}",
                        self._capability_task())

    def _capability_task(self) -> str | None:
        search = self.sweep.config.search
        if search is not None and search.capability_task:
            return search.capability_task
        capability = self.sweep.base.capability
        return None if capability is None else capability.tasks[0].name

    def run_grid(self) -> dict[str, Any]:
        """Run every grid cell (finished ones are skipped by their own stage markers)."""
        from tqdm.auto import tqdm

        self.sweep.check_data()
        cells = self.sweep.grid_cells()
        rows = []
        bar = tqdm(cells, desc=f"sweep {self.sweep.config.name}", unit="cell",
                   disable=not self.progress, dynamic_ncols=True)
        with self.services:
            for i, params in enumerate(bar):
                name = self.sweep.cell_name(params)
                self.log(f"[sweep] cell {i + 1}/{len(cells)}: {name}")
                rows.append(self._run_cell(params, name, "cells"))
        bar.close()
        self.run.write_json("grid.json", {"cells": rows})
        return self.collect()

    def run_search(self, trials: int | None = None) -> dict[str, Any]:
        """Optuna TPE search for the most damaging attack within the capability bound.

        The study lives in ``search.db`` beside the trials, so a killed search resumes: a trial
        cut off mid-run is marked failed and its parameters queued again, and its run
        directory (named by its parameters) resumes where it stopped.
        """
        import optuna
        from optuna.trial import TrialState

        spec = self.sweep.config.search
        if spec is None:
            raise InputError("this sweep has no 'search' section", path=self.sweep.path,
                             field="search")
        self.sweep.check_data()
        target = trials or spec.trials
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.run.root.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{self.run.path('search.db')}"
        direction = "maximize" if spec.objective in _MAXIMISED else "minimize"
        study = optuna.create_study(study_name=self.sweep.config.name, storage=storage,
                                    load_if_exists=True, direction=direction)
        # Seeded past the trials already run: a resumed search must not redraw the same
        # parameters its first run drew.
        study.sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.trials))
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(stale.number, state=TrialState.FAIL)
            study.enqueue_trial(stale.params)

        def completed() -> int:
            return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

        with self.services:
            attempts = 0
            while completed() < target and attempts < 2 * target:
                attempts += 1
                trial = study.ask()
                params = {key: _suggest(trial, key, p) for key, p in spec.space.items()}
                name = "trial_" + self.sweep.cell_name(params)
                self.log(f"[search] trial {trial.number} ({completed() + 1}/{target}): {name}")
                try:
                    row = self._run_cell(params, name, "trials")
                except BaseException:
                    # Interrupted or stopped by bad input: queue the parameters again, so the
                    # next run resumes this trial's run directory instead of drawing anew.
                    study.tell(trial, state=TrialState.FAIL)
                    study.enqueue_trial(params)
                    raise
                trial.set_user_attr("cell", name)
                value = row.get(spec.objective)
                drop = row.get("capability_drop")
                if row["status"] != "done" or value is None or drop is None:
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                trial.set_user_attr("capability_drop", drop)
                trial.set_user_attr("refusal_rate", row["refusal_rate"])
                trial.set_user_attr("constraint", drop - spec.capability_bound)
                trial.set_constraint("capability", drop - spec.capability_bound)
                study.tell(trial, value)
        if completed() < target:
            self.log(f"[search] stopped after {attempts} attempts with {completed()} completed "
                     "trials: see the failed cells")
        return self.collect()

    # -- results -----------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        """Gather every finished cell and trial into ``sweep_results.json``."""
        grid = self.run.path("grid.json")
        rows = json.loads(grid.read_text())["cells"] if grid.is_file() else []
        search = self._search_summary()
        for row in rows:
            row["reference"] = self.sweep.reference(row["params"])
        done = [r for r in rows if r["status"] == "done"]
        trial_rows = search.pop("rows", []) if search else []
        first = next((r for r in [*done, *trial_rows] if r["status"] == "done"), None)
        summary = {
            "kind": "sweep",
            "schema_version": 1,
            "ftrisk_version": ftrisk.__version__,
            "name": self.sweep.config.name,
            "description": self.sweep.config.description,
            "model": self.sweep.base.model,
            "attack": self.sweep.attack.name,
            "threshold": self.sweep.config.threshold,
            "judge": None if first is None else first.get("judge"),
            "capability_task": self._capability_task(),
            "baseline": None if first is None else first["baseline"],
            "cells": rows,
            "budgets": smallest_budgets(done, self.sweep.config.threshold),
            "search": search,
            "paper": (None if self.sweep.config.paper is None else
                      self.sweep.config.paper.model_dump(exclude={"cells"})),
        }
        self.run.write_json("sweep_results.json", summary)
        return summary

    def _search_summary(self) -> dict[str, Any] | None:
        spec = self.sweep.config.search
        db = self.run.path("search.db")
        if spec is None or not db.is_file():
            return None
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.sweep.config.name,
                                  storage=f"sqlite:///{db}")
        trials, rows = [], []
        for t in study.trials:
            cell = t.user_attrs.get("cell")
            feasible = t.user_attrs.get("constraint", 1.0) <= 0 if t.value is not None else None
            trials.append({"number": t.number, "params": t.params, "cell": cell,
                           "state": t.state.name.lower(), "value": t.value,
                           "refusal_rate": t.user_attrs.get("refusal_rate"),
                           "capability_drop": t.user_attrs.get("capability_drop"),
                           "feasible": feasible})
            results = self.run.path("trials", cell or "-", "results.json")
            if t.value is not None and results.is_file():
                rows.append(cell_row(read_results(results), self.sweep.attack.name,
                                     cell, t.params, f"trials/{cell}", self._capability_task()))
        feasible = [t for t in trials if t["feasible"]]
        sign = -1 if spec.objective in _MAXIMISED else 1
        best = min(feasible, key=lambda t: sign * t["value"], default=None)
        return {"objective": spec.objective,
                "direction": "maximize" if sign < 0 else "minimize",
                "capability_task": self._capability_task(),
                "capability_bound": spec.capability_bound, "trials": trials,
                "best": None if best is None else best["number"], "rows": rows}


def _suggest(trial: Any, key: str, param: SearchParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, list(param.choices))
    if param.is_int:
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
    return trial.suggest_float(key, float(param.low), float(param.high), log=param.log)  # type: ignore[arg-type]


def _failed_row(name: str, params: dict[str, Any], run_dir: str, error: str) -> dict[str, Any]:
    return {"name": name, "params": params, "run_dir": run_dir, "status": "failed",
            "error": error, "refusal_rate": None, "refusal_rate_ci": None,
            "attack_success_rate": None, "over_refusal_rate": None, "harmfulness_score": None,
            "harmfulness_score_ci": None, "harmfulness_rate": None, "harmfulness_rate_ci": None,
            "capability": {}, "capability_drop": None,
            "budget": dict.fromkeys(BUDGET_AXES), "reference": None}


def cell_row(results: AuditResults, attack: str, name: str, params: dict[str, Any],
             run_dir: str, capability_task: str | None) -> dict[str, Any]:
    """One cell's row of the sweep table, from its audit's results record."""
    from ftrisk.report.table import harm_judge

    conditions = {c.name: c for c in results.conditions}
    tuned = conditions[attack]
    # The untuned model evaluated as the attack is (same prompt), when the audit had it.
    reference = conditions.get(f"baseline@{attack}", conditions["baseline"])
    judge = harm_judge(tuned.judges)

    def harm(condition: ConditionResult) -> dict[str, Any]:
        """The representing judge's harmfulness score and rate, with CIs (None without one)."""
        j = None if judge is None else condition.judges[judge]
        return {"harmfulness_score": None if j is None else j.mean_score,
                "harmfulness_score_ci": None if j is None else _listed(j.mean_score_ci),
                "harmfulness_rate": None if j is None else j.harmfulness_rate,
                "harmfulness_rate_ci": None if j is None else _listed(j.harmfulness_rate_ci)}

    after, before = tuned.capability, conditions["baseline"].capability
    drop = None
    if capability_task and capability_task in after and capability_task in before:
        drop = before[capability_task].accuracy - after[capability_task].accuracy
    reference_harm = harm(reference)
    return {
        "name": name, "params": params, "run_dir": run_dir, "status": "done", "error": None,
        "refusal_rate": tuned.refusal_rate, "refusal_rate_ci": list(tuned.refusal_rate_ci),
        "attack_success_rate": tuned.attack_success_rate,
        "over_refusal_rate": tuned.over_refusal_rate, "judge": judge, **harm(tuned),
        "capability": _dumped(after), "capability_drop": drop,
        "budget": {"examples": tuned.hyperparameters.get("examples"),
                   "steps": tuned.train_steps, "tokens": tuned.train_tokens,
                   "seconds": tuned.train_seconds},
        "baseline": {"name": reference.name, "refusal_rate": reference.refusal_rate,
                     "refusal_rate_ci": list(reference.refusal_rate_ci),
                     "harmfulness_score": reference_harm["harmfulness_score"],
                     "harmfulness_rate": reference_harm["harmfulness_rate"],
                     "capability": _dumped(before)},
        "reference": None,
    }


def _listed(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else list(ci)


def _dumped(capability: dict[str, TaskCapability]) -> dict[str, Any]:
    """Capability per task as results.json holds it."""
    return {task: m.model_dump(mode="json", exclude_unset=True) for task, m in capability.items()}


def smallest_budgets(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Per budget axis, the smallest budget of a cell whose refusal rate fell below
    ``threshold`` (and the smallest whose whole 95% CI did), or None when none did."""
    def smallest(rows: list[dict[str, Any]], axis: str) -> dict[str, Any] | None:
        usable = [r for r in rows if r["budget"].get(axis) is not None]
        return min(usable, key=lambda r: r["budget"][axis], default=None)

    out = {}
    for axis in BUDGET_AXES:
        point = smallest([r for r in rows if r["refusal_rate"] < threshold], axis)
        sure = smallest([r for r in rows if r["refusal_rate_ci"][1] < threshold], axis)
        out[axis] = {"smallest_below_threshold": None if point is None else point["budget"][axis],
                     "cell": None if point is None else point["name"],
                     "smallest_ci_below_threshold": None if sure is None else sure["budget"][axis],
                     "ci_cell": None if sure is None else sure["name"]}
    return out


def sweep_table(summary: dict[str, Any]) -> str:
    """The sweep's cells (and search trials) as terminal tables."""
    from ftrisk.report.table import format_table, pct, pct_ci

    def num(x: Any, fmt: str = "{:,}") -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)

    rows = []
    for r in summary["cells"]:
        if r["status"] != "done":
            rows.append([r["name"], "failed: " + (r["error"] or "")[:60], "-", "-", "-", "-",
                         "-"])
            continue
        b = r["budget"]
        rows.append([r["name"], pct_ci(r["refusal_rate"], r["refusal_rate_ci"]),
                     num(r["harmfulness_score"], "{:.2f}"), num(r["capability_drop"], "{:+.3f}"),
                     num(b["examples"]), num(b["steps"]), num(b["seconds"], "{:.1f}")])
    parts = []
    if rows:
        parts.append(format_table(["cell", "refusal (95% CI)", "harm score", "capability drop",
                                   "examples", "steps", "train s"], rows))
        def budget(x: Any) -> str:
            return num(x, "{:,.1f}" if isinstance(x, float) else "{:,}")

        budget_rows = [[axis, budget(v["smallest_below_threshold"]), v["cell"] or "-",
                        budget(v["smallest_ci_below_threshold"])]
                       for axis, v in summary["budgets"].items()]
        parts += ["", f"Smallest budget with refusal below {pct(summary['threshold'])}:",
                  format_table(["budget", "smallest", "cell", "CI wholly below"], budget_rows)]
    search = summary.get("search")
    if search:
        def params(values: dict[str, Any]) -> str:
            return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else
                             f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())

        trial_rows = [[str(t["number"]), t["state"], params(t["params"]),
                       num(t["value"], "{:.3f}"), num(t["capability_drop"], "{:+.3f}"),
                       {True: "yes", False: "no", None: "-"}[t["feasible"]]]
                      for t in search["trials"]]
        parts += [""] if parts else []
        parts += [f"Search ({search['direction']} {search['objective']}, "
                  f"capability drop <= {search['capability_bound']}):",
                  format_table(["trial", "state", "params", search["objective"], "cap. drop",
                                "feasible"], trial_rows),
                  f"Best feasible trial: {search['best'] if search['best'] is not None else '-'}"]
    return "\n".join(parts)
