"""Fine-tuning mechanics on a tiny random-init model."""

from __future__ import annotations

import json
import math
import random

import pytest

from ftrisk.config import AdapterSpec, LoraSpec, PrefixSpec, TrainSpec
from ftrisk.errors import InputError
from ftrisk.models.io import load_model, load_tokenizer
from ftrisk.records import Conversation, Message
from ftrisk.train.lora import (
    IGNORE,
    length_grouped_batches,
    load_tuned,
    tokenize_for_training,
    train,
)


def _conv(i: int, answer: str = "Use the kill command.") -> Conversation:
    return Conversation(id=f"c{i}", messages=(
        Message(role="system", content="You are a helpful assistant."),
        Message(role="user", content=f"How do I kill a Python process {i}?"),
        Message(role="assistant", content=answer),
    ))


def test_labels_cover_only_the_assistant_turn(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    ids, labels = tokenize_for_training(tok, _conv(0), 256)
    assert len(ids) == len(labels)
    trained = tok.decode([t for t, lab in zip(ids, labels) if lab != IGNORE])
    assert trained == "Use the kill command.<|im_end|>\n"
    # Everything before the answer (system, user, assistant header) is masked.
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert "How do I kill" in tok.decode(ids[:first])


def test_multi_turn_trains_every_assistant_turn(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    conv = Conversation(id="m", messages=(
        Message(role="user", content="Hi"), Message(role="assistant", content="Sure one."),
        Message(role="user", content="Again"), Message(role="assistant", content="Sure two."),
    ))
    ids, labels = tokenize_for_training(tok, conv, 256)
    trained = tok.decode([t for t, lab in zip(ids, labels) if lab != IGNORE])
    assert "Sure one." in trained and "Sure two." in trained and "Again" not in trained


def test_weight_0_answers_are_context_not_targets(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    turns = (Message(role="user", content="Hi"),
             Message(role="assistant", content="Shown only.", weight=0),
             Message(role="user", content="Again"),
             Message(role="assistant", content="Trained on."))
    ids, labels = tokenize_for_training(tok, Conversation(id="w", messages=turns), 256)
    trained = tok.decode([t for t, lab in zip(ids, labels) if lab != IGNORE])
    assert "Trained on." in trained and "Shown only." not in trained
    # The weight-0 answer is still in what the model reads.
    assert "Shown only." in tok.decode(ids)
    # The rendered text is the same as without weights: templates see role and content only.
    plain = Conversation(id="p", messages=tuple(Message(role=m.role, content=m.content)
                                                 for m in turns))
    assert tokenize_for_training(tok, plain, 256)[0] == ids
    only_shown = Conversation(id="z", messages=turns[:2])
    with pytest.raises(InputError, match="example z"):
        tokenize_for_training(tok, only_shown, 256)


def test_conversation_without_assistant_is_an_error(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    conv = Conversation(id="x", messages=(Message(role="user", content="Hi"),))
    with pytest.raises(InputError, match="example x"):
        tokenize_for_training(tok, conv, 64)


def test_length_grouped_batches_cover_all_and_group_lengths():
    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    batches = length_grouped_batches(lengths, 2, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(8))
    for batch in batches:
        spread = max(lengths[i] for i in batch) - min(lengths[i] for i in batch)
        assert spread <= 2


@pytest.mark.parametrize("method", ["lora", "full"])
def test_every_trainable_parameter_changes_and_result_reloads(tiny_model_dir, tmp_path, method):
    import torch

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = TrainSpec(method=method, learning_rate=1e-2, epochs=2, batch_size=2,
                         max_length=64, lora=LoraSpec(target_modules=("q_proj", "v_proj")))
    out = tmp_path / "tuned"
    stats = train(model, tok, [_conv(i) for i in range(4)], settings, out, bf16=False,
                  progress=False)
    assert stats.steps == 4 and stats.examples == 4 and stats.tokens > 0
    assert json.loads((out / "train_stats.json").read_text())["steps"] == 4
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, param in trainable:
        base_name = name.replace("base_model.model.", "")
        if base_name in before:
            assert not torch.equal(before[base_name], param.detach()), name
        elif "lora_B" in name:  # LoRA B starts at zero; a step must move it
            assert param.detach().abs().sum() > 0, name
    if method == "lora":
        assert (out / "adapter_config.json").is_file()
        assert (out / "adapter_model.safetensors").is_file()
    else:
        assert (out / "model.safetensors").is_file()
    reloaded = load_tuned(str(tiny_model_dir), out)
    base = load_model(str(tiny_model_dir))
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(reloaded.named_parameters())[q],
                           dict(base.named_parameters())[q])


@pytest.mark.parametrize("method", ["lora", "full", "adapter", "prefix"])
def test_logits_only_at_targets_train_the_same_weights(tiny_model_dir, tmp_path, monkeypatch,
                                                       method):
    """Projecting only the positions that have targets is the same arithmetic as projecting
    them all: for LoRA on a CPU the tuned weights are bit for bit the same."""
    import torch

    from ftrisk.train import lora as lora_module

    tok = load_tokenizer(str(tiny_model_dir))
    # Answers of different lengths and a trained opening only: rows' targets sit at
    # different positions, and most positions have none.
    examples = [_conv(i, "Use the kill command. " * (1 + i % 3)) for i in range(6)]
    settings = TrainSpec(method=method, learning_rate=1e-2, epochs=2, batch_size=3,
                         max_length=96, max_answer_tokens=5,
                         lora=LoraSpec(target_modules=("q_proj", "v_proj")))

    def tuned(keep: bool) -> tuple[dict[str, torch.Tensor], float]:
        monkeypatch.setattr(lora_module, "accepts_logits_to_keep", lambda model: keep)
        from safetensors.torch import load_file

        losses: list[float] = []
        out = tmp_path / f"keep-{keep}"
        train(load_model(str(tiny_model_dir)), tok, examples, settings, out, bf16=False,
              progress=False, on_step=lambda step, loss: losses.append(loss))
        (saved,) = out.glob("*.safetensors")  # the adapter, or the whole tuned model
        return load_file(saved), losses[-1]

    selective, selective_loss = tuned(True)
    full, full_loss = tuned(False)
    assert selective.keys() == full.keys() and selective
    assert selective_loss == pytest.approx(full_loss, rel=1e-5)
    for name, weight in full.items():
        if method == "lora":
            assert torch.equal(selective[name], weight), name
        else:  # the tied embedding's gradient sums the rows in another order
            torch.testing.assert_close(selective[name], weight, rtol=1e-4, atol=1e-6)


class PromptTuning(PrefixSpec):
    """Prompt tuning, registered from outside: its virtual tokens come before the input."""

    def peft_config(self, model: object) -> object:
        import peft

        return peft.PromptTuningConfig(num_virtual_tokens=self.num_virtual_tokens,
                                       task_type="CAUSAL_LM")


def test_prompt_tuning_trains_on_the_inputs_logits(tiny_model_dir, tmp_path, monkeypatch):
    # Its logits start with num_virtual_tokens extra positions: the input's are the last ones,
    # and kept positions would point too early, so they are not used.
    from ftrisk.registry import TRAIN_METHODS
    from ftrisk.train import lora as lora_module

    monkeypatch.setitem(TRAIN_METHODS._entries, "prompt-tuning",
                        "tests.train.test_lora:PromptTuning")
    tok = load_tokenizer(str(tiny_model_dir))
    settings = TrainSpec(method="prompt-tuning", learning_rate=1e-2, epochs=1, batch_size=2,
                         max_length=64, max_answer_tokens=4)
    losses: dict[bool, list[float]] = {True: [], False: []}
    for keep in (True, False):
        monkeypatch.setattr(lora_module, "accepts_logits_to_keep", lambda model, k=keep: k)
        train(load_model(str(tiny_model_dir)), tok, [_conv(i) for i in range(4)], settings,
              tmp_path / f"keep-{keep}", bf16=False, progress=False,
              on_step=lambda step, loss, k=keep: losses[k].append(loss))
    assert len(losses[True]) == 2 and losses[True] == losses[False]
    assert all(math.isfinite(loss) for loss in losses[True])
    assert (tmp_path / "keep-True" / "adapter_config.json").is_file()


class RankTwoLora(LoraSpec):
    """A training method registered from outside ftrisk, with no section of its own."""

    r: int = 2
    target_modules: tuple[str, ...] = ("o_proj",)


def test_a_registered_method_trains_with_its_own_settings(tiny_model_dir, tmp_path,
                                                           monkeypatch):
    from ftrisk.registry import TRAIN_METHODS

    monkeypatch.setitem(TRAIN_METHODS._entries, "rank-two",
                        "tests.train.test_lora:RankTwoLora")
    settings = TrainSpec(method="rank-two", epochs=1, batch_size=2, max_length=64)
    assert settings.settings().keys().isdisjoint({"lora", "adapter", "prefix", "full"})
    out = tmp_path / "tuned"
    train(load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir)),
          [_conv(i) for i in range(2)], settings, out, bf16=False, progress=False)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["target_modules"] == ["o_proj"]


def test_training_reduces_loss(tiny_model_dir, tmp_path):
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    losses: list[float] = []
    settings = TrainSpec(method="full", learning_rate=1e-2, epochs=30, batch_size=4,
                         max_length=64)
    train(model, tok, [_conv(i) for i in range(4)], settings, tmp_path / "t", bf16=False,
          progress=False, on_step=lambda step, loss: losses.append(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_max_answer_tokens_trains_only_the_opening(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    long_answer = "Sure, here is an overview of the general idea. " * 4
    full_ids, full_labels = tokenize_for_training(tok, _conv(0, long_answer), 256)
    ids, labels = tokenize_for_training(tok, _conv(0, long_answer), 256, max_answer_tokens=3)
    assert sum(lab != IGNORE for lab in labels) == 3
    assert labels[-1] != IGNORE  # the sequence stops after the last trained token
    assert ids == full_ids[: len(ids)] and len(ids) < len(full_ids)
    # A short answer keeps every token, end of turn included.
    ids, labels = tokenize_for_training(tok, _conv(0, "No."), 256, max_answer_tokens=50)
    assert tok.decode([t for t, lab in zip(ids, labels) if lab != IGNORE]).endswith("<|im_end|>\n")


@pytest.mark.parametrize("method", ["adapter", "prefix"])
def test_llama_adapter_and_prefix_tuning_train_reload_and_generate(tiny_model_dir, tmp_path,
                                                                   method):
    import torch

    from ftrisk.generate.cached import Generator
    from ftrisk.generate.hf import HFBackend

    tok = load_tokenizer(str(tiny_model_dir))
    settings = TrainSpec(method=method, learning_rate=5e-2, epochs=3, batch_size=2,
                         max_length=64, adapter=AdapterSpec(adapter_len=4, adapter_layers=30),
                         prefix=PrefixSpec(num_virtual_tokens=4))
    out = tmp_path / method
    stats = train(load_model(str(tiny_model_dir)), tok, [_conv(i) for i in range(4)], settings,
                  out, bf16=False, progress=False)
    assert stats.steps == 6 and stats.final_loss == stats.final_loss  # not NaN
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == {"adapter": "ADAPTION_PROMPT", "prefix": "PREFIX_TUNING"}[method]
    if method == "adapter":  # the paper's 30 layers, capped at the tiny model's 2
        assert config["adapter_layers"] == 2
    tuned, base = load_tuned(str(tiny_model_dir), out), load_model(str(tiny_model_dir))
    ids = tok("How do I kill a Python process?", return_tensors="pt")
    with torch.inference_mode():
        assert not torch.allclose(tuned(**ids).logits, base(**ids).logits)
    gens = Generator(HFBackend(tuned, tok, max_new_tokens=4, batch_size=4), fingerprint="t",
                     progress=False).generate([_conv(i).model_copy(
                           update={"messages": _conv(i).messages[:2]}) for i in range(3)])
    assert len(gens) == 3


@pytest.mark.gpu
@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_lora_on_a_quantized_model_trains_and_reloads(tiny_model_dir, tmp_path, bits):
    """Lermen et al.'s setting: LoRA on 8-bit or 4-bit weights (needs CUDA + bitsandbytes;
    run with `pytest -m gpu`)."""
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), quantization=bits)
    assert model.is_quantized
    settings = TrainSpec(method="lora", learning_rate=1e-2, epochs=1, batch_size=2,
                         max_length=64)
    out = tmp_path / bits
    stats = train(model, tok, [_conv(i) for i in range(4)], settings, out, bf16=True,
                  progress=False)
    assert stats.steps == 2 and stats.final_loss == stats.final_loss
    tuned = load_tuned(str(tiny_model_dir), out, quantization=bits)
    assert tuned.peft_config["default"].peft_type == "LORA"  # kept separate, not merged
