"""scaling-workbench: study neural scaling laws of BERT-style Transformers from small experiments.

    from workbench import run_sweep, load_runs, SweepConfig
    df = run_sweep(load_profile("cpu"), root="runs")

Data flow: config -> family -> corpus/data -> masking/model -> train -> pretrain -> runs -> sweep.
"""

__version__ = "0.1.0"
