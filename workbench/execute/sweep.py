"""A pretraining sweep: every size x seed of a family, same data and recipe, resumable.

    study = load("cpu")
    df = run_sweep(study.sweep, "runs", study.exec)      # finished runs are skipped

`on_done(outcome)` is called as each run ends (the control panels redraw their plot there).
"""

from __future__ import annotations

from pathlib import Path

from workbench.base.errors import WorkbenchError
from workbench.config import ExecConfig, SweepConfig
from workbench.data.prepared import prepare_data
from workbench.runs.certify import FACTOR, CertifyAfter
from workbench.runs.pretrain import PretrainSpec
from workbench.runs.store import RunStore
from workbench.runs.tables import load_runs


def run_sweep(sweep: SweepConfig, root: str | Path = "runs", exec_cfg: ExecConfig = ExecConfig(), on_done=None,
              certify: str = "none", certify_factor: float = FACTOR):
    """Pretrain every run of `sweep` under `root` (largest first) on `exec_cfg.executor`, skipping
    finished ones; a failed run is reported and left out, the others go on. With `certify` ("all",
    or "largest": the deepest size's runs), each of those runs trained here is certified right after
    it, in its worker (`workbench.runs.certify.CertifyAfter`; an ensemble's members one after the
    other once the ensemble has trained); runs finished before are left to `certify_store`, which
    also takes the next size when every run of the deepest one failed.

    Returns the tidy table of this sweep's finished runs (see `workbench.runs.tables.load_runs`), with the
    run counts of `workbench.execute.contract.counts` in `df.attrs["counts"]`."""
    return run_sweeps([sweep], root, exec_cfg, on_done, certify, certify_factor)[0]


def run_sweeps(sweeps: list[SweepConfig], root: str | Path = "runs", exec_cfg: ExecConfig = ExecConfig(),
               on_done=None, certify: str = "none", certify_factor: float = FACTOR) -> list:
    """`run_sweep` for several sweeps at once (a study's baseline and its variant), on one pool of
    workers, largest runs first: no worker waits for one sweep's last run before the next sweep's
    runs start. One table per sweep, in order, each with its own counts."""
    from workbench.execute.contract import counts, run_jobs

    if certify not in ("none", "largest", "all"):
        raise WorkbenchError(f"certify must be none, largest or all, got {certify!r}")
    store = RunStore(root)
    per_sweep = [_specs(sweep, store, certify, certify_factor) for sweep in sweeps]
    jobs: dict[str, PretrainSpec] = {}
    for s in (s for specs in per_sweep for s in specs):  # a run two sweeps share keeps the certificate either asks
        if s.run_id not in jobs or (s.then and not jobs[s.run_id].then):
            jobs[s.run_id] = s
    outcomes = run_jobs(list(jobs.values()), root, exec_cfg,
                        desc="sweep" if len(sweeps) == 1 else f"{len(sweeps)} sweeps", on_done=on_done)
    by_id, runs, tables = {o.run_id: o for o in outcomes}, load_runs(root), []
    for specs in per_sweep:
        ids = {s.run_id for s in specs}
        df = runs[runs.run_id.isin(ids)].sort_values(["n_params", "seed"]).reset_index(drop=True) \
            if not runs.empty else runs.copy()
        df.attrs["counts"] = counts([by_id[s.run_id] for s in specs])
        tables.append(df)
    return tables


def _specs(sweep: SweepConfig, store: RunStore, certify: str, certify_factor: float) -> list[PretrainSpec]:
    """The sweep's run specs, each asked to certify itself where `certify` says, and (when any is
    unfinished) tied to the tokenizer of the prepared data, which is prepared here."""
    deepest = max(sweep.layers)

    def then(r):
        chosen = certify == "all" or (certify == "largest" and r.n_layers == deepest)
        return CertifyAfter(certify_factor) if chosen else None

    specs = [PretrainSpec(r, then=then(r)) for r in sweep.runs()]
    if all(store.is_finished(s.run_id) for s in specs):
        return specs
    data = prepare_data(sweep.data)  # data errors surface here, and workers find the prepared cache
    sha = data.meta.get("tokenizer_sha256")
    _same_tokenizer(store, specs, sha)
    return [PretrainSpec(r, tokenizer_sha256=sha, then=then(r)) for r in sweep.runs()]  # each run
    # checks the tokenizer again


def _same_tokenizer(store: RunStore, specs: list[PretrainSpec], sha: str | None) -> None:
    """Refuse to train new sizes beside finished ones that used another tokenizer (the data cache was
    rebuilt: WordPiece training is not reproducible across processes), so a law never mixes them."""
    other = [s.run_id for s in specs if store.is_finished(s.run_id)
             and ((store.config(s.run_id) or {}).get("data") or {}).get("tokenizer_sha256") not in (None, sha)]
    if other:
        raise WorkbenchError(f"{len(other)} finished run(s) of this sweep ({other[0]}, ...) used another tokenizer "
                             f"than the data cache holds now (it was rebuilt); restore the cache, or move those runs "
                             f"out of {store.root} so that every size trains on one tokenizer")
