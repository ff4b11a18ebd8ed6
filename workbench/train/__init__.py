"""Training: the shared loop (evaluation, early stopping, best and resume checkpoints), the model
and its masked-positions MLM loss, the one place that decides the device and precision, and the
stacked forward that trains runs of one shape as an ensemble. Never imports the run store.

    res = train_loop(setup, run_dir, device, precision)  # workbench.train.loop
"""
