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
from workbench.runs.pretrain import PretrainSpec
from workbench.runs.store import RunStore
from workbench.runs.tables import load_runs


def run_sweep(sweep: SweepConfig, root: str | Path = "runs", exec_cfg: ExecConfig = ExecConfig(), on_done=None):
    """Pretrain every run of `sweep` under `root` (smallest first) on `exec_cfg.executor`, skipping
    finished ones; a failed run is reported and left out, the others go on.

    Returns the tidy table of this sweep's finished runs (see `workbench.runs.tables.load_runs`), with the
    run counts of `workbench.execute.contract.counts` in `df.attrs["counts"]`."""
    from workbench.execute.contract import counts, run_jobs

    specs = [PretrainSpec(r) for r in sweep.runs()]
    store = RunStore(root)
    if not all(store.is_finished(s.run_id) for s in specs):
        data = prepare_data(sweep.data)  # data errors surface here, and workers find the prepared cache
        sha = data.meta.get("tokenizer_sha256")
        _same_tokenizer(store, specs, sha)
        specs = [PretrainSpec(r, tokenizer_sha256=sha) for r in sweep.runs()]  # each run checks it again
    outcomes = run_jobs(specs, root, exec_cfg, desc="sweep", on_done=on_done)
    df = load_runs(root)
    ids = {s.run_id for s in specs}
    df = df[df.run_id.isin(ids)].sort_values(["n_params", "seed"]).reset_index(drop=True) if not df.empty else df
    df.attrs["counts"] = counts(outcomes)
    return df


def _same_tokenizer(store: RunStore, specs: list[PretrainSpec], sha: str | None) -> None:
    """Refuse to train new sizes beside finished ones that used another tokenizer (the data cache was
    rebuilt: WordPiece training is not reproducible across processes), so a law never mixes them."""
    other = [s.run_id for s in specs if store.is_finished(s.run_id)
             and ((store.config(s.run_id) or {}).get("data") or {}).get("tokenizer_sha256") not in (None, sha)]
    if other:
        raise WorkbenchError(f"{len(other)} finished run(s) of this sweep ({other[0]}, ...) used another tokenizer "
                             f"than the data cache holds now (it was rebuilt); restore the cache, or move those runs "
                             f"out of {store.root} so that every size trains on one tokenizer")
