"""A generated language with a known floor: text sampled from a seeded hidden Markov model.

    docs = SOURCE.documents()        # "w17 w3 w250 ...": one word per emitted symbol
    mean, per_label = SOURCE.mlm_floor(input_ids, positions, labels, symbol_of, vocab_size, mask_prob,
                                       mask_id, sep_id)   # nats per masked token
    eval_loss_floor(data, batch, mask_prob)   # the same for a prepared corpus (`workbench.data.floor`)

The method alone (laws, convergence, certificates) on data that never runs short: the corpus is as
large as asked, with nothing to overfit, and the lowest MLM loss any model can reach on it, the
Bayes loss of the generating process, is computed exactly (forward-backward) for the very masks a
run is evaluated with. So a study on it can set the law's asymptote against the truth, and a curve
that stops far above the floor is plainly not done. It is not English: no finetuning task runs on it.

The process. `n_states` hidden states; each state moves to `out_degree` successors, drawn by a Zipf
law over the states (so some states are frequent and most are rare), with Zipf-like probabilities,
and emits one of `per_state` words of its own (a word names its state), or with `shared_words` one
of `per_state` words drawn by a global Zipf law over `n_words` (frequent words then are ambiguous
between states). With `stay` a state is kept for the next word with that probability (a topic that
persists for 1 / (1 - stay) words on average, longer where it is its own successor too), else it
moves to a successor; the chain starts each document in its stationary distribution, so every
position of a cut block is distributed as the first.
Documents are `doc_len` words long (uniform range) and named `hmm/<index>`.

The floor. MLM (`data.masking.mlm_mask`) selects each word with probability q and shows it as
[MASK] (80%), a uniform random token of the whole vocabulary (10%) or itself (10%). Every shown
token is then a noisy observation of its word: p(o=v|x) = (1-q)[v=x] + q(0.1[v=x] + 0.1/V),
p(o=[MASK]|x) = 0.8q (+ 0.1q/V). For a selected position i the Bayes prediction is
p(x_i | o) ~ p(x_i | o_-i) (0.8[o_i=MASK] + 0.1[o_i=x_i] + 0.1/V), with p(x_i | o_-i) from the
forward and backward messages around i. An observed [SEP] restarts the chain (a document boundary);
a random replacement that is itself [SEP] (probability q/(10V) per position) is read as a boundary,
the one approximation. The floor is the Bayes loss in expectation over the process: on a finite
eval set a model's measured loss can sit a little below it by chance, never far.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from workbench.base.errors import WorkbenchError
from workbench.data.corpus import Document

VERSION = 1  # bump when the sampler changes what it writes
ROWS = 64  # blocks per forward-backward pass of the floor (memory: 3 x ROWS x seq_len x n_states floats)


@dataclass(frozen=True)
class HMMSource:
    name: str = "hmm"
    n_states: int = 512
    n_words: int = 1024
    out_degree: int = 8
    per_state: int = 2
    zipf: float = 1.1  # exponent of the global word law and of the successor probabilities
    n_tokens: int = 24_000_000  # words in all (train and held-out documents)
    doc_len: tuple[int, int] = (64, 512)
    shared_words: bool = False  # False: each state emits its own words (needs n_words >= n_states * per_state)
    stay: float = 0.0  # probability of staying in the state (a topic that persists), else a move to a successor
    seed: int = 0

    def __post_init__(self) -> None:
        if not (2 <= self.out_degree <= self.n_states and 1 <= self.per_state <= self.n_words) or (
                not self.shared_words and self.n_states * self.per_state > self.n_words) or not (
                1 <= self.doc_len[0] <= self.doc_len[1] and self.n_tokens >= 2 * self.doc_len[1]) or not (
                0 <= self.stay < 1):
            raise WorkbenchError(f"hmm source: need 2 <= out_degree <= n_states, 1 <= per_state <= n_words "
                                 f"and, unless shared_words, n_states * per_state <= n_words; 1 <= doc_len[0] <= "
                                 f"doc_len[1] and n_tokens >= 2 * doc_len[1]; 0 <= stay < 1; "
                                 f"got {self}")

    # -- the process ---------------------------------------------------------------------------------
    @cached_property
    def params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, transition, emission): (H,), (H, H) and (H, n_words) probability tables."""
        rng = np.random.default_rng([self.seed, 1])
        h, w = self.n_states, self.n_words
        ranks = np.arange(1, max(self.out_degree, self.per_state) + 1, dtype=float)
        state_law = np.arange(1, h + 1, dtype=float) ** -self.zipf  # successors favour low-numbered states
        state_law /= state_law.sum()
        trans = np.zeros((h, h))
        for z in range(h):
            succ = rng.choice(h, self.out_degree, replace=False, p=state_law)
            trans[z, succ] = rng.permutation(ranks[: self.out_degree] ** -self.zipf)
        trans /= trans.sum(1, keepdims=True)
        trans = (1 - self.stay) * trans + self.stay * np.eye(h)
        emit = np.zeros((h, w))
        if self.shared_words:  # words drawn by a global Zipf law: frequent words are ambiguous between states
            word_law = np.arange(1, w + 1, dtype=float) ** -self.zipf
            word_law /= word_law.sum()
            for z in range(h):
                words = rng.choice(w, self.per_state, replace=False, p=word_law)
                emit[z, words] = rng.dirichlet(np.ones(self.per_state))
        else:  # each state its own words: a word names its state
            for z, words in enumerate(rng.permutation(w)[: h * self.per_state].reshape(h, self.per_state)):
                emit[z, words] = rng.dirichlet(np.ones(self.per_state))
        emit /= emit.sum(1, keepdims=True)
        vals, vecs = np.linalg.eig(trans.T)  # the stationary distribution: left eigenvector of eigenvalue 1
        start = np.abs(np.real(vecs[:, np.argmin(np.abs(vals - 1))]))
        return start / start.sum(), trans, emit

    def words(self) -> list[str]:
        return [f"w{i}" for i in range(self.n_words)]

    def sample(self, n_docs: int, rng: np.random.Generator) -> list[np.ndarray]:
        """`n_docs` documents as arrays of word indices."""
        start, trans, emit = self.params
        lengths = rng.integers(self.doc_len[0], self.doc_len[1] + 1, n_docs)
        t_max = int(lengths.max())
        states = np.empty((n_docs, t_max), dtype=np.int32)
        states[:, 0] = _draw(np.cumsum(start)[None, :].repeat(n_docs, 0), rng)
        # each state's successors (itself too, with `stay`) and their cumulative law
        succ = np.argsort(-trans, 1)[:, : self.out_degree + (self.stay > 0)]
        succ_cum = np.cumsum(np.take_along_axis(trans, succ, 1), 1)
        for t in range(1, t_max):
            z = states[:, t - 1]
            states[:, t] = succ[z, _draw(succ_cum[z], rng)]
        out = np.argsort(-emit, 1)[:, : self.per_state]
        out_cum = np.cumsum(np.take_along_axis(emit, out, 1), 1)
        flat = states.ravel()
        symbols = out[flat, _draw(out_cum[flat], rng)].reshape(states.shape)
        return [symbols[i, : lengths[i]] for i in range(n_docs)]

    def documents(self) -> list[Document]:
        rng = np.random.default_rng([self.seed, 2])
        mean_len = (self.doc_len[0] + self.doc_len[1]) / 2
        n_docs = max(2, int(round(self.n_tokens / mean_len)))
        names = np.asarray(self.words())
        docs, done = [], 0
        while done < n_docs:  # in chunks, to bound memory
            chunk = min(20_000, n_docs - done)
            docs += [Document(f"hmm/{done + i:07d}", " ".join(names[d])) for i, d in enumerate(self.sample(chunk, rng))]
            done += chunk
        return docs

    def fingerprint(self) -> str:
        """Keys the prepared corpus: every parameter, the sampler's version and numpy's (whose samplers
        draw the tables; the floor recomputes them, so they must be the ones that wrote the data). A
        source without `stay` keys as it did before the field existed (it writes the same words)."""
        params = {k: v for k, v in asdict(self).items() if k != "stay" or v}
        return hashlib.sha256(f"{VERSION}|{params}|numpy {np.__version__}".encode()).hexdigest()[:16]

    # -- the floor ----------------------------------------------------------------------------------------
    def mlm_floor(self, input_ids: np.ndarray, positions: np.ndarray, labels: np.ndarray, symbol_of: dict[int, int],
                  vocab_size: int, mask_prob: float, mask_id: int, sep_id: int) -> tuple[float, np.ndarray]:
        """(mean, per-label) Bayes loss in nats of the masked batch (`masking.MaskedBatch` as arrays).

        `symbol_of` maps each word's token id to its symbol; a label that is not a word is an error."""
        q, v = mask_prob, vocab_size
        ids = np.asarray(input_ids, dtype=np.int64)
        pos = np.asarray(positions, dtype=bool)
        lut = np.full(max(v, ids.max() + 1), -1, dtype=np.int64)
        for tok, s in symbol_of.items():
            lut[tok] = s
        obs = lut[ids]  # symbol shown, or -1
        lab = lut[np.asarray(labels, dtype=np.int64)]
        if (lab < 0).any():
            raise WorkbenchError("hmm floor: a masked label is not a word of the generated language "
                                 "(the tokenizer split a word, or the blocks are not of this source)")
        per_row = pos.sum(1)
        cuts = np.concatenate([[0], np.cumsum(per_row)])
        loss = np.concatenate([self._floor_rows(ids[i:i + ROWS], pos[i:i + ROWS], obs[i:i + ROWS],
                                                lab[cuts[i]:cuts[min(i + ROWS, len(ids))]], q, v, mask_id, sep_id)
                               for i in range(0, len(ids), ROWS)])
        return float(loss.mean()), loss

    def _floor_rows(self, ids, pos, obs, lab, q, v, mask_id, sep_id) -> np.ndarray:
        """Bayes losses of the selected positions of some rows (in row order); see `mlm_floor`."""
        start, trans, emit = self.params
        n, t = ids.shape
        h = len(start)
        # per-position likelihood of what is shown, for each hidden state (emission through the noise)
        shown = np.where(obs[..., None] >= 0, emit.T[np.maximum(obs, 0)] * (1 - q + 0.1 * q), 0.0)
        like = shown + 0.1 * q / v + np.where(ids == mask_id, 0.8 * q, 0.0)[..., None]
        special = (obs < 0) & (ids != mask_id)
        like[special & (ids != sep_id)] = 0.1 * q / v  # a non-word token: either a random one or [CLS]/[PAD]
        boundary = ids == sep_id
        like[boundary] = 1.0
        # scaled forward messages: pred[t] ~ p(z_t | o_<t)
        pred = np.empty((n, t, h))
        prev = None
        for k in range(t):
            restart = boundary[:, k - 1] if k else np.ones(n, bool)
            p = np.broadcast_to(start, (n, h)) if prev is None else np.where(restart[:, None], start, prev @ trans)
            pred[:, k] = p
            a = p * like[:, k]
            prev = a / a.sum(1, keepdims=True)  # p(z_t | o_<=t)
        # scaled backward messages: beta[t] ~ p(o_>t | z_t); a [SEP] at t or t+1 cuts the chain
        beta = np.ones((n, t, h))
        for k in range(t - 2, -1, -1):
            b = (beta[:, k + 1] * like[:, k + 1]) @ trans.T
            b = np.where(boundary[:, k, None] | boundary[:, k + 1, None], 1.0, b)
            beta[:, k] = b / b.sum(1, keepdims=True)
        post = pred[pos] * beta[pos]  # p(z_i | o_-i), for the selected positions in row order
        post /= post.sum(1, keepdims=True)
        word = post @ emit  # p(x_i | o_-i)
        own = np.full_like(word, 0.1 / v) + np.where(ids[pos] == mask_id, 0.8, 0.0)[:, None]
        hit = obs[pos]
        rows = np.nonzero(hit >= 0)[0]
        own[rows, hit[rows]] += 0.1  # its own observation: a kept word, or a random one that is a word
        joint = word * own
        return -np.log(joint[np.arange(len(lab)), lab] / joint.sum(1))


def _draw(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of cumulative probabilities `cum` (rows end at 1)."""
    u = rng.random(len(cum))[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(1), cum.shape[1] - 1)


SOURCE = HMMSource()
# Topics that persist (`study-hmm`): 256 states (216 reachable), each kept for the next word with
# probability 0.9 (for 10 words or more), each with 16 words drawn by a global Zipf law over 1,024
# names (673 ever emitted), so frequent words are shared and a state is read from its context; the
# tiny encoders learn much of it within thousands of steps, and the larger ones more.
TOPICS = HMMSource(name="hmm-topics", n_states=256, n_words=1024, out_degree=8, per_state=16, shared_words=True,
                   stay=0.9, n_tokens=48_000_000)
