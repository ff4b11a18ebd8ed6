"""Is the learning rate the limit? One size trained at half, at and at double the profile's LR, each
to an early stop and then certified (`workbench.runs.certify`), side by side.

    python benchmarks/lr_probe.py                                   # study-converged, AR16 L2, 0.5x / 1x / 2x
    python benchmarks/lr_probe.py --profile cpu --layers 1 --factors 0.5,1,2,4 --root runs/lr-probe-cpu

The paper trains every size with one recipe; a law over sizes is only the law of the recipe if the
recipe's LR is not what stops the runs. Per LR it prints the steps, the stop reason, the best eval
loss and its step, the verdict, the certificate's gain (continuing as if retrained with 3x the patience), and the best
loss relative to the profile's LR. Verdict: the profile's LR is not the limit when no other LR
reaches a converged best more than `--tolerance` (1%, the certificate's) below it. Runs are kept in
`--root` (resumable: run again to finish, or to add factors).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from workbench.config import load
from workbench.execute.contract import run_jobs
from workbench.runs.certify import MIN_GAIN, certify
from workbench.runs.pretrain import PretrainSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="study-converged")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--factors", default="0.5,1,2", help="multiples of the profile's LR")
    ap.add_argument("--root", default="runs/lr-probe")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=MIN_GAIN)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a profile override, as `workbench --set` takes (repeatable): exec.cpus_per_run=1")
    args = ap.parse_args()
    factors = sorted({float(f) for f in args.factors.split(",")})
    study = load(args.profile, [f"exec.workers={args.workers}", "exec.progress=false", *args.set])
    sweep = replace(study.sweep, layers=(args.layers,), seeds=(study.sweep.seeds[0],))
    cfgs = {f: replace(sweep, train=replace(sweep.train, lr=f * sweep.train.lr)).runs()[0] for f in factors}
    outcomes = run_jobs([PretrainSpec(c) for c in cfgs.values()], args.root, study.exec, desc="lr probe")
    rows = {}
    for f, out in zip(factors, outcomes):
        if out.status != "completed":
            print(f"{f:g}x: {out.status} ({out.error})")
            continue
        s = dict(out.summary)
        cert = None
        if s.get("stop_reason") == "early_stopped" and s.get("converged"):
            cert = certify(args.root, out.run_id, exec_cfg=study.exec)
        rows[f] = (s, cert)
    base = rows.get(1.0)
    print(f"{args.profile}, {sweep.family} L{args.layers}, LR {sweep.train.lr:g} x {args.factors}, {args.root}")
    print(f"{'LR':>9s} {'steps':>6s} {'stop':>13s} {'best':>7s} {'at step':>7s} {'converged':>9s} {'certified':>9s} "
          f"{'gain':>6s} {'after':>7s} {'vs 1x':>7s}")
    for f, (s, cert) in rows.items():  # 'best' is the run's own; 'after', the lowest the certificate saw
        rel = "" if base is None else f"{100 * (s['best_eval_loss'] / base[0]['best_eval_loss'] - 1):+.2f}%"
        gain, after = ("", "") if cert is None else (f"{100 * cert['gain']:.2f}%", f"{cert['best_after']:.4f}")
        certified = "" if cert is None else str(cert["certified"])
        print(f"{f * sweep.train.lr:9.2e} {s['steps']:6d} {s['stop_reason']:>13s} {s['best_eval_loss']:7.4f} "
              f"{s['best_step']:7d} {str(s.get('converged')):>9s} {certified:>9s} {gain:>6s} {after:>7s} {rel:>7s}")
    if base is not None:
        lower = [f for f, (s, _) in rows.items()
                 if f != 1.0 and s["best_eval_loss"] < base[0]["best_eval_loss"] * (1 - args.tolerance)]
        print("the profile's LR is " + ("NOT the limit: no other LR converged more than "
                                        f"{100 * args.tolerance:g}% lower" if not lower else
                                        f"the limit: {', '.join(f'{f:g}x' for f in lower)} converged lower by more "
                                        f"than {100 * args.tolerance:g}%"))


if __name__ == "__main__":
    main()
