"""Control panels for JupyterLab: pick the family, sizes (with N), seeds, objective and tasks,
then run with live progress and a plot that redraws as each size finishes.

    panel = SweepPanel(profile="smoke", root="runs", layers=[1, 2]); panel   # displays itself
    panel.params()              # the same names and values as the notebook's parameters cell
    panel.papermill_command()   # the batch equivalent of what is selected

The panels only gather parameters and call the library (`notebook.sweep_config`, `pretrain`,
`run_finetune_study`); they hold no experiment logic.
"""

from __future__ import annotations

import shlex
import traceback

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import display

from workbench.config import ExecConfig, WorkbenchError
from workbench.family import FAMILIES
from workbench.notebook import finetune_config, size_labels, sweep_config


class _Panel:
    notebook = ""

    def __init__(self, family: str, layers, seeds: int, objective: str):
        self.family = W.Dropdown(options=sorted(set(FAMILIES) - {"bert-base"} | {family}), value=family,
                                 description="family")
        self.sizes = W.SelectMultiple(description="sizes", rows=6, layout=W.Layout(width="320px"))
        self._fill_sizes(layers)
        self.family.observe(lambda _: self._fill_sizes([]), "value")
        self.seeds = W.BoundedIntText(value=seeds, min=1, max=20, description="seeds")
        self.objective = W.ToggleButtons(options=["mlm", "pmi"], value=objective, description="objective")
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.run_button.on_click(lambda _: self.run())
        self.status = W.HTML()
        self.command = W.Textarea(layout=W.Layout(width="100%", height="60px"), disabled=True)
        self.progress = W.Output()
        self.plot = W.Output()
        for w in self._controls():
            w.observe(lambda _: self._show_command(), "value")

    def _fill_sizes(self, layers) -> None:
        t = size_labels(self.family.value)
        self.sizes.options = [(r.label, int(r.n_layers)) for r in t.itertuples()]
        self.sizes.value = tuple(n for n in layers if n in set(t.n_layers)) or tuple(t.n_layers[:2])

    def _controls(self) -> list:
        return [self.family, self.sizes, self.seeds, self.objective]

    def _ipython_display_(self) -> None:
        self._show_command()
        display(W.VBox([W.HBox([W.VBox([self.family, self.seeds, self.objective]), self.sizes, *self._extra()]),
                        W.HBox([self.run_button, self.status]), self.command, self.progress, self.plot]))

    def _extra(self) -> list:
        return []

    def papermill_command(self) -> str:
        args = " ".join(f"-p {k} {shlex.quote(str(v))}" if not isinstance(v, (list, bool))
                        else f"-y {shlex.quote(f'{k}: {v}')}" for k, v in self.params().items())
        return f"papermill notebooks/{self.notebook}.ipynb out.ipynb {args}"

    def _show_command(self) -> None:
        self.command.value = self.papermill_command()

    def run(self) -> None:
        """Run what is selected; errors show in the panel and never kill the kernel."""
        self.run_button.disabled = True
        self.progress.clear_output()
        try:
            self.status.value = "<b>running...</b>"
            with self.progress:
                self._run()
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
    """Pretraining sweep: each size runs in turn; the loss-vs-N plot redraws after each."""

    notebook = "sweep"

    def __init__(self, profile: str = "smoke", root: str = "runs", family: str = "ar32", layers=(1, 2),
                 seeds: int = 1, objective: str = "mlm", max_steps: int = 0):
        self.profile, self.root = profile, root
        self.max_steps = W.IntText(value=max_steps, description="max steps")
        super().__init__(family, layers, seeds, objective)

    def _controls(self) -> list:
        return super()._controls() + [self.max_steps]

    def _extra(self) -> list:
        return [W.VBox([self.max_steps, W.HTML("<small>0 = the profile's horizon</small>")])]

    def params(self) -> dict:
        return dict(profile=self.profile, family=self.family.value, layers=list(self.sizes.value),
                    seeds=self.seeds.value, objective=self.objective.value, max_steps=self.max_steps.value,
                    root=self.root)

    def _run(self) -> None:
        from workbench.data import prepare_data
        from workbench.fit import runs_table
        from workbench.plots import plot_fit
        from workbench.pretrain import pretrain, run_id
        from workbench.runs import load_runs

        p = self.params()
        cfg = sweep_config(p["profile"], p["family"], p["layers"], p["seeds"], p["objective"], p["max_steps"])
        data = prepare_data(cfg.data)
        runs = cfg.runs()
        ids = {run_id(r) for r in runs}
        for i, r in enumerate(runs, 1):
            self.status.value = f"<b>running</b> {run_id(r)} ({i}/{len(runs)})"
            pretrain(r, self.root, ExecConfig(progress=True), data)
            df = load_runs(self.root)
            table = runs_table(df[df.run_id.isin(ids)])
            if table.n_params.nunique() >= 2:
                self._show(plot_fit(table, title=f"{p['family']} {p['objective']}: best eval loss", B=200))


class FinetunePanel(_Panel):
    """Finetuning study: tasks x sizes with the per-size grid; the 1 - metric plot redraws per size."""

    notebook = "finetune"

    def __init__(self, tasks=("trec",), pretrain_root: str = "runs", root: str = "runs", family: str = "ar32",
                 layers=(1, 2), seeds: int = 2, objective: str = "mlm", lrs=(1e-3,), epochs=(2,),
                 max_train: int = 500, max_eval: int = 200):
        from workbench.tasks import REGISTRY

        self.pretrain_root, self.root = pretrain_root, root
        self.lrs, self.epochs, self.max_train, self.max_eval = list(lrs), list(epochs), max_train, max_eval
        self.tasks = W.SelectMultiple(options=sorted(REGISTRY), value=tuple(tasks), description="tasks", rows=8)
        super().__init__(family, layers, seeds, objective)

    def _controls(self) -> list:
        return super()._controls() + [self.tasks]

    def _extra(self) -> list:
        return [self.tasks]

    def params(self) -> dict:
        return dict(tasks=list(self.tasks.value), pretrain_root=self.pretrain_root, root=self.root,
                    family=self.family.value, layers=list(self.sizes.value), seeds=self.seeds.value,
                    objective=self.objective.value, lrs=self.lrs, epochs=self.epochs, max_train=self.max_train,
                    max_eval=self.max_eval)

    def _run(self) -> None:
        import pandas as pd

        from workbench.plots import plot_comparison, plot_fit
        from workbench.study import finetune_table, run_finetune_study

        p = self.params()
        tables = []
        for n in p["layers"]:
            self.status.value = f"<b>finetuning</b> L{n}"
            cfg = finetune_config(p["tasks"], p["pretrain_root"], p["family"], [n], p["seeds"], p["lrs"],
                                  p["epochs"], objective=p["objective"], max_train=p["max_train"],
                                  max_eval=p["max_eval"])
            tables.append(finetune_table(run_finetune_study(cfg, p["root"], ExecConfig(progress=True))))
            table = pd.concat(tables)
            if table.n_params.nunique() >= 2:
                plot = plot_comparison if table.variant.nunique() > 1 else plot_fit
                self._show(plot(table, ylabel="1 - metric", title="finetuning", B=200))
