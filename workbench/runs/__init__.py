"""Runs: the store (a self-describing folder per run, claimed by one process at a time), the one
life cycle of a run (alone or in an ensemble), the pretraining and finetuning run specs, and the
store read back as tables.

    summary = run_once(PretrainSpec(cfg), "runs", ExecConfig())   # workbench.runs.lifecycle
    df = load_runs("runs")                                        # workbench.runs.tables
"""
