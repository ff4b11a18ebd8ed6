"""Scaling laws, torch-free and matplotlib-free: the laws (power, saturating, joint L(N, D)), the
hierarchical bootstrap, typed reports, model selection, convergence diagnostics, the two-stage
route from task loss to metric, tables of anyone's runs and backtests.

    report = law_report(table, FitConfig(law="power"))            # workbench.laws.report
"""
