"""The foundation every other part stands on, importing nothing above it: errors, the extension
registries, atomic files, data paths, progress bars, the model family table (shapes, exact
parameter and FLOP counts), the names of a run folder's files and its metrics log, and the
convergence rules (early stopping, the converged verdict, the learning-curve forecast).

    from workbench.base.family import model_spec       # ar32 L4 -> hidden 128, N = 786,432
"""
