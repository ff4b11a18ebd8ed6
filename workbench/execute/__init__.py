"""Where runs execute: the executor contract, local worker processes and Ray, the sweep of a model
family and the finetuning study.

    df = run_sweep(study.sweep, study.root, study.exec)           # workbench.execute.sweep
"""
