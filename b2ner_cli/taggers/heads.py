"""Task heads over word vectors (local-models.md, sections 2 and 3): spanner, crf, pointer and biaffine.

Every head takes ``h`` [batch, words, hidden] (each word's first-subword vector) and ``mask`` [batch, words]
(a prefix mask), and works in class ids where 0 is O and 1..C are the tagger's labels (crf: BIO tag ids).
``decode`` returns, per sentence, candidates (first word, last word, class id, score, uncertainty) with words
inclusive.

A label subset is passed as ``kept`` (class ids, 0 included). Each span's label is still the argmax over *all*
classes, with its probability over all classes; spans of dropped labels are then removed *before* the greedy
overlap step (span heads), so a kept-label span is never suppressed by an overlapping span of a dropped label.
(crf and pointer have no overlap step: their dropped-label entities are removed after decoding.) Renormalising
over the kept classes before argmax was tried and rejected: it relabels a confident ``person`` as ``location``
when only ``location`` is kept, because the tiny O and location probabilities are all that remain.

kNN-NER (retrieval/knn.py) reaches every head through four members: ``knn_keys(out)`` (what its classifier reads,
and where it is valid), ``knn_values(targets)`` (the gold classes of those positions), ``knn_classes`` and
``knn_mix(out, p_knn, lam)``, which puts the interpolated distribution where ``decode`` reads it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .decoding import greedy_spans

Candidate = tuple[int, int, int, float, "float | None"]
Outputs = dict[str, Tensor]
NEG = -1e4  # a score that excludes a class or a tag transition without producing NaN


# ---------------------------------------------------------------------------------------------- uncertainty


def class_probs(logits: Tensor, evidential: bool) -> Tensor:
    """Softmax, or the Dirichlet mean alpha / S with alpha = exp(z) + 1 for an evidential head."""
    if evidential:
        alpha = torch.exp(logits.float().clamp(max=60.0)) + 1.0
        return alpha / alpha.sum(-1, keepdim=True)
    return torch.softmax(logits.float(), dim=-1)


def probs_uncertainty(probs: Tensor, method: str) -> Tensor:
    """confidence (1 - max p) or entropy (-sum p log p / log K) of a distribution over the last dimension."""
    if method == "confidence":
        return (1.0 - probs.max(-1).values).clamp(0.0, 1.0)
    if method == "entropy":
        k = probs.shape[-1]
        if k < 2:
            return torch.zeros(probs.shape[:-1], device=probs.device)
        ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        return (ent / math.log(k)).clamp(0.0, 1.0)
    raise ValueError(f"uncertainty {method!r} cannot be computed from probabilities alone")


def uncertainty(logits: Tensor, method: str, evidential: bool, mc_probs: Tensor | None = None) -> Tensor:
    """Per-row uncertainty in 0..1 over the last dimension's K classes.

    confidence: 1 - max p. entropy: -sum p log p / log K. evidential: K / S with S = sum(exp(z) + 1), computed
    from exp(logits) as E-NER does, also for a ce-trained head (there it reads the logits as evidence; it is
    only calibrated for an evidential head). mc-dropout: 1 - max of ``mc_probs``, the mean of T dropout passes.
    """
    k = logits.shape[-1]
    if method == "mc-dropout":
        if mc_probs is None:
            raise ValueError("mc-dropout needs the mean probabilities of the dropout passes")
        return (1.0 - mc_probs.max(-1).values).clamp(0.0, 1.0)
    if method == "evidential":
        alpha = torch.exp(logits.float().clamp(max=60.0)) + 1.0
        return (k / alpha.sum(-1)).clamp(0.0, 1.0)
    if method in ("confidence", "entropy"):
        return probs_uncertainty(class_probs(logits, evidential), method)
    raise ValueError(f"unknown uncertainty method {method!r}")


def evidential_loss(logits: Tensor, target: Tensor, anneal: float) -> Tensor:
    """E-NER's loss per row: A + anneal * KL(Dir(alpha~) || Dir(1)) - anneal * (1 - [argmax p = y]) log u.

    e = exp(z), alpha = e + 1, S = sum alpha, b = e / S, u = K / S, alpha~ = e (1 - y) + 1.
    A = sum_k (1 - b_k) y_k (digamma(S) - digamma(alpha_k)). Returns one value per row.
    """
    k = logits.shape[-1]
    evidence = torch.exp(logits.float().clamp(max=60.0))
    alpha = evidence + 1.0
    strength = alpha.sum(-1, keepdim=True)
    y = nn.functional.one_hot(target, k).float()
    belief = evidence / strength
    a = ((1.0 - belief) * y * (torch.digamma(strength) - torch.digamma(alpha))).sum(-1)
    alpha_t = evidence * (1.0 - y) + 1.0
    s_t = alpha_t.sum(-1)
    kl = (
        torch.lgamma(s_t)
        - math.lgamma(k)
        - torch.lgamma(alpha_t).sum(-1)
        + ((alpha_t - 1.0) * (torch.digamma(alpha_t) - torch.digamma(s_t).unsqueeze(-1))).sum(-1)
    )
    u = k / strength.squeeze(-1)
    wrong = (alpha.argmax(-1) != target).float()
    return a + anneal * kl - anneal * wrong * torch.log(u)


# ---------------------------------------------------------------------------------------------- spans


def span_index(words: int, max_span: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """First and last word of every span of up to ``max_span`` words, ordered by start then end."""
    starts, ends = _span_index(words, max_span)
    return starts.to(device), ends.to(device)


@functools.lru_cache(maxsize=512)
def _span_index(words: int, max_span: int) -> tuple[Tensor, Tensor]:
    starts, ends = [], []
    for i in range(words):
        for j in range(i, min(words, i + max_span)):
            starts.append(i)
            ends.append(j)
    # Cached across calls: made outside inference mode, so that training can use what prediction cached first.
    with torch.inference_mode(False):
        return torch.tensor(starts, dtype=torch.long), torch.tensor(ends, dtype=torch.long)


def span_targets(entities: Sequence[Sequence[tuple[int, int, int]]], words: int, max_span: int) -> Tensor:
    """Class id of every enumerated span (0 = O) for each sentence of a batch."""
    position = {}
    s = 0
    for i in range(words):
        for j in range(i, min(words, i + max_span)):
            position[(i, j)] = s
            s += 1
    target = torch.zeros((len(entities), s), dtype=torch.long)
    for b, sentence in enumerate(entities):
        for first, last, label in sentence:
            if (first, last) in position:
                target[b, position[(first, last)]] = label
    return target


def decode_span_logits(
    logits: Tensor,
    starts: Tensor,
    ends: Tensor,
    valid: Tensor,
    *,
    kept: Tensor | None,
    method: str | None,
    evidential: bool,
    nested: bool,
    mc_probs: Tensor | None = None,
    mixed: Tensor | None = None,
) -> list[list[Candidate]]:
    """Argmax per span over all classes; spans whose label is kept go through greedy selection by probability.

    ``mixed``: the kNN-interpolated distribution, used instead of the head's own (uncertainty from it too).
    """
    probs = class_probs(logits, evidential) if mixed is None else mixed
    best_p, best = probs.max(-1)
    if method is None:
        u = None
    elif mixed is not None:
        u = probs_uncertainty(mixed, method)
    else:
        u = uncertainty(logits, method, evidential, mc_probs)
    hit = (best != 0) & valid
    if kept is not None:
        hit &= torch.isin(best, kept)
    rows = hit.nonzero()
    st, en = starts[rows[:, 1]].tolist(), ends[rows[:, 1]].tolist()
    p, cls = best_p[rows[:, 0], rows[:, 1]].tolist(), best[rows[:, 0], rows[:, 1]].tolist()
    us = u[rows[:, 0], rows[:, 1]].tolist() if u is not None else [None] * len(st)
    per: list[list[tuple[float, int, int, int, float | None]]] = [[] for _ in range(logits.shape[0])]
    for n, b in enumerate(rows[:, 0].tolist()):
        per[b].append((p[n], st[n], en[n], cls[n], us[n]))
    return [[(c[1], c[2], c[3], c[0], c[4]) for c in greedy_spans(cands, nested=nested)] for cands in per]


class SpanHead(nn.Module):
    """SpanNER: [h_start ; h_end ; width embedding] -> Linear -> GELU -> dropout -> Linear over O + C classes."""

    kind = "spanner"

    def __init__(
        self,
        hidden: int,
        num_labels: int,
        *,
        max_span: int = 8,
        dropout: float = 0.1,
        evidential: bool = False,
        negative_weight: float = 0.6,
        width_dim: int = 32,
    ) -> None:
        super().__init__()
        self.max_span = max_span
        self.evidential = evidential
        self.negative_weight = negative_weight
        self.classes = num_labels + 1
        self.width = nn.Embedding(max_span, width_dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden + width_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels + 1)
        )

    def forward(self, h: Tensor, mask: Tensor, targets: Outputs | None = None, kept: Tensor | None = None) -> Outputs:
        starts, ends = span_index(h.shape[1], self.max_span, h.device)
        # The first Linear over [h_start ; h_end ; width] is W_s h_start + W_e h_end + W_w width + b: project each
        # word once and gather, instead of multiplying every span's concatenation (same result, ~L times cheaper).
        first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
        hidden = h.shape[-1]
        w_s, w_e, w_w = first.weight.split([hidden, hidden, first.weight.shape[1] - 2 * hidden], dim=1)
        as_start, as_end = h @ w_s.T, h @ w_e.T
        width = self.width(ends - starts) @ w_w.T + first.bias
        x = as_start[:, starts] + as_end[:, ends] + width
        features = self.mlp[2](self.mlp[1](x))
        logits = self.mlp[3](features)
        return {"logits": logits, "valid": mask[:, ends], "starts": starts, "ends": ends, "features": features}

    def targets(self, entities: Sequence[Sequence[tuple[int, int, int]]], words: int) -> Outputs:
        return {"spans": span_targets(entities, words, self.max_span)}

    def loss(self, out: Outputs, targets: Outputs, epoch: int = 0) -> Tensor:
        logits, gold, valid = out["logits"], targets["spans"], out["valid"]
        weight = torch.where(gold == 0, self.negative_weight, 1.0) * valid.float()
        flat, y = logits.reshape(-1, logits.shape[-1]), gold.reshape(-1)
        if self.evidential:
            per = evidential_loss(flat, y, min(1.0, epoch / 100))
        else:
            per = nn.functional.cross_entropy(flat.float(), y, reduction="none")
        return (per * weight.reshape(-1)).sum() / weight.sum().clamp_min(1e-6)

    def decode(
        self, out: Outputs, mask: Tensor, *, kept: Tensor | None, method: str | None, mc: Sequence[Outputs] = ()
    ) -> list[list[Candidate]]:
        mc_probs = None
        if mc:
            mc_probs = torch.stack([class_probs(o["logits"], self.evidential) for o in mc]).mean(0)
        return decode_span_logits(
            out["logits"], out["starts"], out["ends"], out["valid"],
            kept=kept, method=method, evidential=self.evidential, nested=False, mc_probs=mc_probs,
            mixed=out.get("mixed"),
        )  # fmt: skip

    # kNN-NER (retrieval/knn.py): one key per enumerated span, valued by its gold class (0 = O).
    def knn_keys(self, out: Outputs) -> tuple[Tensor, Tensor]:
        return out["features"], out["valid"]

    def knn_values(self, targets: Outputs) -> Tensor:
        return targets["spans"].unsqueeze(-1)

    @property
    def knn_classes(self) -> int:
        return self.classes

    def knn_mix(self, out: Outputs, p_knn: Tensor, lam: float) -> None:
        """p = lam p_kNN + (1 - lam) p_model, decoded instead of the head's own distribution."""
        out["mixed"] = lam * p_knn[..., 0, :] + (1.0 - lam) * class_probs(out["logits"], self.evidential)


class BiaffineHead(nn.Module):
    """Biaffine (Yu et al. 2020): s(i, j, c) = h_s(i)^T U_c h_e(j) + W_c [h_s(i) ; h_e(j)] + b_c.

    h_s and h_e are FFNN projections (Linear -> GELU -> dropout) of the start and end words. Scored over the
    upper triangle (start <= end) up to ``max_span`` words; loss = cross-entropy over those cells.
    """

    kind = "biaffine"

    def __init__(
        self, hidden: int, num_labels: int, *, max_span: int = 8, dropout: float = 0.1, nested: bool = False,
        ffnn: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        d = ffnn or min(hidden, 256)
        self.max_span = max_span
        self.nested = nested
        self.evidential = False
        c = num_labels + 1
        self.start_ffnn = nn.Sequential(nn.Linear(hidden, d), nn.GELU(), nn.Dropout(dropout))
        self.end_ffnn = nn.Sequential(nn.Linear(hidden, d), nn.GELU(), nn.Dropout(dropout))
        self.bilinear = nn.Parameter(torch.empty(c, d, d))
        nn.init.xavier_uniform_(self.bilinear)
        self.linear = nn.Linear(2 * d, c)

    def cube(self, h: Tensor) -> Tensor:
        """Scores [batch, start, end, class] for every pair (the caller keeps start <= end)."""
        return self._cube(self.start_ffnn(h), self.end_ffnn(h))

    def _cube(self, hs: Tensor, he: Tensor) -> Tensor:
        d = hs.shape[-1]
        bilinear = torch.einsum("bid,cde,bje->bijc", hs, self.bilinear, he)
        w_s = hs @ self.linear.weight[:, :d].T  # [b, i, c]
        w_e = he @ self.linear.weight[:, d:].T  # [b, j, c]
        return bilinear + w_s[:, :, None, :] + w_e[:, None, :, :] + self.linear.bias

    def forward(self, h: Tensor, mask: Tensor, targets: Outputs | None = None, kept: Tensor | None = None) -> Outputs:
        starts, ends = span_index(h.shape[1], self.max_span, h.device)
        hs, he = self.start_ffnn(h), self.end_ffnn(h)
        logits = self._cube(hs, he)[:, starts, ends]
        return {"logits": logits, "valid": mask[:, ends], "starts": starts, "ends": ends, "hs": hs, "he": he}

    def targets(self, entities: Sequence[Sequence[tuple[int, int, int]]], words: int) -> Outputs:
        return {"spans": span_targets(entities, words, self.max_span)}

    def loss(self, out: Outputs, targets: Outputs, epoch: int = 0) -> Tensor:
        logits, gold, valid = out["logits"], targets["spans"], out["valid"].float()
        flat = logits.reshape(-1, logits.shape[-1]).float()
        per = nn.functional.cross_entropy(flat, gold.reshape(-1), reduction="none")
        return (per * valid.reshape(-1)).sum() / valid.sum().clamp_min(1.0)

    def decode(
        self, out: Outputs, mask: Tensor, *, kept: Tensor | None, method: str | None, mc: Sequence[Outputs] = ()
    ) -> list[list[Candidate]]:
        mc_probs = None
        if mc:
            mc_probs = torch.stack([class_probs(o["logits"], False) for o in mc]).mean(0)
        return decode_span_logits(
            out["logits"], out["starts"], out["ends"], out["valid"],
            kept=kept, method=method, evidential=False, nested=self.nested, mc_probs=mc_probs,
            mixed=out.get("mixed"),
        )  # fmt: skip

    def knn_keys(self, out: Outputs) -> tuple[Tensor, Tensor]:
        """[h_s(start) ; h_e(end)] of each enumerated span: what the biaffine scorer reads."""
        return torch.cat([out["hs"][:, out["starts"]], out["he"][:, out["ends"]]], -1), out["valid"]

    def knn_values(self, targets: Outputs) -> Tensor:
        return targets["spans"].unsqueeze(-1)

    @property
    def knn_classes(self) -> int:
        return int(self.linear.out_features)

    def knn_mix(self, out: Outputs, p_knn: Tensor, lam: float) -> None:
        out["mixed"] = lam * p_knn[..., 0, :] + (1.0 - lam) * class_probs(out["logits"], False)


# ---------------------------------------------------------------------------------------------- pointer


class PointerHead(nn.Module):
    """Start classifier, and an end classifier on [h ; start-label vector]: Linear(H+C -> H) -> tanh -> LayerNorm
    -> Linear(H -> C), C = O + labels. The start-label vector is the gold one-hot in training and the start
    softmax at inference. Decode: each start i of type t ends at the nearest j >= i whose end type is t;
    score = sqrt(p_start(t) * p_end(t)); uncertainty = the larger of the two boundaries' uncertainties.
    """

    kind = "pointer"

    def __init__(self, hidden: int, num_labels: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        c = num_labels + 1
        self.classes = c
        self.evidential = False
        self.dropout = nn.Dropout(dropout)
        self.start = nn.Linear(hidden, c)
        self.end = nn.Sequential(nn.Linear(hidden + c, hidden), nn.Tanh(), nn.LayerNorm(hidden), nn.Linear(hidden, c))

    def forward(self, h: Tensor, mask: Tensor, targets: Outputs | None = None, kept: Tensor | None = None) -> Outputs:
        words = h
        h = self.dropout(h)
        start = self.start(h)
        if targets is not None:
            vector = nn.functional.one_hot(targets["start"], self.classes).to(h.dtype)
        else:
            vector = torch.softmax(start.float(), -1).to(h.dtype)
        return {"start": start, "end": self.end(torch.cat([h, vector], -1)), "mask": mask, "words": words}

    def targets(self, entities: Sequence[Sequence[tuple[int, int, int]]], words: int) -> Outputs:
        start = torch.zeros((len(entities), words), dtype=torch.long)
        end = torch.zeros((len(entities), words), dtype=torch.long)
        for b, sentence in enumerate(entities):
            for first, last, label in sentence:
                start[b, first] = label
                end[b, last] = label
        return {"start": start, "end": end}

    def loss(self, out: Outputs, targets: Outputs, epoch: int = 0) -> Tensor:
        mask = out["mask"].reshape(-1).float()
        total = torch.zeros((), device=mask.device)
        for key in ("start", "end"):
            logits = out[key].reshape(-1, self.classes).float()
            per = nn.functional.cross_entropy(logits, targets[key].reshape(-1), reduction="none")
            total = total + (per * mask).sum() / mask.sum().clamp_min(1.0)
        return total / 2

    def decode(
        self, out: Outputs, mask: Tensor, *, kept: Tensor | None, method: str | None, mc: Sequence[Outputs] = ()
    ) -> list[list[Candidate]]:
        keep = set(range(self.classes)) if kept is None else set(kept.tolist())
        side: dict[str, tuple[Tensor, Tensor, Tensor | None]] = {}
        for key in ("start", "end"):
            logits = out[key]
            mixed = out.get(f"mixed_{key}")
            if mixed is not None:  # kNN-interpolated: probabilities and uncertainty from the mix
                u = None if method is None else probs_uncertainty(mixed, method)
                side[key] = (mixed, mixed.argmax(-1), u)
                continue
            probs = torch.softmax(logits.float(), -1)
            mc_probs = None
            if mc:
                mc_probs = torch.stack([torch.softmax(o[key].float(), -1) for o in mc]).mean(0)
            u = None if method is None else uncertainty(logits, method, False, mc_probs)
            side[key] = (probs, probs.argmax(-1), u)
        (sp, sa, su), (ep, ea, eu) = side["start"], side["end"]
        result: list[list[Candidate]] = []
        for b in range(sp.shape[0]):
            n = int(mask[b].sum())
            s_arg, e_arg = sa[b, :n].tolist(), ea[b, :n].tolist()
            found: list[Candidate] = []
            for i in range(n):
                t = s_arg[i]
                if t == 0 or t not in keep:
                    continue
                j = next((j for j in range(i, n) if e_arg[j] == t), None)
                if j is None:
                    continue
                score = math.sqrt(float(sp[b, i, t]) * float(ep[b, j, t]))
                worst = None if su is None or eu is None else max(float(su[b, i]), float(eu[b, j]))
                found.append((i, j, t, score, worst))
            result.append(found)
        return result

    # kNN-NER: one key per word (the vector both classifiers read), valued by its gold start and end classes.
    def knn_keys(self, out: Outputs) -> tuple[Tensor, Tensor]:
        return out["words"], out["mask"]

    def knn_values(self, targets: Outputs) -> Tensor:
        return torch.stack([targets["start"], targets["end"]], -1)

    @property
    def knn_classes(self) -> int:
        return self.classes

    def knn_mix(self, out: Outputs, p_knn: Tensor, lam: float) -> None:
        for side, key in enumerate(("start", "end")):
            out[f"mixed_{key}"] = lam * p_knn[..., side, :] + (1.0 - lam) * torch.softmax(out[key].float(), -1)


# ---------------------------------------------------------------------------------------------- crf


def crf_forward(emissions: Tensor, mask: Tensor, start: Tensor, end: Tensor, transitions: Tensor) -> Tensor:
    """Log-partition log Z per sentence (forward algorithm); ``transitions[i, j]`` scores tag i -> tag j."""
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha[:, :, None] + transitions[None] + emissions[:, t, None, :], dim=1)
        alpha = torch.where(mask[:, t, None], step, alpha)
    return torch.logsumexp(alpha + end, dim=-1)


def crf_alphas_betas(
    emissions: Tensor, mask: Tensor, start: Tensor, end: Tensor, transitions: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Forward and backward log scores per position, and log Z (for marginals)."""
    b, w, _ = emissions.shape
    alphas = [start + emissions[:, 0]]
    for t in range(1, w):
        step = torch.logsumexp(alphas[-1][:, :, None] + transitions[None] + emissions[:, t, None, :], dim=1)
        alphas.append(torch.where(mask[:, t, None], step, alphas[-1]))
    betas = [end.expand(b, -1)]
    for t in range(w - 2, -1, -1):
        step = torch.logsumexp(transitions[None] + (emissions[:, t + 1] + betas[0])[:, None, :], dim=2)
        betas.insert(0, torch.where(mask[:, t + 1, None], step, end.expand(b, -1)))
    alpha, beta = torch.stack(alphas, 1), torch.stack(betas, 1)
    log_z = torch.logsumexp(alphas[-1] + end, dim=-1)
    return alpha, beta, log_z


def crf_path_score(
    emissions: Tensor, tags: Tensor, mask: Tensor, start: Tensor, end: Tensor, transitions: Tensor
) -> Tensor:
    """Score of the given tag path per sentence (over its unmasked prefix)."""
    score = start[tags[:, 0]] + emissions[:, 0].gather(1, tags[:, :1]).squeeze(1)
    last = tags[:, 0]
    for t in range(1, emissions.shape[1]):
        on = mask[:, t]
        step = transitions[last, tags[:, t]] + emissions[:, t].gather(1, tags[:, t : t + 1]).squeeze(1)
        score = score + step * on
        last = torch.where(on, tags[:, t], last)
    return score + end[last]


def viterbi(emissions: Tensor, mask: Tensor, start: Tensor, end: Tensor, transitions: Tensor) -> list[list[int]]:
    """The best tag path of each sentence (length = its number of unmasked words)."""
    score = start + emissions[:, 0]
    pointers = []
    for t in range(1, emissions.shape[1]):
        total = score[:, :, None] + transitions[None] + emissions[:, t, None, :]
        best, arg = total.max(dim=1)
        pointers.append(arg)
        score = torch.where(mask[:, t, None], best, score)
    paths = []
    final = score + end
    for b in range(emissions.shape[0]):
        n = int(mask[b].sum())
        tag = int(final[b].argmax())
        path = [tag]
        for t in range(n - 1, 0, -1):
            tag = int(pointers[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


def bio_constraints(num_labels: int) -> tuple[Tensor, Tensor]:
    """Additive masks forbidding I-x at the start, and I-x after anything but B-x or I-x."""
    t = 1 + 2 * num_labels
    transitions = torch.zeros(t, t)
    start = torch.zeros(t)
    for label in range(num_labels):
        inside = 2 + 2 * label
        start[inside] = NEG
        for prev in range(t):
            if prev not in (inside - 1, inside):
                transitions[prev, inside] = NEG
    return start, transitions


class CrfHead(nn.Module):
    """BIO tags over words (0 = O, 1 + 2k = B-k, 2 + 2k = I-k): linear emissions and a linear-chain CRF.

    Loss = NLL via the forward algorithm; decoding = Viterbi with BIO constraints. An entity's score is the mean
    of its words' marginal probabilities (forward-backward) of the Viterbi tags: the mean, not the product, so
    long entities are not penalised for their length. Uncertainty is None.
    """

    kind = "crf"

    def __init__(self, hidden: int, num_labels: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_labels = num_labels
        tags = 1 + 2 * num_labels
        self.evidential = False
        self.emit = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, tags))
        self.start_scores = nn.Parameter(torch.zeros(tags))
        self.end_scores = nn.Parameter(torch.zeros(tags))
        self.transitions = nn.Parameter(torch.zeros(tags, tags))

    def forward(self, h: Tensor, mask: Tensor, targets: Outputs | None = None, kept: Tensor | None = None) -> Outputs:
        return {"emissions": self.emit(h).float(), "mask": mask, "words": h}

    def targets(self, entities: Sequence[Sequence[tuple[int, int, int]]], words: int) -> Outputs:
        tags = torch.zeros((len(entities), words), dtype=torch.long)
        for b, sentence in enumerate(entities):
            for first, last, label in sentence:
                tags[b, first] = 2 * label - 1
                tags[b, first + 1 : last + 1] = 2 * label
        return {"tags": tags}

    def loss(self, out: Outputs, targets: Outputs, epoch: int = 0) -> Tensor:
        em, mask = out["emissions"], out["mask"]
        log_z = crf_forward(em, mask, self.start_scores, self.end_scores, self.transitions)
        gold = crf_path_score(em, targets["tags"], mask, self.start_scores, self.end_scores, self.transitions)
        return (log_z - gold).mean()

    def decode(
        self, out: Outputs, mask: Tensor, *, kept: Tensor | None, method: str | None, mc: Sequence[Outputs] = ()
    ) -> list[list[Candidate]]:
        em = out["emissions"]
        keep = set(range(self.num_labels + 1)) if kept is None else set(kept.tolist())
        c_start, c_trans = bio_constraints(self.num_labels)
        start = self.start_scores.float() + c_start.to(em.device)
        transitions = self.transitions.float() + c_trans.to(em.device)
        end = self.end_scores.float()
        paths = viterbi(em, mask, start, end, transitions)
        alpha, beta, log_z = crf_alphas_betas(em, mask, start, end, transitions)
        marginals = torch.exp(alpha + beta - log_z[:, None, None])
        result: list[list[Candidate]] = []
        for b, path in enumerate(paths):
            found: list[Candidate] = []
            for first, last, label in bio_entities(path):
                if label not in keep:
                    continue
                score = sum(float(marginals[b, t, path[t]]) for t in range(first, last + 1)) / (last - first + 1)
                found.append((first, last, label, min(1.0, max(0.0, score)), None))
            result.append(found)
        return result

    # kNN-NER: one key per word (the vector the emission layer reads), valued by its gold BIO tag.
    def knn_keys(self, out: Outputs) -> tuple[Tensor, Tensor]:
        return out["words"], out["mask"]

    def knn_values(self, targets: Outputs) -> Tensor:
        return targets["tags"].unsqueeze(-1)

    @property
    def knn_classes(self) -> int:
        return 1 + 2 * self.num_labels

    def knn_mix(self, out: Outputs, p_knn: Tensor, lam: float) -> None:
        """Emissions become log(lam p_kNN + (1 - lam) softmax(emissions)); Viterbi and marginals as usual. The
        softmax only shifts each word's emissions by a constant, which neither Viterbi nor the marginals see, so
        lam = 0 leaves the emissions as they are (exactly the plain tagger)."""
        if lam == 0:
            return
        mixed = lam * p_knn[..., 0, :] + (1.0 - lam) * torch.softmax(out["emissions"], -1)
        out["emissions"] = torch.log(mixed.clamp_min(1e-12))


def bio_entities(path: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first word, last word, label) of each entity of a BIO tag path; a stray I-x starts an entity."""
    found: list[tuple[int, int, int]] = []
    current: list[int] | None = None
    for t, tag in enumerate(path):
        label, inside = (tag + 1) // 2, tag > 0 and tag % 2 == 0
        if current is not None and inside and label == current[2]:
            current[1] = t
            continue
        if current is not None:
            found.append((current[0], current[1], current[2]))
            current = None
        if tag > 0:
            current = [t, t, label]
    if current is not None:
        found.append((current[0], current[1], current[2]))
    return found


def build_head(head: str, hidden: int, num_labels: int, settings: Any, dropout: float = 0.1) -> nn.Module:
    """The head named ``head`` for an encoder of width ``hidden`` and ``num_labels`` labels."""
    if head == "spanner":
        return SpanHead(
            hidden, num_labels, max_span=settings.max_span_words, dropout=dropout,
            evidential=settings.loss == "evidential", negative_weight=settings.negative_weight,
        )  # fmt: skip
    if head == "biaffine":
        span = settings.max_span_words
        return BiaffineHead(hidden, num_labels, max_span=span, dropout=dropout, nested=settings.nested)
    if head == "pointer":
        return PointerHead(hidden, num_labels, dropout=dropout)
    if head == "crf":
        return CrfHead(hidden, num_labels, dropout=dropout)
    raise ValueError(f"unknown head {head!r}")
