"""How sure the model was of each mention it answered, from the log-probabilities of the answer's tokens.

Torch-free. The score of a ``label: mention`` piece is the geometric mean of the probabilities of the tokens that
make it up, the label's tokens included: ``exp(mean(token_logprobs[k] for k in piece's tokens))``. One unlikely
token (a doubtful boundary, an unsure label) lowers it; a long mention is not penalised for its length.

Which tokens make up a piece (``token_texts`` splits the answer's text by token):

- token ``k`` covers the characters ``[s_k, e_k)`` where ``s_k = len("".join(token_texts[:k]))`` and
  ``e_k = s_k + len(token_texts[k])``; a token with no text of its own (the first bytes of a character another token
  completes, or a special token the answer's text leaves out) covers the one character at ``s_k``, the one it leads
  into;
- the piece spans from the first character of its label to the last character of its mention (surrounding spaces
  and the ``;`` separators are outside it, see :func:`b2ner_cli.answers.answer_pieces`);
- a token belongs to the piece when what it covers overlaps that span. So a token " person" (the space before the
  label and the label) counts, a token "Obama;" counts for the piece ending in "Obama", and tokens made only of
  separator and spaces ("; ", ";") count for no piece.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..answers import answer_pieces, label_key, split_piece


def token_texts(tokenizer: Any, tokens: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded answer; joined, they are exactly the answer.

    Exact for byte-level BPE and SentencePiece byte fallback alike: it decodes every prefix of the tokens
    (``tokens[:1]``, ``tokens[:2]``, ...) the way the generators decode answers (special tokens skipped, no
    clean-up of spaces) and gives token ``k`` the characters of the whole answer that the prefix ending with it has
    completed and the prefix before it had not. A prefix that ends inside a character (a multi-byte character
    whose bytes are split across tokens) decodes to a replacement character there, which does not match the answer
    and so does not count yet: the token that completes the character gets it, and the tokens before it get
    ``""``. Costs one decode of each prefix (quadratic in answer length, one batched call).
    """
    ids = [int(t) for t in tokens]
    if not ids:
        return []
    batch = [ids[: k + 1] for k in range(len(ids))]
    prefixes: list[str] = []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: its Rust decoder directly (what decode() calls, without the clean-up)
        prefixes = backend.decode_batch(batch, skip_special_tokens=True)
        whole = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if prefixes[-1] != whole:  # a tokenizer whose decode() does more than its backend: decode as it does
            prefixes = []
    if not prefixes:
        prefixes = tokenizer.batch_decode(batch, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    answer = prefixes[-1]
    texts = []
    done = 0
    for text in prefixes:
        agree = 0
        limit = min(len(text), len(answer))
        while agree < limit and text[agree] == answer[agree]:
            agree += 1
        end = max(done, agree)
        texts.append(answer[done:end])
        done = end
    return texts


def mention_scores(
    answer: str,
    token_texts: Sequence[str],
    token_logprobs: Sequence[float],
    *,
    labels: Sequence[str] = (),
) -> list[tuple[str, str, float]]:
    """``(label, mention, score)`` for each ``label: mention`` piece of ``answer``, in answer order.

    Pieces are split as :func:`b2ner_cli.answers.parse_answer` splits them (given the asked ``labels``, a label
    that starts a piece wins over the first colon, and is returned in its asked spelling); pieces that are not
    ``label: mention``, and ``None``, get no score. The score is in (0, 1]; the rule is in the module docstring.
    ``token_texts`` must join to ``answer`` and match ``token_logprobs`` one to one (ValueError otherwise).
    """
    if "".join(token_texts) != answer:
        raise ValueError("token_texts do not join to the answer")
    if len(token_texts) != len(token_logprobs):
        raise ValueError(f"{len(token_texts)} token texts but {len(token_logprobs)} log-probabilities")
    spans = []
    start = 0
    for text in token_texts:
        spans.append((start, start + max(len(text), 1)))
        start += len(text)
    by_key = {label_key(name): name for name in labels}
    scores = []
    for first, last in answer_pieces(answer):
        pair = split_piece(answer[first:last], labels)
        if pair is None:
            continue
        chosen = [lp for (s, e), lp in zip(spans, token_logprobs, strict=True) if s < last and e > first]
        if not chosen:  # cannot happen when the texts join to the answer; kept for safety
            continue
        label, mention = pair
        label = by_key.get(label_key(label), label)
        scores.append((label, mention, math.exp(sum(chosen) / len(chosen))))
    return scores
