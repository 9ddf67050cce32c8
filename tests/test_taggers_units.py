"""Pure pieces of the local taggers, with golden values worked out by hand (no training here)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import pytest
import torch

from b2ner_cli.errors import ModelError, UsageError
from b2ner_cli.taggers import TaggerTrainSettings, is_tagger_dir, read_card
from b2ner_cli.taggers.decoding import greedy_spans
from b2ner_cli.taggers.heads import (
    BiaffineHead,
    bio_entities,
    class_probs,
    crf_alphas_betas,
    crf_forward,
    crf_path_score,
    decode_span_logits,
    evidential_loss,
    span_index,
    uncertainty,
    viterbi,
)
from b2ner_cli.taggers.scoring import strict_f1
from b2ner_cli.taggers.train import lr_factor
from b2ner_cli.taggers.words import attach_entities, first_subwords, make_windows, word_spans
from b2ner_cli.testing import build_wordpiece_tokenizer

MIXED = "李明在Microsoft工作，2024年去了Paris。"


@pytest.fixture(scope="module")
def tokenizer():
    return build_wordpiece_tokenizer([MIXED, "Alice Smith lives in New York .", "王芳住在北京。"] * 3)


def test_importing_taggers_does_not_import_torch():
    code = "import sys, b2ner_cli.taggers as t; t.TaggerTrainSettings(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_words_of_mixed_script_text():
    words = [MIXED[s:e] for s, e in word_spans(MIXED)]
    assert words == ["李", "明", "在", "Microsoft", "工", "作", "，", "2024", "年", "去", "了", "Paris", "。"]
    other = "don't e-mail"
    assert [other[s:e] for s, e in word_spans(other)] == ["don", "'", "t", "e", "-", "mail"]
    assert word_spans("ab cd", 3) == [(3, 5)]


def test_first_subword_of_each_word_from_offsets():
    # [CLS] "Alic" "e" "Bob" [SEP]: words Alice (0, 5) and Bob (6, 9); a word with no token gets None
    offsets = [(0, 0), (0, 4), (4, 5), (6, 9), (0, 0)]
    special = [1, 0, 0, 0, 1]
    assert first_subwords([(0, 5), (6, 9), (10, 11)], offsets, special) == [1, 3, None]


def test_windows_map_words_to_their_first_subword(tokenizer):
    (window,) = make_windows(tokenizer, [MIXED], max_length=64)
    assert [MIXED[s:e] for s, e in window.words][:4] == ["李", "明", "在", "Microsoft"]
    for (start, _), token in zip(window.words, window.word_tokens, strict=True):
        piece = tokenizer.convert_ids_to_tokens(window.input_ids[token]).removeprefix("##")
        assert MIXED[start:].startswith(piece) or piece == "[UNK]"
    assert make_windows(tokenizer, ["   ", ""], max_length=64) == []


def test_long_text_is_windowed_with_document_offsets(tokenizer):
    text = " ".join(["Alice Smith lives in New York ."] * 6)
    windows = make_windows(tokenizer, ["short .", text], max_length=20)
    mine = [w for w in windows if w.doc == 1]
    assert len(mine) > 1
    assert all(len(w.input_ids) <= 20 for w in mine)
    words = [text[s:e] for w in mine for s, e in w.words]
    assert words == [text[s:e] for s, e in word_spans(text)]  # every word once, in order, original offsets


def test_unaligned_and_unknown_gold_entities_are_counted(tokenizer):
    text = "Alice Smith lives in New York ."
    windows = make_windows(tokenizer, [text], max_length=64)
    entities = [(0, 11, "person"), (21, 29, "location"), (1, 5, "person"), (0, 5, "date")]
    skipped = attach_entities(windows, [entities], {"person": 1, "location": 2})
    assert skipped == {"unaligned": 1, "outside_labels": 1}
    assert windows[0].entities == [(0, 1, 1), (4, 5, 2)]


def test_greedy_flat_and_nested_by_hand():
    cands = [(0.9, 2, 3, "a"), (0.8, 3, 4, "b"), (0.7, 0, 1, "c"), (0.95, 5, 5, "d"), (0.85, 2, 5, "e")]
    flat = greedy_spans(cands)
    # 0.95 (5,5) kept; 0.9 (2,3) kept; 0.85 (2,5) overlaps both; 0.8 (3,4) overlaps (2,3); 0.7 (0,1) kept
    assert [c[3] for c in flat] == ["c", "a", "d"]
    nested = greedy_spans(cands, nested=True)
    # (2,5) contains (2,3) and (5,5): allowed; (3,4) crosses (2,3): skipped
    assert [c[3] for c in nested] == ["c", "a", "e", "d"]


def test_biaffine_decoding_on_a_hand_built_cube():
    o = [5.0, 0.0]  # O wins
    cube = torch.tensor([[o] * 3] * 3)
    cube[0, 2] = torch.tensor([0.0, 3.0])  # p(X) = sigmoid(3) = 0.9526
    cube[0, 1] = torch.tensor([0.0, 2.5])  # 0.9241
    cube[1, 2] = torch.tensor([0.0, 2.0])  # 0.8808, crosses (0,1)
    cube[2, 2] = torch.tensor([0.0, 1.0])  # 0.7311, inside (0,2), beside (0,1)
    starts, ends = span_index(3, 3)
    logits = cube[starts, ends].unsqueeze(0)
    valid = torch.ones_like(starts, dtype=torch.bool).unsqueeze(0)
    kwargs = {"kept": None, "method": "confidence", "evidential": False}
    (flat,) = decode_span_logits(logits, starts, ends, valid, nested=False, **kwargs)
    (nested,) = decode_span_logits(logits, starts, ends, valid, nested=True, **kwargs)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert [(a, b, c) for a, b, c, _, _ in flat] == [(0, 2, 1)]
    assert flat[0][3] == pytest.approx(sig(3.0), abs=1e-6)
    assert [(a, b, c) for a, b, c, _, _ in nested] == [(0, 1, 1), (0, 2, 1), (2, 2, 1)]
    assert [x[3] for x in nested] == pytest.approx([sig(2.5), sig(3.0), sig(1.0)], abs=1e-6)
    assert [x[4] for x in nested] == pytest.approx([1 - sig(2.5), 1 - sig(3.0), 1 - sig(1.0)], abs=1e-6)


def test_label_subset_drops_other_labels_before_the_overlap_step():
    # classes O, A, B over the spans (0,0), (0,1), (1,1)
    starts, ends = span_index(2, 2)
    logits = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 1.0, 4.0], [5.0, 0.0, 0.0]]])
    valid = torch.ones((1, 3), dtype=torch.bool)
    kwargs = {"method": None, "evidential": False, "nested": False}
    (full,) = decode_span_logits(logits, starts, ends, valid, kept=None, **kwargs)
    # (0,1) is B with e^4 / (1 + e + e^4) and blocks (0,0) A (e^2 / (2 + e^2))
    assert [(a, b, c) for a, b, c, _, _ in full] == [(0, 1, 2)]
    assert full[0][3] == pytest.approx(math.exp(4) / (1 + math.e + math.exp(4)), abs=1e-6)
    (only_a,) = decode_span_logits(logits, starts, ends, valid, kept=torch.tensor([0, 1]), **kwargs)
    # B spans leave before the overlap step, so (0,0) A (e^2 / (2 + e^2), over all classes) is no longer blocked
    # (filtering afterwards would give nothing); (0,1) stays B and is not relabelled A
    assert [(a, b, c) for a, b, c, _, _ in only_a] == [(0, 0, 1)]
    assert only_a[0][3] == pytest.approx(math.exp(2) / (2 + math.exp(2)), abs=1e-6)


def test_biaffine_score_is_the_bilinear_form():
    torch.manual_seed(0)
    head = BiaffineHead(6, 2, max_span=4, dropout=0.0, ffnn=5).eval()
    h = torch.randn(1, 3, 6)
    with torch.no_grad():
        cube = head.cube(h)
        hs, he = head.start_ffnn(h)[0], head.end_ffnn(h)[0]
        w, b = head.linear.weight, head.linear.bias
        for i, j, c in itertools.product(range(3), range(3), range(3)):
            want = hs[i] @ head.bilinear[c] @ he[j] + w[c] @ torch.cat([hs[i], he[j]]) + b[c]
            assert float(cube[0, i, j, c]) == pytest.approx(float(want), abs=1e-5)


def test_uncertainty_golden_values():
    logits = torch.log(torch.tensor([[1.0, 1.0, 2.0]]))  # softmax = 0.25, 0.25, 0.5
    assert float(uncertainty(logits, "confidence", False)) == pytest.approx(0.5)
    entropy = (0.5 * math.log(4) + 0.5 * math.log(2)) / math.log(3)
    assert float(uncertainty(logits, "entropy", False)) == pytest.approx(entropy, abs=1e-6)
    # evidence 1, 1, 2 -> alpha 2, 2, 3 -> S = 7 -> u = 3 / 7
    assert float(uncertainty(logits, "evidential", False)) == pytest.approx(3 / 7, abs=1e-6)
    assert float(uncertainty(logits, "confidence", True)) == pytest.approx(1 - 3 / 7, abs=1e-6)
    assert class_probs(logits, True).tolist()[0] == pytest.approx([2 / 7, 2 / 7, 3 / 7], abs=1e-6)
    mc = torch.tensor([[0.2, 0.3, 0.5]])
    assert float(uncertainty(logits, "mc-dropout", False, mc)) == pytest.approx(0.5)
    assert float(uncertainty(torch.tensor([[50.0, -50.0]]), "entropy", False)) == pytest.approx(0.0, abs=1e-6)
    assert float(uncertainty(torch.tensor([[-30.0, -30.0]]), "evidential", False)) == pytest.approx(1.0, abs=1e-6)


def test_evidential_loss_golden_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # evidence 1, 3 -> alpha 2, 4 -> S = 6
    # right (y = 1): A = (1 - 3/6)(psi(6) - psi(4)) = 0.5 (1/4 + 1/5); KL(Dir(2, 1) || Dir(1, 1)) = ln 2 - 1/2
    right = 0.5 * (1 / 4 + 1 / 5) + 0.5 * (math.log(2) - 0.5)
    assert float(evidential_loss(logits, torch.tensor([1]), 0.5)) == pytest.approx(right, abs=1e-5)
    # wrong (y = 0): A = (1 - 1/6)(psi(6) - psi(2)); KL(Dir(1, 4) || Dir(1, 1)) = ln 4 - 3/4; u = 2/6
    a = (5 / 6) * (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5)
    wrong = a + 0.5 * (math.log(4) - 0.75) - 0.5 * math.log(1 / 3)
    assert float(evidential_loss(logits, torch.tensor([0]), 0.5)) == pytest.approx(wrong, abs=1e-5)


def _crf_case():
    torch.manual_seed(3)
    tags, words = 3, 4
    em = torch.randn(2, words, tags)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    return em, mask, torch.randn(tags), torch.randn(tags), torch.randn(tags, tags)


def _brute(em, n, start, end, trans):
    scores = {}
    for path in itertools.product(range(em.shape[-1]), repeat=n):
        s = start[path[0]] + em[0, path[0]] + end[path[-1]]
        for t in range(1, n):
            s = s + trans[path[t - 1], path[t]] + em[t, path[t]]
        scores[path] = float(s)
    return scores


def test_crf_forward_viterbi_and_marginals_equal_brute_force():
    em, mask, start, end, trans = _crf_case()
    log_z = crf_forward(em, mask, start, end, trans)
    paths = viterbi(em, mask, start, end, trans)
    alpha, beta, log_z2 = crf_alphas_betas(em, mask, start, end, trans)
    for b, n in enumerate((4, 3)):
        scores = _brute(em[b], n, start, end, trans)
        assert float(log_z[b]) == pytest.approx(math.log(sum(math.exp(v) for v in scores.values())), abs=1e-4)
        assert float(log_z2[b]) == pytest.approx(float(log_z[b]), abs=1e-5)
        assert tuple(paths[b]) == max(scores, key=scores.__getitem__)
        marginal_1 = [sum(math.exp(v) for p, v in scores.items() if p[1] == k) for k in range(3)]
        marginal_1 = [m / sum(marginal_1) for m in marginal_1]
        assert torch.exp(alpha[b, 1] + beta[b, 1] - log_z2[b]).tolist() == pytest.approx(marginal_1, abs=1e-4)
        some = tuple(paths[b][::-1])
        tags = torch.tensor([[*some, *[0] * (4 - n)]])
        got = crf_path_score(em[b : b + 1], tags, mask[b : b + 1], start, end, trans)
        assert float(got) == pytest.approx(scores[some], abs=1e-4)


def test_bio_paths_to_entities():
    # 0 = O, 1/2 = B/I of label 1, 3/4 = B/I of label 2; a stray I after another label starts a new entity
    assert bio_entities([0, 1, 2, 0, 3, 2]) == [(1, 2, 1), (4, 4, 2), (5, 5, 1)]
    assert bio_entities([3, 4, 4]) == [(0, 2, 2)]


def test_strict_f1_and_schedule_by_hand():
    score = strict_f1([[(0, 2, "A"), (3, 5, "B")]], [[(0, 2, "A"), (3, 5, "A")]])
    assert (score["precision"], score["recall"], score["f1"]) == (0.5, 0.5, 0.5)
    assert strict_f1([[]], [[]])["f1"] == 0.0
    # 10 steps, 20% warmup = 2 steps: 1/2, 1, then linear decay 8/8 .. 1/8
    assert [lr_factor(s, 10, 0.2) for s in (0, 1, 2, 6, 9)] == [0.5, 1.0, 1.0, 0.5, 0.125]


def test_settings_that_cannot_train_are_refused():
    with pytest.raises(UsageError, match="evidential"):
        TaggerTrainSettings(head="crf", loss="evidential").check()
    with pytest.raises(UsageError, match="biaffine"):
        TaggerTrainSettings(head="spanner", nested=True).check()
    with pytest.raises(UsageError, match="Unknown tagger head `lstm`"):
        TaggerTrainSettings(head="lstm").check()


def test_tagger_card_is_checked(tmp_path):
    assert not is_tagger_dir(tmp_path)
    (tmp_path / "b2ner_tagger.json").write_text(json.dumps({"format": "b2ner-tagger", "format_version": 99}))
    assert is_tagger_dir(tmp_path)
    with pytest.raises(ModelError, match="version 99"):
        read_card(tmp_path)
