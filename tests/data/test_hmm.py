"""The generated language: its sampler follows its tables, and its floor is the Bayes loss, checked
against brute-force enumeration of every hidden word sequence."""

import hashlib
import itertools
from dataclasses import asdict, replace

import numpy as np
import pytest

from workbench.base.errors import WorkbenchError
from workbench.data.sources.hmm import SOURCE, VERSION, HMMSource

PAD, UNK, CLS, SEP, MASK = range(5)


def test_sampler_follows_its_tables():
    src = HMMSource(n_states=4, n_words=12, out_degree=2, per_state=3, n_tokens=60_000, doc_len=(50, 100), seed=3)
    start, trans, emit = src.params
    assert np.allclose(start @ trans, start)  # stationary: every position of a cut block is distributed as the first
    assert ((trans > 0).sum(1) == 2).all() and ((emit > 0).sum(1) == 3).all()
    docs = src.documents()
    assert src.documents()[5].text == docs[5].text  # seeded
    assert 50 <= min(len(d.text.split()) for d in docs) and max(len(d.text.split()) for d in docs) <= 100
    words = np.concatenate([[int(w[1:]) for w in d.text.split()] for d in docs])
    assert ((emit > 0).sum(0) <= 1).all()  # each state its own words: a word names its state
    freq = np.bincount(words, minlength=12) / len(words)
    assert np.allclose(freq, start @ emit, atol=0.01)  # word frequencies: the stationary mix of emissions
    assert src.fingerprint() != replace(src, seed=4).fingerprint()


def test_a_state_that_stays():
    """With `stay`, the chain keeps its state with that probability on top of its successors: the
    sampled state sequence (each state its own words here) follows the mixed table, self-moves included."""
    src = HMMSource(n_states=5, n_words=10, out_degree=3, per_state=2, stay=0.6, n_tokens=200_000,
                    doc_len=(100, 200), seed=1)
    start, trans, emit = src.params
    assert np.allclose(trans.sum(1), 1) and (np.diag(trans) >= 0.6).all() and np.allclose(start @ trans, start)
    assert ((trans > 0).sum(1) >= 3).all()
    state_of = emit.argmax(0)  # a word names its state
    counts = np.zeros((5, 5))
    for doc in src.sample(400, np.random.default_rng(0)):
        z = state_of[doc]
        np.add.at(counts, (z[:-1], z[1:]), 1)
    assert np.allclose(counts / counts.sum(1, keepdims=True), trans, atol=0.02)
    assert src.fingerprint() != replace(src, stay=0.5).fingerprint()
    # a source without `stay` keeps the key it had before the field existed: its runs and caches stay found
    plain = {k: v for k, v in asdict(SOURCE).items() if k != "stay"}
    assert SOURCE.fingerprint() == hashlib.sha256(f"{VERSION}|{plain}|numpy {np.__version__}".encode()).hexdigest()[:16]
    with pytest.raises(WorkbenchError, match="stay"):
        replace(src, stay=1.0)


def test_topics_is_a_registered_language_with_a_floor():
    from workbench.data.floor import floor_source
    from workbench.data.sources.hmm import TOPICS

    assert floor_source("hmm-topics") is TOPICS and TOPICS.stay > 0 and TOPICS.shared_words


def _brute_force(src, ids, positions, labels, vocab, q, word_id):
    """-log p(x_i | shown tokens) by summing over every word sequence of every segment."""
    start, trans, emit = src.params
    n_words = emit.shape[1]
    tok_of = {s: word_id + s for s in range(n_words)}

    def shown_given(o, x, selected):
        keep = float(o == tok_of[x])
        if selected:
            return 0.8 * (o == MASK) + 0.1 * keep + 0.1 / vocab
        return (1 - q) * keep + q * (0.8 * (o == MASK) + 0.1 * keep + 0.1 / vocab)

    losses = []
    for row, pos in zip(ids, positions):
        body = list(range(1, len(row) - 1))
        segments, cur = [], []
        for k in body:
            if row[k] == SEP:
                segments.append(cur)
                cur = []
            else:
                cur.append(k)
        segments.append(cur)
        for i in np.nonzero(pos)[0]:
            seg = next(s for s in segments if i in s)
            post = np.zeros(n_words)
            for xs in itertools.product(range(n_words), repeat=len(seg)):
                # p(words) by the forward sum over hidden states, from the stationary start
                a = start * emit[:, xs[0]]
                for x in xs[1:]:
                    a = (a @ trans) * emit[:, x]
                p = a.sum()
                for k, x in zip(seg, xs):
                    p *= shown_given(row[k], x, selected=(k == i))
                post[xs[seg.index(i)]] += p
            losses.append(post)
    return losses


@pytest.mark.parametrize("stay", [0.0, 0.5])
def test_floor_is_the_bayes_loss_by_enumeration(stay):
    src = HMMSource(n_states=3, n_words=4, out_degree=2, per_state=2, zipf=1.0, shared_words=True, seed=0, stay=stay)
    start, trans, _ = src.params
    # a process where context matters: every state reachable, and the chain remembers (second eigenvalue)
    assert start.min() > 0.1 and sorted(np.abs(np.linalg.eigvals(trans)))[-2] > 0.3
    word_id, vocab, q = 5, 12, 0.15  # ids 9..11 are tokens of the vocabulary that are no word
    rng = np.random.default_rng(0)
    a, b, c = (word_id + d for d in src.sample(3, rng))  # three documents of the language, as token ids
    # [CLS] w w [SEP] w w w [SEP]: a document boundary inside, [MASK]s, a random non-word token (10),
    # kept words and a word shown as another (a random replacement)
    rows = np.array([[CLS, a[0], a[1], SEP, b[0], b[1], b[2], SEP],
                     [CLS, c[0], c[1], c[2], c[3], c[4], c[5], SEP]])
    ids = rows.copy()
    ids[0, [1, 6]] = MASK
    ids[0, 5] = 10
    ids[1, [2, 5]] = MASK
    ids[1, 1] = word_id + (c[1] - word_id + 1) % 4
    positions = np.array([[0, 1, 0, 0, 1, 1, 1, 0],
                          [0, 1, 1, 0, 0, 1, 0, 0]], dtype=bool)  # row 0 position 4: selected and kept
    labels = rows[positions] - word_id
    symbol_of = {word_id + s: s for s in range(4)}
    mean, per = src.mlm_floor(ids, positions, labels + word_id, symbol_of, vocab, q, MASK, SEP)
    posts = _brute_force(src, ids, positions, labels, vocab, q, word_id)
    expected = np.array([-np.log(p[y] / p.sum()) for p, y in zip(posts, labels)])
    assert np.allclose(per, expected, rtol=1e-9)
    assert mean == pytest.approx(expected.mean())
    assert np.isfinite(per).all()
    # and the context changed the answer: without it, a masked word's loss would be its marginal's
    marginal = start @ src.params[2]
    assert not np.allclose(per[[0, 2]], -np.log(marginal[labels[[0, 2]]] * 0.8 / (marginal * 0.8).sum()))


def test_floor_refuses_labels_that_are_not_words():
    src = HMMSource(n_states=3, n_words=4, out_degree=2, per_state=2, shared_words=True)
    ids = np.array([[CLS, MASK, SEP]])
    with pytest.raises(WorkbenchError, match="not a word"):
        src.mlm_floor(ids, np.array([[0, 1, 0]], bool), np.array([11]), {5: 0, 6: 1}, 12, 0.15, MASK, SEP)


def test_bad_shapes_are_refused():
    with pytest.raises(WorkbenchError, match="out_degree"):
        replace(SOURCE, out_degree=1)
    with pytest.raises(WorkbenchError, match="shared_words"):
        replace(SOURCE, n_words=SOURCE.n_states)
    with pytest.raises(WorkbenchError, match="doc_len"):
        replace(SOURCE, doc_len=(10, 5))
