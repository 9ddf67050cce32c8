"""Tiny real models for tests and benchmarks: a byte-level BPE tokenizer trained in milliseconds
and a small random Llama, saved as ordinary Hugging Face directories.

Nothing here downloads anything. Imports torch, transformers and tokenizers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .engine.base import encode_prompt
from .prompts import ANSWER_PREFIX, FEW_SHOT, WITH_DESCRIPTIONS, ZERO_SHOT

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2, as in InternLM2

_CORPUS = [
    *ZERO_SHOT.values(),
    *WITH_DESCRIPTIONS.values(),
    *FEW_SHOT.values(),
    *ANSWER_PREFIX.values(),
    "person organization location date or period movie genre; None: Barack Obama visited Microsoft in Seattle .",
    "The European Central Bank raised interest rates in Frankfurt last March . Marie Curie Paris Berlin",
    "人名 地名 组织机构名->公司 作品名->游戏作品 李明昨天去了北京。 暴雪中国 星际争霸 阿里巴巴 杭州 故宫博物院",
]


def build_tokenizer(extra_corpus: Sequence[str] = (), vocab_size: int = 800) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (every string encodes) with ``<unk>``/``<s>``/``</s>`` = 0/1/2."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*_CORPUS, *extra_corpus] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        clean_up_tokenization_spaces=False,
    )


def build_model(vocab_size: int, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> LlamaForCausalLM:
    """A small random Llama (grouped-query attention, untied head) in float32."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return model.eval()


def teach(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    steps: int = 300,
    lr: float = 3e-3,
    seed: int = 0,
) -> float:
    """Train ``model`` (all parameters, or a PEFT adapter's) to answer each instruction.

    ``pairs`` are (instruction, answer) with the answer as B2NER writes it (leading space);
    the loss covers the answer and EOS. Returns the final loss.
    """
    torch.manual_seed(seed)
    rows = []
    for instruction, answer in pairs:
        prompt = encode_prompt(tokenizer, instruction)
        target = [*tokenizer.encode(answer, add_special_tokens=False), tokenizer.eos_token_id]
        rows.append((prompt + target, [-100] * len(prompt) + target))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


def save(model: Any, tokenizer: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------------------------------------- encoders (taggers)

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4


def build_wordpiece_tokenizer(corpus: Sequence[str], vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on ``corpus`` in milliseconds.

    The BERT normalizer keeps case and puts spaces around CJK characters, so each CJK character is its own
    token; the BERT pre-tokenizer splits on whitespace and punctuation. Encodings are ``[CLS] ... [SEP]``.
    """
    from tokenizers import normalizers, processors

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, handle_chinese_chars=True, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        clean_up_tokenization_spaces=False,
    )


def build_bert(vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 2, *, seed: int = 0) -> Any:
    """A tiny random ``BertModel`` in float32; save it with ``save`` next to its tokenizer."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    return BertModel(config).eval()
