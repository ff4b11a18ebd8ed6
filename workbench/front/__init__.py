"""What people touch: the command line, the notebooks' glue and closing text, plots, widgets, the
papermill runner of a study's notebooks and its summary.

    workbench notebooks --profile cpu                             # workbench.front.cli
"""
