"""Runs from anywhere: a CSV, a Parquet file or a DataFrame, checked into the fitting table.

    table = read_table("data/example_ladder.csv")                          # columns named as below
    table = read_table(df, columns={"n_params": "N", "value": "loss"})     # a map when names differ
    law_report(table[table.variant == "ladder-a"], fit)                     # every fit takes it
    backtest(table, fit)                                                   # the largest size predicted

The schema, one row per run (or per checkpoint of a run):

  column    meaning                                             required
  variant   family or variant name                               no (one variant, "all")
  n_params  N, non-embedding parameters, > 0                     yes
  tokens    D, tokens seen, > 0                                  no
  seed      seed id (an integer)                                 no (0)
  step      training step of a checkpoint                        no
  value     what the law fits: a loss, or 1 - metric, > 0        yes

`columns` maps a schema name to the source's column name. Without a map the schema names are looked
up, then common aliases (`N`, `params`, `D`, `loss`, ...); two aliases present for one name is
ambiguous and refused. A table the fits cannot use (a missing or ambiguous column, a non-numeric
value, a size or value <= 0, the same run twice) is a one-line `FitError` naming the column and row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.base.errors import FitError

SCHEMA = ("variant", "n_params", "tokens", "seed", "step", "value")
REQUIRED = ("n_params", "value")
ALIASES = {
    "variant": ("variant", "family", "model_family", "ladder"),
    "n_params": ("n_params", "N", "params", "non_embedding_params", "n"),
    "tokens": ("tokens", "D", "n_tokens", "tokens_seen"),
    "seed": ("seed",),
    "step": ("step", "steps", "checkpoint_step"),
    "value": ("value", "loss", "eval_loss", "best_eval_loss", "y"),
}
NUMERIC = ("n_params", "tokens", "seed", "step", "value")
POSITIVE = ("n_params", "tokens", "value")


def read_table(source, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """The fitting table of `source` (a .csv / .parquet path or a DataFrame): schema columns in
    schema order, with `variant` as text and `seed` as an integer; see the module docstring."""
    raw = _load(source)
    columns = _column_map(columns)
    _no_duplicate_headers(raw, source)
    out = {}
    for name in SCHEMA:
        col = _find(raw, name, columns.get(name))
        if col is not None:
            out[name] = raw[col]
            out[name].attrs["source"] = col
    roles: dict[str, list[str]] = {}
    for name, col in out.items():
        roles.setdefault(col.attrs["source"], []).append(name)
    for col, names in roles.items():
        if len(names) > 1:  # e.g. value mapped to the column n_params was found in by its alias
            raise FitError(f"column {col!r} would be both {' and '.join(names)}; one column can fill one role "
                           f"only: map each role to its own column")
    for name in REQUIRED:
        if name not in out:
            raise FitError(f"the table has no {name} column (looked for {', '.join(ALIASES[name])}; columns: "
                           f"{', '.join(map(str, raw.columns))}); give a column map, e.g. columns={{'{name}': ...}}")
    table = pd.DataFrame({k: v.to_numpy() for k, v in out.items()})
    for name in NUMERIC:
        if name in table:
            table[name] = _numeric(table[name], name, out[name].attrs["source"], name in POSITIVE)
    if "variant" in table:
        _named(table["variant"], out["variant"].attrs["source"])
    table["variant"] = table["variant"].astype(str) if "variant" in table else "all"
    table["seed"] = table["seed"].astype(int) if "seed" in table else 0
    if "seed" in out and not np.allclose(out["seed"].astype(float), table["seed"]):
        raise FitError(f"column {out['seed'].attrs['source']!r} (seed) must hold whole numbers")
    _no_duplicates(table)
    return table[[c for c in SCHEMA if c in table]].reset_index(drop=True)


def _column_map(columns) -> dict[str, str]:
    """The user's {schema name: source column} map, checked: schema names only, one column per
    name as text, and no source column given two roles (N fitted against N)."""
    if columns is None:
        return {}
    if not isinstance(columns, dict):
        raise FitError(f"the column map must be {{schema name: column name}} (e.g. {{'n_params': 'N'}}), "
                       f"got a {type(columns).__name__}")
    unknown = set(columns) - set(SCHEMA)
    if unknown:
        raise FitError(f"column map names {sorted(map(str, unknown))}, not schema columns; map any of {list(SCHEMA)}")
    for name, col in columns.items():
        if not isinstance(col, str) or not col:
            raise FitError(f"column map: {name} -> {col!r}; give one column name as text")
    by_column: dict[str, list[str]] = {}
    for name, col in columns.items():
        by_column.setdefault(col, []).append(name)
    twice = {c: names for c, names in by_column.items() if len(names) > 1}
    if twice:
        col, names = next(iter(twice.items()))
        raise FitError(f"column map: {col!r} is given as both {' and '.join(names)}; one column can fill one "
                       f"role only")
    return dict(columns)


def _no_duplicate_headers(raw: pd.DataFrame, source) -> None:
    """Two columns of one name are refused: which one a fit took would be a guess. pandas renames a
    CSV's repeated header `value` to `value.1`, so a CSV's header line is read as written."""
    names = list(map(str, raw.columns))
    if isinstance(source, (str, os.PathLike)) and _suffix(Path(source)) in (".csv", ".tsv", ".txt"):
        import csv

        with _open_text(Path(source)) as f:
            names = next(csv.reader(f, delimiter=_sep(Path(source))), names)
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if dup:
        raise FitError(f"the table has {len(dup)} repeated column name(s): {', '.join(map(repr, dup))}; "
                       f"rename or drop one of each")


def _named(col: pd.Series, source: str) -> None:
    """Every row names its variant: an empty cell is refused, not made a nameless variant."""
    empty = col.isna() | (col.astype(str).str.strip() == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise FitError(f"column {source!r} (variant): row {i + 1} is empty; name every row's variant, or drop "
                       f"the column for a table of one variant")


def _suffix(path: Path) -> str:
    """The table's format suffix, under a `.gz` if any."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _sep(path: Path) -> str:
    return "\t" if _suffix(path) == ".tsv" else ","


def _open_text(path: Path):
    import gzip

    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    return open(path, newline="", encoding="utf-8", errors="replace")


def _load(source) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        if source.empty:
            raise FitError("the table has no rows")
        return source.copy()
    if not isinstance(source, (str, os.PathLike)):
        raise FitError(f"a table is a CSV or Parquet path or a DataFrame, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FitError(f"table {path} does not exist")
    try:
        if _suffix(path) in (".parquet", ".pq") and path.suffix.lower() != ".gz":
            df = pd.read_parquet(path)
        elif _suffix(path) in (".csv", ".tsv", ".txt"):
            # as text: each column is made a number here (`_numeric`), where a whole number above 2^53 is
            # still seen as written and refused, not rounded into its neighbour by the parser
            df = pd.read_csv(path, sep=_sep(path), dtype=str, keep_default_na=False,  # a .gz is unpacked
                             na_values=[""])  # only an empty cell is missing: a variant may be called "NA"
        else:
            raise FitError(f"table {path}: use a .csv, .tsv or .parquet file (.csv.gz and .tsv.gz too)")
    except (ValueError, OSError, ImportError) as e:
        if isinstance(e, FitError):
            raise
        raise FitError(f"table {path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if df.empty:
        raise FitError(f"table {path} has no rows")
    return df


def _find(df: pd.DataFrame, name: str, mapped: str | None) -> str | None:
    if mapped is not None:
        if mapped not in df.columns:
            raise FitError(f"column map: {name} -> {mapped!r}, but the table has no column {mapped!r} "
                           f"(columns: {', '.join(map(str, df.columns))})")
        return mapped
    if name in df.columns:
        return name
    present = [a for a in ALIASES[name] if a in df.columns]
    if len(present) > 1:
        raise FitError(f"ambiguous {name}: columns {present} could all be it; name one with a column map, "
                       f"e.g. columns={{'{name}': '{present[0]}'}}")
    return present[0] if present else None


EXACT = 2**53  # integers above this are not all exact as floats: two sizes would merge
LIMITS = (1e-100, 1e100)  # a positive column's values must lie here: the fits work in log space


def _numeric(col: pd.Series, name: str, source: str, positive: bool) -> pd.Series:
    kind = col.dtype.kind
    if kind in "mMcb" or isinstance(col.dtype, pd.DatetimeTZDtype):
        what = {"m": "durations", "M": "dates", "c": "complex numbers", "b": "true/false"}.get(kind, "dates")
        raise FitError(f"column {source!r} ({name}) holds {what}, not numbers; convert it to a number first")
    if kind == "O":
        odd = col.map(lambda v: isinstance(v, (complex, bool, np.bool_, pd.Timestamp, pd.Timedelta))
                      or hasattr(v, "isoformat")).to_numpy()
        if odd.any():
            i = int(np.flatnonzero(odd)[0])
            raise FitError(f"column {source!r} ({name}): row {i + 1} is {col.iloc[i]!r}, not a number")
    big = np.zeros(len(col), bool)
    if kind in "iu":
        big = np.abs(col.to_numpy().astype(object)) > EXACT
    elif kind == "O":
        text = col.astype(str).str.strip()
        whole = text.str.fullmatch(r"[+-]?\d{16,}").fillna(False).to_numpy(bool)
        big[whole] = [abs(int(v)) > EXACT for v in text[whole]]
    if name != "seed" and big.any():
        i = int(np.flatnonzero(big)[0])
        raise FitError(f"column {source!r} ({name}): row {i + 1} is {col.iloc[i]}, above 2^53, where whole "
                       f"numbers stop being exact as floats and sizes would merge; give it in a larger unit")
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna() | col.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FitError(f"column {source!r} ({name}): row {i + 1} is {col.iloc[i]!r}, not a number")
    if not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values.to_numpy()))[0])
        raise FitError(f"column {source!r} ({name}): row {i + 1} is {col.iloc[i]!r}, not a finite number")
    if positive and (values <= 0).any():
        i = int(np.flatnonzero((values <= 0).to_numpy())[0])
        hint = "; fit 1 - metric for a metric" if name == "value" else ""
        raise FitError(f"column {source!r} ({name}): row {i + 1} is {float(values.iloc[i])!r}; it must be > 0{hint}")
    lo, hi = LIMITS
    if positive and ((values < lo) | (values > hi)).any():
        i = int(np.flatnonzero(((values < lo) | (values > hi)).to_numpy())[0])
        raise FitError(f"column {source!r} ({name}): row {i + 1} is {float(values.iloc[i]):.3g}, outside "
                       f"{lo:g} .. {hi:g} where a fit in log space stays finite; rescale the column")
    return values.astype(float)


def _no_duplicates(table: pd.DataFrame) -> None:
    key = [c for c in ("variant", "n_params", "tokens", "seed", "step") if c in table]
    dup = table.duplicated(key, keep=False)
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy()) + 1).tolist()
        raise FitError(f"rows {rows[:4]} are the same run twice ({', '.join(key)} equal); keep one, or add a "
                       f"seed or step column that tells them apart")


# ------------------------------------------------------------------ backtests


def final_points(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (variant, size, seed): its best checkpoint, the lowest value, as early stopping
    keeps it. A table of final results (no `step` column) is returned as it is."""
    if "step" not in table:
        return table
    best = table.loc[table.groupby(["variant", "n_params", "seed"]).value.idxmin()]
    return best.sort_values(["variant", "n_params", "seed"]).reset_index(drop=True)


DROP_FRACTION = 0.1  # share of each run's checkpoints dropped from the front (warm-up, fast early descent)


def checkpoints(table: pd.DataFrame, drop_fraction: float = DROP_FRACTION) -> pd.DataFrame:
    """The checkpoints a law over tokens is fitted on: every logged point of each run but its first
    `drop_fraction` (by step). The start of a run is warm-up and the fast first descent, which no
    L(N, D) surface describes; the "Hitchhiker's guide to scaling law estimation" (Choshen et al.
    2024) drops roughly the first 10% of training for the same reason. The points of one run are not
    independent: fits over them resample runs (`workbench.laws.joint.bootstrap_joint`)."""
    if not 0 <= drop_fraction < 1:
        raise FitError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    if "step" not in table:
        return table
    keep = []
    for _, run in table.groupby(["variant", "n_params", "seed"], sort=False):
        run = run.sort_values("step")
        cut = run.step.min() + drop_fraction * (run.step.max() - run.step.min())
        keep.append(run[run.step >= cut] if len(run) > 1 else run)
    return pd.concat(keep).sort_values(["variant", "n_params", "seed", "step"]).reset_index(drop=True)


def law_points(table: pd.DataFrame, law: str = "power") -> pd.DataFrame:
    """The rows `law` is fitted on: a law over N alone takes each run's best checkpoint
    (`final_points`); a law with covariates (the joint law over tokens) takes the checkpoints
    (`checkpoints`: all but the first part of each run), resampled by run in its bootstrap."""
    from workbench.laws.fit import get_law

    return checkpoints(table) if get_law(law).covariates else final_points(table)


def backtest(table: pd.DataFrame, fit=None) -> pd.DataFrame:
    """Per variant: fit `fit.law` without the largest size, predict it, and compare the mean
    absolute relative error with two naive predictions: the best smaller model, and the last
    (largest) fitted size carried over flat. `seed_spread` is the mean relative seed-to-seed
    standard deviation at the fitted sizes: the floor no law can beat (NaN with one seed).
    The law is fitted on `law_points` (the joint law: checkpoints, and it predicts each held-out
    run at its own tokens); targets and baselines are each run's best checkpoint."""
    from workbench.config import FitConfig
    from workbench.laws.fit import covariates_of, get_law

    fit = fit or FitConfig()
    cls = get_law(fit.law)
    rows = []
    for variant, raw in table.groupby("variant", sort=True):
        g = final_points(raw)
        sizes = np.sort(g.n_params.unique())
        if len(sizes) < cls.min_sizes + 1:
            rows.append(dict(variant=variant, n_sizes=len(sizes), note=f"fewer than {cls.min_sizes + 1} sizes"))
            continue
        small, target = g[g.n_params < sizes[-1]], g[g.n_params == sizes[-1]]
        actual = float(target.value.mean())
        per_size = small.groupby("n_params").value
        means = per_size.mean()
        points = law_points(raw, fit.law)
        points = points[points.n_params < sizes[-1]]
        try:
            law = cls().fit(points, **covariates_of(points, cls))
        except FitError as e:
            rows.append(dict(variant=variant, n_sizes=len(sizes), note=f"the {fit.law} law cannot be fitted: {e}"))
            continue
        preds = dict(law=float(np.mean(law.predict(target.n_params.to_numpy(float), **covariates_of(target, cls)))),
                     best_small=float(means.min()), last_point=float(means.loc[sizes[-2]]))
        spread = (per_size.std(ddof=1) / means).dropna()
        row = dict(variant=variant, n_sizes=len(sizes), target_n=float(sizes[-1]), actual=actual,
                   seed_spread=float(spread.mean()) if len(spread) else float("nan"), note="")
        for name, p in preds.items():
            row[f"{name}_pred"] = p
            row[f"{name}_are"] = abs(p - actual) / actual
        row["law_beats_baselines"] = bool(row["law_are"] < min(row["best_small_are"], row["last_point_are"]))
        rows.append(row)
    return pd.DataFrame(rows)


def selection_backtest(table: pd.DataFrame, fit=None) -> dict:
    """Decision accuracy over every pair of variants that share their largest size: the share of pairs
    where the winner extrapolated from the smaller sizes is the measured winner there, against
    ranking the two by their largest smaller size (what one would do without a law). The
    predictions are `backtest`'s."""
    bt = backtest(table, fit)
    rows = bt[bt.note == ""].set_index("variant") if len(bt) else bt
    pairs = []
    names = sorted(rows.index)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            A, B = rows.loc[a], rows.loc[b]
            if not np.isclose(A.target_n, B.target_n):
                continue
            truth = A.actual < B.actual
            pairs.append(dict(a=a, b=b, target_n=float(A.target_n),
                              law_right=bool((A.law_pred < B.law_pred) == truth),
                              largest_small_right=bool((A.last_point_pred < B.last_point_pred) == truth)))
    share = (lambda k: float(np.mean([p[k] for p in pairs])) if pairs else float("nan"))
    return dict(n_pairs=len(pairs), law_accuracy=share("law_right"),
                largest_small_accuracy=share("largest_small_right"), pairs=pairs)
