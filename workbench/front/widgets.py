"""Control panels for JupyterLab: pick the family, sizes (with N), seeds, objective and tasks,
then run with live progress and a plot that redraws as each run finishes.

    panel = SweepPanel(profile="smoke", layers=[1, 2]); panel   # displays itself
    panel.params()              # the same names and values as the notebook's parameters cell
    panel.papermill_command()   # the batch equivalent of what is selected

The panels only gather parameters and call the library (`load_study`, `sweep_table`,
`finetune_tables`, with a callback per finished run); they hold no experiment logic.
"""

from __future__ import annotations

import json
import shlex
import traceback

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display

from workbench.base.errors import WorkbenchError
from workbench.base.family import FAMILIES
from workbench.base.registry import OBJECTIVES
from workbench.config import load
from workbench.front.params import load_study, size_labels


class _Panel:
    notebook = ""

    def __init__(self, profile: str, overrides, layers):
        self.profile, self.overrides = profile, list(overrides)
        self.base = base = load(profile, overrides)
        family = base.sweep.family
        self.family = W.Dropdown(options=sorted(set(FAMILIES) - {"bert-base"} | {family}), value=family,
                                 description="family")
        self.sizes = W.SelectMultiple(description="sizes", rows=6, layout=W.Layout(width="320px"))
        self._fill_sizes(layers)
        self.family.observe(lambda _: self._fill_sizes([]), "value")
        self.seeds = W.BoundedIntText(value=len(base.sweep.seeds), min=1, max=20, description="seeds")
        self.objective = W.ToggleButtons(options=list(OBJECTIVES), value=base.sweep.train.objective,
                                         description="objective")
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.run_button.on_click(lambda _: self.run())
        self.status = W.HTML()
        self.command = W.Textarea(layout=W.Layout(width="100%", height="60px"), disabled=True)
        self.progress = W.Output()
        self.plot = W.Output()

    def _watch(self) -> None:
        for w in self._controls():
            w.observe(lambda _: self._show_command(), "value")

    def _fill_sizes(self, layers) -> None:
        t = size_labels(self.family.value)
        self.sizes.options = [(r.label, int(r.n_layers)) for r in t.itertuples()]
        self.sizes.value = tuple(n for n in layers if n in set(t.n_layers)) or tuple(t.n_layers[:2])

    def _controls(self) -> list:
        return [self.family, self.sizes, self.seeds, self.objective]

    def _overrides(self) -> list[str]:
        """The profile's overrides plus what the controls changed, as `--set` strings."""
        return self.overrides + [f"sweep.family={self.family.value}",
                                 f"sweep.seeds={list(range(self.seeds.value))}",
                                 f"sweep.train.objective={self.objective.value}"]

    def _ipython_display_(self) -> None:
        self._show_command()
        display(W.VBox([W.HBox([W.VBox([self.family, self.seeds, self.objective]), self.sizes, *self._extra()]),
                        W.HBox([self.run_button, self.status]), self.command, self.progress, self.plot]))

    def _extra(self) -> list:
        return []

    def papermill_command(self) -> str:
        # lists and flags as YAML in JSON spelling (double quotes inside), so a shell needs one pair of
        # single quotes around them and the command reads as typed: -y 'overrides: ["sweep.family=ar32"]'
        args = " ".join(f"-p {k} {shlex.quote(str(v))}" if not isinstance(v, (list, bool, dict))
                        else f"-y {shlex.quote(f'{k}: {json.dumps(v)}')}" for k, v in self.params().items())
        return f"papermill notebooks/{self.notebook}.ipynb out.ipynb {args}"

    def _show_command(self) -> None:
        self.command.value = self.papermill_command()

    def study(self):
        p = self.params()
        return load_study(p["profile"], p["overrides"], **{k: v for k, v in p.items() if k not in ("profile", "overrides")})

    def run(self) -> None:
        """Run what is selected; errors show in the panel and never kill the kernel."""
        self.run_button.disabled = True
        self.progress.clear_output()
        try:
            self.status.value = "<b>running...</b>"
            with self.progress:
                self._run(self.study())
            self.status.value = "<b style='color:green'>done</b>"
        except WorkbenchError as e:
            self.status.value = f"<b style='color:crimson'>error:</b> {e}"
        except Exception:  # noqa: BLE001 - shown, not raised: the panel stays usable
            self.status.value = "<b style='color:crimson'>failed</b> (traceback below)"
            with self.progress:
                traceback.print_exc()
        finally:
            self.run_button.disabled = False

    def _show(self, fig) -> None:
        with self.plot:
            self.plot.clear_output(wait=True)
            display(fig)
        plt.close(fig)


class SweepPanel(_Panel):
    """Pretraining sweep: the loss-vs-N plot redraws as each run finishes."""

    notebook = "sweep"

    def __init__(self, profile: str = "smoke", overrides=(), layers=(1, 2)):
        super().__init__(profile, overrides, layers)
        self.max_steps = W.IntText(value=self.base.sweep.train.max_steps, description="max steps")
        self._watch()
        self.max_steps.observe(lambda _: self._show_command(), "value")

    def _extra(self) -> list:
        return [W.VBox([self.max_steps, W.HTML("<small>the step horizon of every run</small>")])]

    def params(self) -> dict:
        return dict(profile=self.profile, overrides=self._overrides() + [f"sweep.train.max_steps={self.max_steps.value}"],
                    layers=list(self.sizes.value))

    def _run(self, study) -> None:
        import dataclasses

        from workbench.front.glue import sweep_table
        from workbench.front.plots import plot_fit
        from workbench.laws.report import law_report
        from workbench.runs.pretrain import run_id
        from workbench.runs.tables import law_table, load_runs

        ids = {run_id(r) for r in study.sweep.runs()}
        fit = dataclasses.replace(study.fit, n_held_out=0)

        def redraw(outcome) -> None:
            self.status.value = f"<b>finished</b> {outcome.run_id} ({outcome.status})"
            df = load_runs(study.root)
            table = law_table(df[df.run_id.isin(ids)])
            if table.n_params.nunique() >= 2:
                self._show(plot_fit(law_report(table, fit), title=f"{study.sweep.label}: best eval loss"))

        sweep_table(study.sweep, study.root, study.exec, on_done=redraw)


class FinetunePanel(_Panel):
    """Finetuning study: tasks x sizes with the per-size grid; the 1 - metric plot redraws per size."""

    notebook = "finetune"

    def __init__(self, profile: str = "smoke", overrides=(), tasks=("trec",), layers=(1, 2)):
        from workbench.tasks.catalogue import REGISTRY

        super().__init__(profile, overrides, layers)
        self.tasks = W.SelectMultiple(options=sorted(REGISTRY), value=tuple(tasks), description="tasks", rows=8)
        self._watch()

    def _extra(self) -> list:
        return [self.tasks]

    def params(self) -> dict:
        return dict(profile=self.profile, overrides=self._overrides() + [f"sweep.layers={list(self.sizes.value)}"],
                    tasks=list(self.tasks.value))

    def _run(self, study) -> None:
        import dataclasses

        from workbench.front.glue import finetune_tables
        from workbench.front.plots import plot_laws
        from workbench.laws.report import law_report

        fit = dataclasses.replace(study.fit, n_held_out=0)
        for n in sorted(study.sweep.layers):  # one size at a time, so the plot grows as sizes finish
            self.status.value = f"<b>finetuning</b> L{n}"
            sweep = dataclasses.replace(study.sweep, layers=tuple(m for m in study.sweep.layers if m <= n))
            table = finetune_tables(study, {sweep.label: sweep}, study.finetune.tasks)
            if table.attrs["unavailable"]:  # one line per task whose data cannot be had
                self.status.value = "<br>".join(table.attrs["unavailable"].values())
            if table.n_params.nunique() >= 2:
                self._show(plot_laws({t: law_report(rows, fit, metric=True).curve for t, rows in table.groupby("task")},
                                     ylabel="1 - metric", title="finetuning"))
