"""Round robin whose every pick covers: within each cluster, the member that newly represents most of its cluster,
its text least like what is already selected (`within_cluster: coverage`).

A random member of a cluster is as likely as not to sit where an earlier pick already is, and the clusters of a
router's features do not follow what the texts are about, so several clusters can give the same kind of sample.
Each pick here weighs two things:

- **coverage** (facility location, in the features the clustering used): how much closer the pick brings the
  cluster's members to their nearest pick (the gain in sum over members of max cosine to a pick). It favours
  typical members over outliers, where broken samples sit, and it is what `diversity/coverage_distance` measures;
- **novelty** (in the text), one of two (`selection.novelty`):
  - `embedding`: one minus the pick's highest cosine to any sample already selected, in any cluster, in a TF-IDF
    + truncated SVD embedding (LSA) of its prompt and answer: a second sample of a kind already selected counts
    less, whichever cluster it comes from;
  - `bigrams`: the share of the pick's distinct answer word bigrams that no sample already selected holds (hashed
    into a bit table): a pick that repeats the selection's phrasing counts less. It costs each candidate its own
    length, whatever the selection's size (the embedding's costs the whole pool per pick);
  - `both`: the product of the two.

The score is coverage x novelty. Each turn scores a random subset of the cluster's remaining members, of size
(members / quota) x ln(1 / epsilon) ("stochastic greedy", Mirzasoleiman et al., 2015: within 1 - 1/e - epsilon of
greedy in expectation), so a pick costs about the same whatever the pool's size. Coverage is measured on a seeded
sample of each cluster (`ground_size` rows over all clusters, split by size) so memory stays bounded at 270k rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GROUND_SIZE = 8192  # pool rows, over all clusters, that coverage is measured on
TEXT_DIMS = 128  # LSA components of the text embedding
TEXT_FIT_SAMPLE = 20_000  # documents the TF-IDF vocabulary and the SVD are fitted on (all of a smaller pool)
EPSILON = 0.01  # stochastic greedy's tolerance: each turn scores (members / quota) x ln(1 / epsilon) candidates
BIGRAM_BITS = 24  # the bigram novelty's table: 2^24 bits (2 MiB as bools x 8), few collisions below a million bigrams
EXACT_ROWS = 100_000  # candidates above which the order takes the large-pool path (`covering_picks`)
CELL_PICKS = 128  # the large-pool path's text cells: one per this many picks
_WORD = re.compile(r"\w+")  # words as `mygo.analysis.diversity.distinct_bigram_ratio` counts them


def unit_rows(points: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    points = np.asarray(points, dtype=np.float32).reshape(len(points), -1)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return points / np.where(norms > 0, norms, 1)


def text_embedding(texts: Sequence[str], dims: int = TEXT_DIMS, seed: int = 0) -> np.ndarray:
    """[len(texts), <= dims] unit rows: TF-IDF (sublinear, words seen in two documents or more) then truncated SVD,
    both fitted on a seeded sample of TEXT_FIT_SAMPLE texts. Texts with no known word get a zero row (novel to
    every other: nothing is known to repeat)."""
    if not len(texts):
        return np.zeros((0, 0), dtype=np.float32)
    texts = list(texts)
    embedder = TextEmbedder.fit([texts[i] for i in text_fit_rows(len(texts), seed)], dims, seed)
    return embedder.embed(texts)


def text_fit_rows(n: int, seed: int = 0) -> np.ndarray:
    """The rows `text_embedding` fits on: all of a pool of TEXT_FIT_SAMPLE or fewer, else a seeded sample."""
    if n <= TEXT_FIT_SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, TEXT_FIT_SAMPLE, replace=False))


@dataclass
class TextEmbedder:
    """`text_embedding`'s TF-IDF and SVD, fitted once and applied a block of texts at a time."""

    vectorizer: object | None  # None: the fitting texts had no word at all (every row is zero)
    svd: object | None  # None: too few words or texts for an SVD (the TF-IDF rows themselves)

    @classmethod
    def fit(cls, texts: list[str], dims: int = TEXT_DIMS, seed: int = 0) -> TextEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2 if len(texts) > 2 else 1)
        try:
            fitted = vectorizer.fit_transform(texts)
        except ValueError:  # no word at all (empty texts, or none repeated)
            return cls(None, None)
        components = min(dims, fitted.shape[1] - 1, len(texts) - 1)
        return cls(vectorizer, TruncatedSVD(components, random_state=seed).fit(fitted) if components >= 1 else None)

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.vectorizer is None:
            return np.zeros((len(texts), 1), dtype=np.float32)
        weights = self.vectorizer.transform(texts)
        return unit_rows(weights.toarray() if self.svd is None else self.svd.transform(weights))


@dataclass(frozen=True)
class Bigrams:
    """Each row's distinct word bigrams, hashed to `BIGRAM_BITS` bits: row i's are `hashes[offsets[i]:offsets[i+1]]`."""

    offsets: np.ndarray  # [n + 1] int64
    hashes: np.ndarray  # [offsets[-1]] uint32, each < 2^BIGRAM_BITS

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, rows: np.ndarray) -> Bigrams:
        starts, ends = self.offsets[rows], self.offsets[np.asarray(rows) + 1]
        return Bigrams(np.concatenate([[0], np.cumsum(ends - starts)]), self.hashes[_ranges(starts, ends)])

    @staticmethod
    def concatenate(parts: Sequence[Bigrams]) -> Bigrams:
        """The rows of `parts`, one after another."""
        shifts = np.cumsum([0] + [part.offsets[-1] for part in parts[:-1]])
        offsets = np.concatenate([[0]] + [part.offsets[1:] + shift for part, shift in zip(parts, shifts, strict=True)])
        return Bigrams(offsets.astype(np.int64), np.concatenate([part.hashes for part in parts]).astype(np.uint32))


@dataclass(frozen=True)
class TextAndBigrams:
    """Both novelties' inputs (`selection.novelty: both`): the pick's novelty is the embedding's times the bigrams'
    to the power `bigram_weight` (`selection.bigram_weight`)."""

    text: np.ndarray  # [n, t] unit rows of `text_embedding`
    bigrams: Bigrams
    bigram_weight: float = 1.0  # the exponent on the bigrams' novelty: 0 is the embedding's alone

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, rows: np.ndarray) -> TextAndBigrams:
        return TextAndBigrams(self.text[rows], self.bigrams[rows], self.bigram_weight)


def answer_bigrams(answers: Sequence[str]) -> Bigrams:
    """`Bigrams` of each answer's lower-cased words (one gram of its word for a one-word answer, none for none)."""
    from mygo.data.dedup import shingle_sets  # the same vectorised hashing as near deduplication's shingles

    sets = shingle_sets([_WORD.findall(answer.lower()) for answer in answers], 2)
    offsets = np.concatenate([[0], np.cumsum([len(one) for one in sets])]).astype(np.int64)
    hashes = np.concatenate(sets) if sets else np.zeros(0, dtype=np.uint32)
    return Bigrams(offsets, (hashes >> np.uint32(32 - BIGRAM_BITS)).astype(np.uint32))


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenated ranges [start, end) as one index array."""
    lengths = ends - starts
    if not lengths.sum():
        return np.zeros(0, dtype=np.int64)
    return np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())


class _EmbeddingNovelty:
    """One minus each row's highest text cosine to a pick so far."""

    def __init__(self, text: np.ndarray) -> None:
        self.text, self.nearest = text, np.zeros(len(text), dtype=np.float32)

    def of(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 - np.clip(self.nearest[rows], 0.0, 1.0)

    def add(self, row: int) -> None:
        self.nearest = np.maximum(self.nearest, self.text @ self.text[row])


class _CellNovelty:
    """`_EmbeddingNovelty` against the picks of each row's own text cell only (`text_cells`): the nearest earlier
    pick of a row is almost always in its cell, and a row's cost is its cell's picks, not the whole pool."""

    def __init__(self, text: np.ndarray, cells: np.ndarray) -> None:
        self.text, self.cells, self.picks = text, cells, {}

    def of(self, rows: np.ndarray) -> np.ndarray:
        novelty = np.ones(len(rows), dtype=np.float32)
        cells = self.cells[rows]
        for cell in np.unique(cells):
            held = self.picks.get(int(cell))
            if held:
                at = np.flatnonzero(cells == cell)
                nearest = (self.text[rows[at]] @ self.text[held].T).max(axis=1)
                novelty[at] = 1.0 - np.clip(nearest, 0.0, 1.0)
        return novelty

    def add(self, row: int) -> None:
        self.picks.setdefault(int(self.cells[row]), []).append(row)


def text_cells(text: np.ndarray, cells: int, seed: int = 0, sample: int = 50_000) -> np.ndarray:
    """[n] a text cell per row: k-means (mini-batch, on a seeded sample) of the text embedding into `cells` cells."""
    from sklearn.cluster import MiniBatchKMeans

    cells = min(cells, len(text))
    if cells <= 1:
        return np.zeros(len(text), dtype=np.int64)
    rows = np.random.default_rng(seed).permutation(len(text))[: max(sample, cells)]
    model = MiniBatchKMeans(cells, batch_size=4096, n_init=1, max_iter=20, random_state=seed).fit(text[rows])
    return np.concatenate([model.predict(text[start : start + 65536]) for start in range(0, len(text), 65536)])


class _Remaining:
    """A group's members not picked yet, drawn from in the size of the draw (the large-pool path): a picked member
    swaps places with the last one left."""

    def __init__(self, size: int) -> None:
        self.members, self.position, self.size = np.arange(size), np.arange(size), size

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.size <= count:
            return self.members[: self.size].copy()
        return self.members[rng.choice(self.size, count, replace=False)]

    def remove(self, member: int) -> None:
        at, last = self.position[member], self.members[self.size - 1]
        self.members[at], self.position[last] = last, at
        self.size -= 1


class _BigramNovelty:
    """The share of each row's bigrams that no pick so far holds (1 for a row without any)."""

    def __init__(self, bigrams: Bigrams) -> None:
        self.bigrams, self.seen = bigrams, np.zeros(1 << BIGRAM_BITS, dtype=bool)

    def of(self, rows: np.ndarray) -> np.ndarray:
        starts, ends = self.bigrams.offsets[rows], self.bigrams.offsets[rows + 1]
        held = np.concatenate([[0], np.cumsum(self.seen[self.bigrams.hashes[_ranges(starts, ends)]])])
        counts = ends - starts
        ends_within = np.cumsum(counts)
        held_counts = held[ends_within] - held[ends_within - counts]
        return np.where(counts > 0, 1.0 - held_counts / np.maximum(counts, 1), 1.0)

    def add(self, row: int) -> None:
        self.seen[self.bigrams.hashes[self.bigrams.offsets[row] : self.bigrams.offsets[row + 1]]] = True


class _BothNovelty:
    """The product of the embedding's and the bigrams' novelty: new in what it is about and in how it is said."""

    def __init__(self, both: TextAndBigrams, cells: np.ndarray | None = None) -> None:
        embedding = _EmbeddingNovelty(both.text) if cells is None else _CellNovelty(both.text, cells)
        self.parts = (embedding, _BigramNovelty(both.bigrams))
        self.weight = both.bigram_weight

    def of(self, rows: np.ndarray) -> np.ndarray:
        return self.parts[0].of(rows) * self.parts[1].of(rows) ** self.weight

    def add(self, row: int) -> None:
        for part in self.parts:
            part.add(row)


Text = np.ndarray | Bigrams | TextAndBigrams  # what the covering order's novelty compares (`selection.novelty`)


def _novelty(text: Text | None, n: int, cells: np.ndarray | None = None):
    """The novelty of `selection.novelty`'s kind; `cells` (`text_cells`): the embedding's within each text cell."""
    if text is None:
        return None
    if len(text) != n:
        raise ValueError(f"the text novelty has {len(text)} rows for {n} samples")
    if isinstance(text, TextAndBigrams):
        return _BothNovelty(text, cells)
    if isinstance(text, Bigrams):
        return _BigramNovelty(text)
    return _EmbeddingNovelty(text) if cells is None else _CellNovelty(text, cells)


def covering_picks(
    features: np.ndarray,
    labels: np.ndarray,
    quotas: dict[int, int],
    text: Text | None = None,
    seed: int = 0,
    ground_size: int = GROUND_SIZE,
    epsilon: float = EPSILON,
    ground: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows chosen by round robin over the groups in `quotas` (label -> picks; groups visited in that order each
    round), each turn the member with the best coverage x novelty (module docstring). Returns (rows in the order
    chosen, the round of each).

    features: [n, d] the clustering's features (cosine geometry); labels: [n] group of each row; text: [n, t] unit
    rows of the text embedding (`text_embedding`), or each row's `Bigrams` (`answer_bigrams`), or both
    (`TextAndBigrams`), or None for coverage alone. `ground`: (features [N, d] of a whole pool, the rows [m] of it
    that the picks should represent, their labels [m]), a superset of the candidates (None: the candidates
    themselves): picks then come from the candidates but are placed to cover all of their cluster in the ground,
    its parts without candidates included. Only the sampled ground rows are read from its features.

    Above EXACT_ROWS candidates (the large-pool path) a turn draws its candidates without scanning its cluster, and
    the embedding's novelty compares a row with the picks of its own text cell (`text_cells`, one cell per
    CELL_PICKS picks): the order's time no longer grows with the pool times the picks. At or under it, every
    number is the exact one."""
    rng = np.random.default_rng(seed)
    large = len(labels) > EXACT_ROWS
    ground_features, ground_rows, ground_labels = (None, None, labels) if ground is None else ground
    m = len(ground_labels)
    groups = []
    for label, quota in quotas.items():
        members = np.flatnonzero(labels == label)
        quota = min(int(quota), len(members))
        if quota < 1:
            continue
        represented = members if ground is None else ground_rows[ground_labels == label]
        size = min(len(represented), max(1, math.ceil(ground_size * len(represented) / m)))
        sample = represented if size == len(represented) else np.sort(rng.choice(represented, size, replace=False))
        sampled = unit_rows((features if ground is None else ground_features)[sample])
        draw = min(len(members), math.ceil(len(members) / quota * math.log(1 / epsilon)))
        groups.append(
            {
                "members": members,
                "quota": quota,
                "sampled": sampled,  # [ground sample, d]: the similarities to candidates are taken per turn
                "covered": np.zeros(len(sample)),
                "left": _Remaining(len(members)) if large else np.ones(len(members), dtype=bool),
                "draw": draw,
            }
        )
    cells = None
    if large and text is not None and not isinstance(text, Bigrams):
        embedding = text.text if isinstance(text, TextAndBigrams) else text
        cells = text_cells(embedding, sum(group["quota"] for group in groups) // CELL_PICKS, seed)
    novelty = _novelty(text, len(labels), cells)
    chosen, rounds = [], []
    for round_ in range(max((group["quota"] for group in groups), default=0)):
        for group in groups:
            if round_ >= group["quota"]:
                continue
            if large:
                candidates = group["left"].draw(rng, group["draw"])
            else:
                left = np.flatnonzero(group["left"])
                candidates = left if len(left) <= group["draw"] else rng.choice(left, group["draw"], replace=False)
            similarity = np.clip(group["sampled"] @ unit_rows(features[group["members"][candidates]]).T, 0.0, None)
            gain = np.maximum(similarity - group["covered"][:, None], 0.0).sum(axis=0)
            new = 1.0 if novelty is None else novelty.of(group["members"][candidates])
            at = int(np.argmax((gain + 1e-9) * new))  # + 1e-9: a covered cluster still ranks text
            best = candidates[at]
            group["covered"] = np.maximum(group["covered"], similarity[:, at])
            if large:
                group["left"].remove(best)
            else:
                group["left"][best] = False
            row = int(group["members"][best])
            chosen.append(row)
            rounds.append(round_)
            if novelty is not None:
                novelty.add(row)
    return np.asarray(chosen, dtype=np.int64), np.asarray(rounds, dtype=np.int64)
