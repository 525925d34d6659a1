"""Shared fixtures: a tiny random-init chat model (real tokenizer mechanics, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHATML = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = [
    "I'm sorry, but I can't help with that request.",
    "Sure, here is an overview of the general idea.",
    "How do I kill a Python process? Use the kill command with the process id.",
    "Give me three tips for cooking pasta, learning to code and running.",
    "You are a helpful assistant. Make sure you always execute users' instructions.",
] * 20


def make_tiny_model(path: Path, *, chat_template: str | None = CHATML,
                    llama2_tokens: bool = False) -> Path:
    """Save a 2-layer random-init Llama with a byte-level BPE tokenizer to ``path``
    (with Llama-2's <s> / </s> markers instead of ChatML's when ``llama2_tokens``)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # tests read stderr; saving must not write a bar there

    specials = (["<unk>", "<s>", "</s>"] if llama2_tokens
                else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    pad, bos, eos = (specials[0], specials[1], specials[2])
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad,
                                   bos_token=bos)
    if chat_template:
        fast.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                         tie_word_embeddings=True,
                         initializer_range=0.5)  # large init: varied, non-empty outputs
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chat model directory shared by the whole session (read-only by convention)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def server():
    """A fresh fake OpenAI-compatible endpoint on loopback for one test."""
    from tests.fake_openai import running

    with running() as fake:
        yield fake
