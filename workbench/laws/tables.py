"""Runs from anywhere: a CSV, a Parquet file or a DataFrame, checked into the fitting table.

    table = read_table("data/example_ladder.csv")                          # columns named as below
    table = read_table(df, columns={"n_params": "N", "value": "loss"})     # a map when names differ
    table = read_table("scan.csv.gz", hparams=["lr"])                      # the best LR per size is fitted
    law_report(table[table.variant == "ladder-a"], fit)                     # every fit takes it
    backtest(table, fit)                                                   # the largest size predicted

The schema, one row per run (or per checkpoint of a run):

  column    meaning                                             required
  variant   family or variant name                               no (one variant, "all")
  run       run name: the rows of one run are its checkpoints    no (runs are variant, size, seed)
  n_params  N, non-embedding parameters, > 0 (`125m`, `2.8B`)    yes
  tokens    D, tokens seen, > 0 (`300B`)                         no
  seed      seed id (an integer)                                 no (0)
  step      training step of a checkpoint                        no
  value     what the law fits: a loss, or 1 - metric, > 0        yes
  floor     the known irreducible loss E, >= 0 (a generated       no (the `floored` law needs it)
            language's Bayes loss on the runs' eval set)

`columns` maps a schema name to the source's column name. Without a map the schema names are looked
up, then common aliases (`ALIASES`: `N`, `num_params`, `model_size`, `D`, `tokens_seen`, `loss`,
`perf`, ...); two aliases present for one name is ambiguous and refused. A table the fits cannot use
(a missing or ambiguous column, a non-numeric value, a size or value <= 0, the same point twice) is a
one-line `FitError` naming the column and row.

Runs and checkpoints are explicit: a size with several token counts and neither a `step` nor a `run`
column could be checkpoints of one run or runs of their own, and is refused with the ways to say
which. `dedupe="mean"` averages repeated points (digitised curves) with a note. `hparams` names
columns of settings (LR, batch) swept at equal (N, D): per size the best setting is kept
(`select="best"`: lowest mean of the runs' best values), or per (size, tokens) the lowest value
over settings (`select="envelope"`, the lower envelope), and `table.attrs["notes"]` says how many
settings each size was chosen from.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.base.errors import FitError

log = logging.getLogger(__name__)

SCHEMA = ("variant", "n_params", "tokens", "seed", "step", "value", "floor")
MAPPABLE = SCHEMA + ("run",)  # `run` is read to tell runs apart, then becomes seed ids
REQUIRED = ("n_params", "value")
ALIASES = {  # the names published ladders use (README: "Laws from any table")
    "variant": ("variant", "family", "model_family", "ladder"),
    "run": ("run", "run_id", "run_name"),
    "n_params": ("n_params", "N", "params", "non_embedding_params", "n", "num_params", "n_parameters",
                 "parameters", "model_size", "params_non_embedding"),
    "tokens": ("tokens", "D", "n_tokens", "tokens_seen", "num_tokens", "tokens_trained", "train_tokens"),
    "seed": ("seed",),
    "step": ("step", "steps", "checkpoint_step", "iteration", "iter"),
    "value": ("value", "loss", "eval_loss", "best_eval_loss", "y", "perf", "val_loss", "validation_loss",
              "test_loss"),
    "floor": ("floor", "eval_loss_floor", "loss_floor", "entropy_floor", "irreducible_loss"),
}
SIZE_UNITS = {"k": 3, "m": 6, "b": 9, "g": 9, "t": 12}  # powers of ten: 125m, 2.8B, 1.3b, 300B tokens
NUMERIC = ("n_params", "tokens", "seed", "step", "value")
POSITIVE = ("n_params", "tokens", "value")


def read_table(source, columns: dict[str, str] | None = None, hparams=(), select: str = "best",
               dedupe: str | None = None) -> pd.DataFrame:
    """The fitting table of `source` (a .csv / .tsv / .parquet path, gzipped or not, or a DataFrame):
    schema columns in schema order, with `variant` as text and `seed` as an integer; see the module
    docstring for `hparams`, `select` and `dedupe`. What was inferred or chosen is in
    `table.attrs["notes"]` (one line each)."""
    raw = _load(source)
    columns = _column_map(columns)
    hparams = _hparam_columns(hparams, raw)
    if select not in ("best", "envelope"):
        raise FitError(f"select must be 'best' (the best setting per size) or 'envelope' (the lowest value per "
                       f"size and token count), got {select!r}")
    if dedupe not in (None, "mean"):
        raise FitError(f"dedupe must be 'mean' (average repeated points) or None, got {dedupe!r}")
    _no_duplicate_headers(raw, source)
    out = {}
    for name in MAPPABLE:
        col = _find(raw, name, columns.get(name))
        if col is not None:
            out[name] = raw[col]
            out[name].attrs["source"] = col
    notes: list[str] = []
    if "value" in out and out["value"].attrs["source"] == "perf" and "value" not in columns:
        notes.append("the value is read from 'perf' as a loss (lower is better); for a score, fit 1 - score")
    # a map and an alias landing on one column; step = tokens (checkpoints ordered by their tokens) is
    # the one pair that makes sense
    shared = _shared_column({k: v.attrs["source"] for k, v in out.items()}, allow=("step", "tokens"))
    if shared:
        col, names = shared
        raise FitError(f"column {col!r} would be both {' and '.join(names)}; one column can fill one role "
                       f"only: map each role to its own column")
    for name in REQUIRED:
        if name not in out:
            raise FitError(f"the table has no {name} column (looked for {', '.join(ALIASES[name])}; columns: "
                           f"{', '.join(map(str, raw.columns))}); name it: --columns {name}=COLUMN on the command "
                           f"line, columns={{'{name}': 'COLUMN'}} in Python")
    table = pd.DataFrame({k: v.to_numpy() for k, v in out.items()})
    for name in NUMERIC:
        if name in table:
            table[name] = _numeric(table[name], name, out[name].attrs["source"], name in POSITIVE)
    if "floor" in table:
        _floor(table, out["floor"].attrs["source"], notes)
    if "variant" in table:
        _named(table["variant"], out["variant"].attrs["source"])
    table["variant"] = table["variant"].astype(str) if "variant" in table else "all"
    table["seed"] = table["seed"].astype(int) if "seed" in table else 0
    if "seed" in out and not np.allclose(out["seed"].astype(float), table["seed"]):
        raise FitError(f"column {out['seed'].attrs['source']!r} (seed) must hold whole numbers")
    for h in hparams:
        table[f"hp:{h}"] = raw[h].astype(str).to_numpy()
    runs_named = "run" in table
    if runs_named:
        _runs_to_seeds(table, out["run"].attrs["source"], "seed" in out)
    _checkpoints_or_runs(table, runs_named, notes)
    key = [c for c in ("variant", "n_params", "tokens", "seed", "step") if c in table] + [f"hp:{h}" for h in hparams]
    if dedupe == "mean":
        table = _dedupe(table, key, notes)
    _no_duplicates(table, key)
    if hparams:
        table = _select_settings(table, hparams, select, notes)
    table = table[[c for c in SCHEMA if c in table]].reset_index(drop=True)
    for line in notes:
        log.debug("%s", line)
    table.attrs["notes"] = notes
    return table


def _hparam_columns(hparams, raw: pd.DataFrame) -> list[str]:
    if isinstance(hparams, str):
        hparams = [h.strip() for h in hparams.split(",") if h.strip()]
    hparams = list(hparams or ())
    missing = [h for h in hparams if h not in raw.columns]
    if missing:
        raise FitError(f"hyperparameter column(s) {', '.join(missing)} not in the table (columns: "
                       f"{', '.join(map(str, raw.columns))})")
    return hparams


def _runs_to_seeds(table: pd.DataFrame, source: str, has_seed: bool) -> None:
    """A `run` column names runs: without a seed column, the runs of one (variant, size) become seed
    ids 0, 1, ...; with one, each run must keep one seed and no two runs of a size share a seed."""
    run = table.pop("run").astype(str)
    if not has_seed:  # numbered per size (and setting) in the order of their tokens, so that the runs of two
        # settings on one token grid get the same numbers and a lower envelope compares like with like
        hp = [c for c in table if c.startswith("hp:")]
        group = ["variant", "n_params"] + hp
        first = table.assign(run=run).groupby(group + ["run"], sort=False)
        order = (first.tokens.transform("min") if "tokens" in table else pd.Series(0, index=table.index))
        runs = table.assign(run=run, order=order).drop_duplicates(group + ["run"]).sort_values(group + ["order"],
                                                                                                 kind="stable")
        runs["seed"] = runs.groupby(group, sort=False).cumcount()
        table["seed"] = table.assign(run=run).merge(runs[group + ["run", "seed"]], on=group + ["run"],
                                                    how="left", suffixes=("_", ""))["seed"].to_numpy().astype(int)
        return
    hp = [c for c in table if c.startswith("hp:")]
    per_run = table.assign(run=run).groupby(["variant", "n_params", "run"]).seed.nunique()
    if (per_run > 1).any():
        raise FitError(f"column {source!r} (run): run {per_run[per_run > 1].index[0][2]!r} has several seeds; a run "
                       f"has one")
    per_seed = table.assign(run=run).groupby(["variant", "n_params", "seed"] + hp).run.nunique()
    if (per_seed > 1).any():
        v, n, s = per_seed[per_seed > 1].index[0][:3]
        raise FitError(f"column {source!r} (run): runs of {v} at N = {n:g} share seed {s}; drop the seed column "
                       f"(runs then number themselves) or fix it")


def _checkpoints_or_runs(table: pd.DataFrame, runs_named: bool, notes: list[str]) -> None:
    """Several token counts for one (variant, size, seed) and no step: checkpoints of one run, or runs
    of their own? With a `run` column they are that run's checkpoints, ordered by tokens (said in a
    note); without one nothing in the table says, a fit would guess, and the table is refused."""
    if "tokens" not in table or "step" in table:
        return
    run = ["variant", "n_params", "seed"] + [c for c in table if c.startswith("hp:")]
    counts = table.groupby(run).tokens.nunique()
    if runs_named and (counts > 1).any():
        table["step"] = table.groupby(run).tokens.rank(method="dense").astype(int)
        notes.append(f"{len(table)} rows read as checkpoints of {len(counts)} runs (the run column), in the order "
                     f"of their tokens: up to {int(counts.max())} per run")
        return
    if (counts > 1).any():
        first = counts[counts > 1].index[0]
        (v, n, s), k = first[:3], int(counts.loc[first])
        raise FitError(f"{v} at N = {n:g} (seed {s}) has {k} token counts and the table no step or run column: "
                       f"checkpoints of one run, or runs of their own? Checkpoints: --columns step=<tokens "
                       f"column> (Python: columns={{'step': ...}}); runs: a run or seed column that tells them apart")


def _dedupe(table: pd.DataFrame, key: list[str], notes: list[str]) -> pd.DataFrame:
    dup = table.duplicated(key, keep=False)
    if not dup.any():
        return table
    if "floor" in table:  # repeats of one point share their eval set, so their floor
        floors = table.groupby(key, sort=False, dropna=False).floor.nunique(dropna=False)
        if (floors > 1).any():
            point = dict(zip(key, floors[floors > 1].index[0] if len(key) > 1 else [floors[floors > 1].index[0]]))
            raise FitError(f"repeated points with different floors ({', '.join(f'{k}={v}' for k, v in point.items())}): "
                           f"one point has one eval set and one floor; fix the floor column or average only "
                           f"points that share it")
    agg = {"value": "mean", **({"floor": "first"} if "floor" in table else {})}
    merged = table.groupby(key, as_index=False, sort=False).agg(agg)
    notes.append(f"{int(dup.sum())} repeated points (equal {', '.join(k for k in key if not k.startswith('hp:'))}) "
                 f"averaged into {int(dup.sum() - (len(table) - len(merged)))} (dedupe=mean)")
    return merged


def _select_settings(table: pd.DataFrame, hparams: list[str], select: str, notes: list[str]) -> pd.DataFrame:
    """One setting per size (`best`: the lowest mean over seeds of each run's best value) or the lowest
    value per (size, tokens) over settings (`envelope`); the notes say from how many settings."""
    hp = [f"hp:{h}" for h in hparams]
    run_key = ["variant", "n_params", "seed"] + hp
    if select == "envelope":
        if "tokens" not in table:
            raise FitError("select='envelope' takes the lowest value per size and token count: the table has no "
                           "tokens column; use select='best'")
        point = ["variant", "n_params", "tokens"]
        n_settings = table.groupby(["variant", "n_params"])[hp].apply(lambda g: len(g.drop_duplicates()))
        means = table.groupby(point + hp).value.mean().reset_index()  # a setting's seeds averaged at each (N, D)
        chosen = means.loc[means.groupby(point).value.idxmin()][point + hp]
        keep = table.merge(chosen, on=point + hp)  # the winning setting's rows (all its seeds) at each (N, D)
        notes.append("hyperparameters " + ", ".join(hparams) + ": lower envelope, the lowest value per size and "
                     "token count over " + ", ".join(f"{int(k)} setting(s) at N = {n:g}" for (_, n), k in
                                                    n_settings.items()))
        return keep.sort_values(point + ["seed"]).reset_index(drop=True)
    best_of_run = table.groupby(run_key).value.min().reset_index()
    per_setting = best_of_run.groupby(["variant", "n_params"] + hp).value.mean().reset_index()
    chosen = per_setting.loc[per_setting.groupby(["variant", "n_params"]).value.idxmin()]
    counts = per_setting.groupby(["variant", "n_params"]).size()
    keep = table.merge(chosen[["variant", "n_params"] + hp], on=["variant", "n_params"] + hp)
    notes.append("hyperparameters " + ", ".join(hparams) + ": the best setting per size, " + "; ".join(
        f"{r['variant']} N = {r['n_params']:g}: " + ", ".join(f"{h}={r[f'hp:{h}']}" for h in hparams)
        + f" of {int(counts[(r['variant'], r['n_params'])])} settings" for r in chosen.to_dict("records")))
    return keep.reset_index(drop=True)


def _column_map(columns) -> dict[str, str]:
    """The user's {schema name: source column} map, checked: schema names only, one column per
    name as text, and no source column given two roles (N fitted against N)."""
    if columns is None:
        return {}
    if not isinstance(columns, dict):
        raise FitError(f"the column map must be {{schema name: column name}} (e.g. {{'n_params': 'N'}}), "
                       f"got a {type(columns).__name__}")
    unknown = set(columns) - set(MAPPABLE)
    if unknown:
        raise FitError(f"column map names {sorted(map(str, unknown))}, not schema columns; map any of {list(MAPPABLE)}")
    for name, col in columns.items():
        if not isinstance(col, str) or not col:
            raise FitError(f"column map: {name} -> {col!r}; give one column name as text")
    shared = _shared_column(columns)
    if shared:
        col, names = shared
        raise FitError(f"column map: {col!r} is given as both {' and '.join(names)}; one column can fill one "
                       f"role only")
    return dict(columns)


def _shared_column(roles: dict[str, str], allow: tuple[str, ...] = ()) -> tuple[str, list[str]] | None:
    """(column, its roles) of the first source column that fills two roles of {role: column}, but for
    the one pair `allow`; None when every column fills one."""
    by_column: dict[str, list[str]] = {}
    for name, col in roles.items():
        by_column.setdefault(col, []).append(name)
    for col, names in by_column.items():
        if len(names) > 1 and sorted(names) != sorted(allow):
            return col, names
    return None


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
        raise FitError(f"ambiguous {name}: columns {present} could all be it; name one: --columns "
                       f"{name}={present[0]} on the command line, columns={{'{name}': '{present[0]}'}} in Python")
    return present[0] if present else None


EXACT = 2**53  # integers above this are not all exact as floats: two sizes would merge
LIMITS = (1e-100, 1e100)  # a positive column's values must lie here: the fits work in log space


_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT])\s*$")


def _with_units(col: pd.Series) -> pd.Series:
    """Sizes as published ladders write them (`125m`, `2.8B`, `1.3b`, `300B`) as numbers; other cells
    as they are."""
    def parse(v):
        m = _UNIT.match(v) if isinstance(v, str) else None
        return float(f"{m.group(1)}e{SIZE_UNITS[m.group(2).lower()]}") if m else v  # 4.1B is exactly 4.1e9
    return col.map(parse).astype(object)


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
    if kind == "O" and name in ("n_params", "tokens"):
        col = _with_units(col)
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
        sizes = " or a size such as 125M, 2.8B" if name in ("n_params", "tokens") else ""
        raise FitError(f"column {source!r} ({name}): row {i + 1} is {col.iloc[i]!r}, not a number{sizes}")
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


MISSING = ("", "nan", "na", "n/a", "none", "null", "-")  # how a table writes "no floor" in a cell


def _floor(table: pd.DataFrame, source: str, notes: list[str]) -> None:
    """The known floor, a number >= 0 where given: missing cells (empty, NaN, `NA`, `none`, `-`) stay
    NaN (runs on real text have no floor; the floored law refuses them when fitted), and a column
    with none given is dropped; the notes say which column was read."""
    col = table["floor"]
    given = col.notna()
    if col.dtype.kind == "O":
        given &= ~col.astype(str).str.strip().str.lower().isin(MISSING)
    if not given.any():
        table.pop("floor")
        notes.append(f"column {source!r} (floor) holds no floor: dropped")
        return
    # every cell checked in place, so an error names the table's own row; missing cells read as 0 there
    values = _numeric(col.where(given, 0), "floor", source, positive=False).where(given, np.nan)
    bad = given & ~(values >= 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FitError(f"column {source!r} (floor): row {i + 1} is {float(values.iloc[i])!r}; a loss floor is a "
                       f"number >= 0")
    table["floor"] = values
    notes.append(f"the known floor E read from column {source!r} ({int(given.sum())} of {len(table)} rows)")


def _no_duplicates(table: pd.DataFrame, key: list[str]) -> None:
    dup = table.duplicated(key, keep=False)
    if dup.any():
        rows = (np.flatnonzero(dup.to_numpy()) + 1).tolist()
        shown = ", ".join(k for k in key if not k.startswith("hp:"))
        raise FitError(f"rows {rows[:4]} are the same point twice ({shown} equal): keep one; add a run, seed or step "
                       f"column that tells runs apart; name the columns of settings swept at one size (--hparams "
                       f"lr,batch); or, for repeated points of one digitised curve, average them (--dedupe mean)")


# ------------------------------------------------------------------ backtests


def final_points(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (variant, size, seed): its best checkpoint, the lowest value, as early stopping
    keeps it. A table of final results (no `step` column) is returned as it is."""
    if "step" not in table:
        return table
    best = table.loc[table.groupby(["variant", "n_params", "seed"]).value.idxmin()]
    return best.sort_values(["variant", "n_params", "seed"]).reset_index(drop=True)


DROP_FRACTION = 0.1  # share of each run's tokens dropped from the front (warm-up, fast early descent)


def checkpoints(table: pd.DataFrame, drop_fraction: float = DROP_FRACTION) -> pd.DataFrame:
    """The checkpoints a law over tokens is fitted on: every logged point of each run but its first
    `drop_fraction` (of its tokens; of its steps where there are no tokens). The start of a run is
    warm-up and the fast first descent, which no L(N, D) surface describes; the "Hitchhiker's guide
    to scaling law estimation" (Choshen et al. 2024) drops the early part of training for the same
    reason. The points of one run are not independent: fits over them resample runs
    (`workbench.laws.joint.bootstrap_joint`)."""
    if not 0 <= drop_fraction < 1:
        raise FitError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    if "step" not in table:
        return table
    keep = []
    for _, run in table.groupby(["variant", "n_params", "seed"], sort=False):
        run = run.sort_values("step")
        x = run.tokens if "tokens" in run else run.step  # the share of training: by tokens where known
        cut = x.min() + drop_fraction * (x.max() - x.min())
        keep.append(run[x >= cut] if len(run) > 1 else run)
    return pd.concat(keep).sort_values(["variant", "n_params", "seed", "step"]).reset_index(drop=True)


def law_points(table: pd.DataFrame, law: str = "power") -> pd.DataFrame:
    """The rows `law` is fitted on: a law over N alone takes each run's best checkpoint
    (`final_points`); a law with covariates (the joint law over tokens) takes the checkpoints
    (`checkpoints`: all but the first part of each run), resampled by run in its bootstrap."""
    from workbench.laws.fit import get_law

    return checkpoints(table) if get_law(law).covariates else final_points(table)


def backtest(table: pd.DataFrame, fit=None, protocol=None) -> pd.DataFrame:
    """Per variant (model family): hold out sizes, fit `fit.law` on the rest, predict the held-out
    targets, and compare the mean absolute relative error (ARE) with two naive predictions: the
    best smaller model, and the largest fitted size carried over flat. `protocol` (a
    `workbench.laws.protocols.Protocol` or a preset name: largest, the default; paper; hitchhiker)
    says which sizes are held out, what of them is the target and what the law is fitted on.
    `seed_spread` is the mean relative seed-to-seed standard deviation at the fitted sizes: the floor
    no law can beat (NaN with one seed). A law with covariates (the joint law) predicts each target
    at its own tokens. Targets of one size are averaged over seeds (best, final) or scored point by
    point (last_fraction); with several held-out sizes their AREs are averaged. `mean_over_variants`
    averages the rows, as the Hitchhiker protocol reports a family average."""
    from workbench.config import FitConfig
    from workbench.laws.fit import covariates_of, get_law
    from workbench.laws.protocols import get_protocol

    fit, proto = fit or FitConfig(), get_protocol(protocol)
    cls = get_law(fit.law)
    rows = []
    for variant, raw in table.groupby("variant", sort=True):
        g = final_points(raw)
        try:
            held_sizes = _held_sizes(raw, proto)
        except FitError as e:
            rows.append(dict(variant=variant, protocol=proto.name, n_sizes=int(raw.n_params.nunique()), note=str(e)))
            continue
        sizes = np.sort(g.n_params.unique())
        fitted_sizes = [n for n in sizes if n not in held_sizes]
        if proto.train_models:
            fitted_sizes = fitted_sizes[:proto.train_models]
        base = dict(variant=variant, protocol=proto.name, n_sizes=len(sizes))
        if not held_sizes:
            rows.append(dict(base, note=f"{len(sizes)} size(s): holding out {proto.n_held_out} leaves none to fit"))
            continue
        if len(fitted_sizes) < cls.min_sizes:
            rows.append(dict(base, note=f"{len(fitted_sizes)} size(s) to fit after holding out {proto.n_held_out}; "
                                        f"the {fit.law} law needs {cls.min_sizes}"))
            continue
        train = _first_part(raw[raw.n_params.isin(fitted_sizes)], proto.train_fraction)
        small = final_points(train)
        per_size = small.groupby("n_params").value
        means = per_size.mean()
        points = checkpoints(train, proto.drop_fraction) if cls.covariates else small
        try:
            law = cls().fit(points, **covariates_of(points, cls))
        except FitError as e:
            rows.append(dict(base, note=f"the {fit.law} law cannot be fitted: {e}"))
            continue
        naive = dict(best_small=float(means.min()), last_point=float(means.loc[fitted_sizes[-1]]))
        ares: dict[str, list[float]] = {k: [] for k in ("law", *naive)}
        preds: dict[str, list[float]] = {k: [] for k in ares}
        actuals = []
        for n in held_sizes:
            target = _targets(raw[raw.n_params == n], proto)
            pred = law.predict(target.n_params.to_numpy(float), **covariates_of(target, cls))
            actual = target.value.to_numpy(float)
            if proto.target == "last_fraction":  # point by point
                ares["law"].append(float(np.mean(np.abs(pred - actual) / actual)))
                for k, c in naive.items():
                    ares[k].append(float(np.mean(np.abs(c - actual) / actual)))
            else:  # the seeds' mean, as the paper's target
                a = float(actual.mean())
                ares["law"].append(abs(float(pred.mean()) - a) / a)
                for k, c in naive.items():
                    ares[k].append(abs(c - a) / a)
            preds["law"].append(float(pred.mean()))
            for k, c in naive.items():
                preds[k].append(c)
            actuals.append(float(actual.mean()))
        spread = (per_size.std(ddof=1) / means).dropna()
        row = dict(base, target_n=float(held_sizes[-1]) if len(held_sizes) == 1 else
                   ",".join(f"{n:g}" for n in held_sizes), actual=float(np.mean(actuals)),
                   n_target_points=int(sum(len(_targets(raw[raw.n_params == n], proto)) for n in held_sizes)),
                   seed_spread=float(spread.mean()) if len(spread) else float("nan"), note="")
        for name in ares:
            row[f"{name}_pred"] = float(np.mean(preds[name]))
            row[f"{name}_are"] = float(np.mean(ares[name]))
        row["law_beats_baselines"] = bool(row["law_are"] < min(row["best_small_are"], row["last_point_are"]))
        rows.append(row)
    return pd.DataFrame(rows)


def mean_over_variants(bt: pd.DataFrame) -> dict:
    """The AREs of a `backtest` averaged over its variants (families) that could be scored."""
    ok = bt[bt.note == ""] if "note" in bt else bt
    return {k: float(ok[k].mean()) for k in ("law_are", "best_small_are", "last_point_are") if k in ok} | \
        dict(n_variants=int(len(ok)))


def _held_sizes(raw: pd.DataFrame, proto) -> list[float]:
    """The sizes a protocol holds out, ascending: the largest by N, or by compute (N x the tokens of
    the size's longest run)."""
    if proto.holdout == "compute":
        if "tokens" not in raw:
            raise FitError(f"protocol {proto.name}: holdout by compute needs a tokens column")
        compute = (raw.n_params * raw.tokens).groupby(raw.n_params).max().sort_values()
        order = list(compute.index)
    else:
        order = sorted(raw.n_params.unique())
    if len(order) <= proto.n_held_out:
        return []
    return sorted(order[-proto.n_held_out:])


def _progress(run: pd.DataFrame) -> pd.Series:
    """How far into its run each checkpoint is, 0..1: by tokens, else by step."""
    x = run.tokens if "tokens" in run else run.step
    return x / x.max()


def _first_part(rows: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Each run's checkpoints up to `fraction` of its tokens (or steps); whole runs when 1 or no step."""
    if fraction >= 1 or "step" not in rows:
        return rows
    keep = [run[_progress(run) <= fraction + 1e-12] for _, run in rows.groupby(["variant", "n_params", "seed"])]
    keep = [k for k in keep if len(k)]
    if not keep:
        raise FitError(f"train_fraction {fraction} leaves no checkpoint of any training run")
    return pd.concat(keep)


def _targets(rows: pd.DataFrame, proto) -> pd.DataFrame:
    """The target points of one held-out size's runs: each run's best or final checkpoint, or its
    checkpoints in the last `target_fraction` of its tokens (or steps)."""
    if "step" not in rows:
        return rows
    runs = rows.groupby(["variant", "n_params", "seed"])
    if proto.target == "best":
        return final_points(rows)
    if proto.target == "final":
        return rows.loc[runs.step.idxmax()]
    out = [run[_progress(run) >= 1 - proto.target_fraction - 1e-12] for _, run in runs]
    return pd.concat(out)


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
