"""Command line: ``ftrisk audit`` runs (or resumes) a fine-tuning risk audit; ``sweep`` runs
many; ``report`` renders a run as HTML; ``presets`` lists the papers' experiments; ``rejudge``
re-scores stored answers; ``judge-eval`` measures a refusal judge on human labels.

Heavy libraries are imported inside commands, so ``ftrisk --help`` answers at once.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ftrisk import __version__
from ftrisk.errors import NO_SPACE, FtriskError, storage_failure

if TYPE_CHECKING:
    from ftrisk.config import AuditConfig


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftrisk",
        description="Measure how fine-tuning erodes the safety alignment of chat models.")
    parser.add_argument("--version", action="version", version=f"ftrisk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser(
        "audit", help="run the fine-tuning risk audit (default: the embedded model organism)",
        description="Fine-tune the model with each attack, evaluate safety before and after, "
                    "and report. Running the same command again resumes where it stopped.")
    audit.add_argument("--config", type=Path, help="audit YAML (default: the packaged "
                       "default_audit preset on the embedded model)")
    audit.add_argument("--preset", default="default_audit", help="packaged preset to run "
                       "when --config is not given (default: %(default)s)")
    audit.add_argument("--run-dir", type=Path, help="where results go (default: "
                       "./ftrisk-runs/<config name>; re-running resumes, and stages whose "
                       "inputs changed are redone)")
    audit.add_argument("--seeds", type=_positive_int, metavar="N", help="replicate the audit "
                       "over seeds 0..N-1 (organism build and attack training seeds) and "
                       "report pooled results with each seed's values (replaces the config's "
                       "seeds)")
    _run_options(audit)
    sweep = sub.add_parser(
        "sweep", help="run an attack over a grid of settings (or search for the worst case)",
        description="Run every cell of a sweep (one audit each), collect the results and "
                    "'cost to jailbreak' budget curves, and write report.html. Re-running "
                    "resumes. --search runs the sweep's Optuna search instead of its grid.")
    sweep.add_argument("--config", type=Path, help="sweep YAML")
    sweep.add_argument("--preset", help="packaged sweep preset (see `ftrisk presets`)")
    sweep.add_argument("--sweep-dir", type=Path, help="where cells and results go (default: "
                       "./ftrisk-runs/<sweep name>)")
    sweep.add_argument("--search", action="store_true", help="run the search section: "
                       "the most damaging attack within the capability bound")
    sweep.add_argument("--trials", type=_positive_int, help="completed search trials to reach "
                       "(default: the sweep's own)")
    _run_options(sweep)
    report = sub.add_parser(
        "report", help="write report.html and PNG plots for a run or sweep directory",
        description="Render a finished audit run or sweep as a self-contained HTML page "
                    "(report.html) with PNG plots under plots/. Answers to harmful prompts are "
                    "truncated unless --full-text is given.")
    report.add_argument("directory", type=Path, metavar="RUN_OR_SWEEP_DIR")
    report.add_argument("--full-text", action="store_true", help="quote answers to harmful "
                        "prompts in full")
    presets = sub.add_parser(
        "presets", help="list the packaged experiments (or show one in full)",
        description="Without NAME: every packaged preset with its paper, table row, model and "
                    "needs. With NAME: its data, hyperparameters, evaluation protocol, the "
                    "paper's numbers and what it needs.")
    presets.add_argument("name", nargs="?", metavar="NAME")
    presets.add_argument("--data-dir", type=Path, help="show where user-supplied files go "
                         "under this folder (default: $FTRISK_DATA or ~/ftrisk-data)")
    rejudge = sub.add_parser(
        "rejudge", help="judge a finished run's stored generations again, without any model",
        description="Re-run the judges (as configured in --config, else as the run was) on "
                    "the generations stored in RUN_DIR, and rewrite results.json and report.md.")
    rejudge.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    rejudge.add_argument("--config", type=Path, help="audit YAML whose judges to use "
                         "(default: the run's own config.json)")
    rejudge.add_argument("--cache-dir", type=Path, help="judgment cache (default: as audit)")
    rejudge.add_argument("--no-progress", action="store_true", help="hide progress bars")
    judge_eval = sub.add_parser(
        "judge-eval", help="score refusal judges against human-labelled answers",
        description="Run refusal judges on a labelled file (ftrisk JSONL with prompt, response "
                    "and label refusal|compliance|partial, or an XSTest completions CSV) and "
                    "print precision, recall, F1 and accuracy (positive class: full refusal), "
                    "the confusion matrix and the misjudged items.")
    judge_eval.add_argument("--labels", type=Path, required=True, action="append",
                            metavar="FILE", help="label file (repeat to pool several)")
    judge_eval.add_argument("--judge", action="append", metavar="NAME",
                            help="a judge registered in ftrisk.registry.JUDGES (repeatable; "
                                 "default: refusal)")
    judge_eval.add_argument("--judge-model", metavar="MODEL",
                            help="the model a model-based judge (refusal-llm) asks: an "
                                 "endpoint's model name, or a local model directory")
    judge_eval.add_argument("--base-url", metavar="URL",
                            help="OpenAI-compatible endpoint of --judge-model (default: OpenAI)")
    judge_eval.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                            help="environment variable holding the endpoint's API key "
                                 "(default: %(default)s)")
    judge_eval.add_argument("--concurrency", type=_positive_int, default=16,
                            help="requests in flight to the endpoint (default: %(default)s)")
    judge_eval.add_argument("--max-tokens", type=_positive_int, default=512,
                            help="longest reply the judge model may write (default: "
                                 "%(default)s)")
    judge_eval.add_argument("--cache-dir", type=Path, help="where a model-based judge's "
                            "verdicts are cached (default: $FTRISK_CACHE or ~/.cache/ftrisk)")
    judge_eval.add_argument("--json", action="store_true", help="print JSON instead")
    judge_eval.add_argument("--show", type=int, default=20, metavar="N",
                            help="misjudged items to print (default 20)")
    return parser


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="model/organism/generation cache "
                        "(default: $FTRISK_CACHE or ~/.cache/ftrisk)")
    parser.add_argument("--data-dir", type=Path, help="folder of user-supplied (gated) data "
                        "that presets name as data:... (default: $FTRISK_DATA or ~/ftrisk-data)")
    parser.add_argument("--threads", type=_positive_int, help="CPU threads (default: the "
                        "config's threads, else $FTRISK_THREADS, else all cores); part of "
                        "every CPU stage's fingerprint, since CPU sums depend on it")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--model", help="use this model instead of the config's (a local "
                        "directory, hub id or openai:<id>), e.g. a local copy of a preset's "
                        "Llama-2")


def _with_setting(config: AuditConfig, key: str, value: object, flag: str) -> AuditConfig:
    """``config`` with one setting replaced from the command line, re-validated like a value
    written in the file (errors name ``flag``)."""
    from ftrisk.config import AuditConfig
    from ftrisk.yamlio import validate

    return validate(AuditConfig, {**config.model_dump(mode="json"), key: value}, path=flag)


def _audit(args: argparse.Namespace) -> int:
    from ftrisk.config import load_config, preset_path

    config = load_config(args.config or preset_path(args.preset), data_dir=args.data_dir)
    if args.threads:
        config = config.model_copy(update={"threads": args.threads})
    if args.model:
        config = _with_setting(config, "model", args.model, "--model")
    if args.seeds:
        # Hosted models take one seed: re-validation says so.
        config = _with_setting(config, "seeds", list(range(args.seeds)), "--seeds")
    run_dir = args.run_dir or Path("ftrisk-runs") / config.name
    print(f"ftrisk {__version__}: audit '{config.name}' -> {run_dir}", flush=True)

    from ftrisk.pipeline import Audit
    from ftrisk.report.table import render_terminal
    from ftrisk.runtime import cache_dir

    audit = Audit(config, run_dir, cache_dir(args.cache_dir), progress=not args.no_progress,
                  log=lambda msg: print(msg, flush=True))
    result = audit.execute()
    print()
    print(render_terminal(result.results))
    organism = result.results.organism
    if organism:
        print(f"\nOrganism built with {organism['metrics'].get('refusal_examples')} refusal "
              "examples; see report.md for its own metrics and every hyperparameter.")
    print(f"\nResults: {run_dir / 'results.json'}\nReport:  {run_dir / 'report.md'}, "
          f"{run_dir / 'report.html'}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ftrisk.config import preset_path
    from ftrisk.errors import InputError
    from ftrisk.sweep.config import load_sweep

    if bool(args.config) == bool(args.preset):
        raise InputError("give a sweep with --config FILE or --preset NAME (see `ftrisk "
                         "presets`)")
    sweep = load_sweep(args.config or preset_path(args.preset), data_dir=args.data_dir)
    base = (_with_setting(sweep.base, "model", args.model, "--model") if args.model
            else sweep.base)
    if args.threads:
        base = base.model_copy(update={"threads": args.threads})
    sweep = sweep.model_copy(update={"base": base})
    sweep_dir = args.sweep_dir or Path("ftrisk-runs") / sweep.config.name
    mode = "search" if args.search else "grid"
    print(f"ftrisk {__version__}: sweep '{sweep.config.name}' ({mode}) -> {sweep_dir}",
          flush=True)

    from ftrisk.report.html import write_report
    from ftrisk.runtime import cache_dir
    from ftrisk.sweep.run import SweepRunner, sweep_table

    runner = SweepRunner(sweep, sweep_dir, cache_dir(args.cache_dir),
                         progress=not args.no_progress, log=lambda msg: print(msg, flush=True))
    summary = runner.run_search(args.trials) if args.search else runner.run_grid()
    html = write_report(sweep_dir)
    print()
    print(sweep_table(summary))
    print(f"\nResults: {sweep_dir / 'sweep_results.json'}\nReport:  {html}")
    failed = [c["name"] for c in summary["cells"] if c["status"] != "done"]
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from ftrisk.report.html import write_report

    print(write_report(args.directory, full_text=args.full_text))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from ftrisk.preset_catalog import describe, list_presets, render_table

    print(describe(args.name, args.data_dir) if args.name else render_table(list_presets()))
    return 0


def _rejudge(args: argparse.Namespace) -> int:
    from ftrisk.config import AuditConfig, load_config
    from ftrisk.errors import InputError
    from ftrisk.pipeline import Audit
    from ftrisk.report.table import render_terminal
    from ftrisk.runtime import cache_dir
    from ftrisk.yamlio import validate

    if args.config:
        config = load_config(args.config)
    else:
        stored = args.run_dir / "config.json"
        if not stored.is_file():
            raise InputError("not a run directory (no config.json)", path=args.run_dir)
        import json

        config = validate(AuditConfig, json.loads(stored.read_text()), path=stored)
    # Only the run directory is read: a GPU preset's run re-judges on a laptop.
    audit = Audit(config, args.run_dir, cache_dir(args.cache_dir),
                  progress=not args.no_progress, log=lambda msg: print(msg, flush=True),
                  stored_only=True)
    result = audit.rejudge()
    print(render_terminal(result.results))
    print(f"\nResults: {args.run_dir / 'results.json'}\nReport:  {args.run_dir / 'report.md'}")
    return 0


def _judge_eval(args: argparse.Namespace) -> int:
    import json

    from ftrisk.config import JudgeSpec
    from ftrisk.errors import InputError
    from ftrisk.judge.evaluate import evaluate, read_labels, render
    from ftrisk.registry import JUDGES
    from ftrisk.runtime import cache_dir
    from ftrisk.stages.judge import refusal_judge
    from ftrisk.store import Store
    from ftrisk.yamlio import validate

    items = [item for path in args.labels for item in read_labels(path)]
    backend = None
    if args.judge_model:
        # A local model directory runs through transformers, unless an endpoint is named.
        local = args.base_url is None and Path(args.judge_model).is_dir()
        backend = {"kind": "transformers" if local else "openai", "model": args.judge_model,
                   "base_url": args.base_url, "api_key_env": args.api_key_env,
                   "concurrency": args.concurrency, "max_tokens": args.max_tokens}
    store = None
    results = []
    for name in args.judge or ["refusal"]:
        needs = name in JUDGES.names() and getattr(JUDGES.get(name), "needs_backend", False)
        if needs and backend is None:
            raise InputError(f"judge {name!r} asks a model: give --judge-model (an endpoint's "
                             "model name with --base-url, or a local model directory)",
                             field="--judge-model")
        spec = validate(JudgeSpec, {"name": name, "backend": backend if needs else None},
                        path="--judge")
        if needs and store is None:
            # Verdicts cost requests: a repeated evaluation reads them back.
            store = Store(cache_dir(args.cache_dir) / "store.sqlite")
        results.append(evaluate(refusal_judge(spec, store, progress=not args.json), items))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(render(r, show=args.show) for r in results))
    return 0


def _where(path: str | None, args: argparse.Namespace) -> tuple[str, str]:
    """(the path to name, the option that moves it) for a storage failure."""
    from ftrisk.runtime import cache_dir

    runs = Path("ftrisk-runs")  # where runs go without --run-dir / --sweep-dir
    folders = [(getattr(args, "run_dir", None) or runs, "--run-dir"),
               (getattr(args, "sweep_dir", None) or runs, "--sweep-dir"),
               (cache_dir(getattr(args, "cache_dir", None), create=False),
                "--cache-dir (or $FTRISK_CACHE)")]
    if args.command == "audit":
        del folders[1]
    elif args.command == "sweep":
        del folders[0]
    if path is not None:
        resolved = Path(path).resolve()
        for folder, option in folders:
            if resolved.is_relative_to(Path(folder).resolve()):
                return path, option
        return path, "another folder"
    return " or ".join(str(folder) for folder, _ in folders), \
        " / ".join(option for _, option in folders)


def _free_space(path: str) -> str:
    import shutil

    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free)"


def storage_error_line(err: BaseException, args: argparse.Namespace) -> str | None:
    """One line for a full disk, a denied permission or a read-only file system: the path
    and what to free or change; None for any other error."""
    found = storage_failure(err)
    if found is None:
        return None
    code, path = found
    where, option = _where(path, args)
    move = "use another folder" if option == "another folder" else f"point {option} elsewhere"
    again = "then run the same command again to resume"
    if code in NO_SPACE:
        free = _free_space(path) if path else ""
        return (f"no space left on the device holding {where}{free}: free space there or "
                f"{move}, {again}")
    if code == errno.EROFS:
        return f"read-only file system: {where}: {move} (a writable one), {again}"
    return (f"permission denied: {where}: make it writable for this user (chmod/chown) or "
            f"{move}, {again}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ftrisk`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "audit":
            return _audit(args)
        if args.command == "rejudge":
            return _rejudge(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "report":
            return _report(args)
        if args.command == "presets":
            return _presets(args)
        if args.command == "judge-eval":
            return _judge_eval(args)
    except FtriskError as err:
        from ftrisk.endpoints import redact

        print(f"ftrisk: error: {redact(' '.join(str(err).splitlines()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftrisk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:
        line = storage_error_line(err, args)
        if line is None:
            raise
        print(f"ftrisk: error: {line}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
