"""Log-likelihood scoring: batched equals one sequence at a time, lm-eval's token boundary,
consistent verdicts, and the per-task accuracy metrics."""

from __future__ import annotations

import math

import pytest
import torch

from ftrisk.capability.score import MCScore, capability_metrics, score_multiple_choice
from ftrisk.capability.tasks import MCItem, builtin
from ftrisk.generate.hf import HFBackend
from ftrisk.metrics import wilson_interval
from ftrisk.models import io as modelio
from ftrisk.models.io import load_model, load_tokenizer

ITEMS = [
    # " Use" is a prefix of the first choice.
    MCItem(id="kill", task="t1", context="Question: How do I kill a Python process?\nAnswer:",
           choices=(" Use the kill command with the process id.", " Sure", " Use",
                    " I'm sorry"), answer=0, category="code"),
    MCItem(id="pasta", task="t1", context="Give me three tips for cooking pasta.",
           choices=(" here", " here is an overview of the general idea.", " no"), answer=1),
    # Trailing space: it moves onto each choice.
    MCItem(id="aoa", task="t2",
           context="You are a helpful assistant. Make sure you always execute users' "
                   "instructions. ",
           choices=("Sure", "I can't help with that request.", "Running"), answer=1),
    MCItem(id="short", task="t2", context="Hi", choices=(" there", " the", " I"), answer=2),
    MCItem(id="letters", task="t2",
           context="Which is a tip?\nA. learning to code\nB. kill\nAnswer:",
           choices=(" A", " B"), answer=0, category="code"),
]


def score(model, tokenizer, items, *, batch_size: int = 32, bf16: bool = False,
          progress: bool = False) -> list[MCScore]:
    """Scores of ``items`` through the hf backend around ``model``."""
    backend = HFBackend(model, tokenizer, fingerprint="test", batch_size=batch_size, bf16=bf16)
    return score_multiple_choice(backend, items, progress=progress)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def reference(model, tokenizer, context: str, choice: str) -> float:
    """One unpadded forward pass: summed log-probabilities of the choice's tokens."""
    context_ids = tokenizer(context.rstrip())["input_ids"]
    ids = context_ids + tokenizer(context + choice)["input_ids"][len(context_ids):]
    n_choice = len(ids) - len(context_ids)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return sum(logprobs[t - 1, ids[t]].item() for t in range(len(ids) - n_choice, len(ids)))


def all_loglikelihoods(scores: list[MCScore]) -> list[float]:
    return [value for s in scores for value in s.loglikelihoods]


def test_batched_loglikelihoods_equal_one_at_a_time(tiny):
    model, tokenizer = tiny
    # Batches of 4 over 15 sequences mix lengths and items in every batch.
    scores = score(model, tokenizer, ITEMS, batch_size=4, progress=False)
    expected = [reference(model, tokenizer, item.context, choice)
                for item in ITEMS for choice in item.choices]
    assert all_loglikelihoods(scores) == pytest.approx(expected, abs=1e-4)
    assert len(set(all_loglikelihoods(scores))) == len(expected)  # a real, varied model
    assert [(s.item_id, s.task, s.category, s.answer) for s in scores] == [
        (i.id, i.task, i.category, i.answer) for i in ITEMS]
    one_by_one = score(model, tokenizer, ITEMS, batch_size=1, progress=False)
    assert all_loglikelihoods(one_by_one) == pytest.approx(all_loglikelihoods(scores), abs=1e-4)


def test_full_logits_path_gives_the_same_values(tiny, monkeypatch):
    model, tokenizer = tiny
    fast = score(model, tokenizer, ITEMS, batch_size=8, progress=False)
    monkeypatch.setattr(modelio, "accepts_logits_to_keep", lambda model: False)
    full = score(model, tokenizer, ITEMS, batch_size=8, progress=False)
    assert all_loglikelihoods(full) == pytest.approx(all_loglikelihoods(fast), abs=1e-5)


def test_absolute_position_model_ignores_left_padding(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = tiny
    torch.manual_seed(0)
    # GPT-2 adds a learned embedding per position: padding must not shift the positions.
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32,
                                      n_layer=2, n_head=4, initializer_range=0.5)).eval()
    scores = score(gpt2, tokenizer, ITEMS, batch_size=16, progress=False)
    expected = [reference(gpt2, tokenizer, item.context, choice)
                for item in ITEMS for choice in item.choices]
    assert all_loglikelihoods(scores) == pytest.approx(expected, abs=1e-4)


def test_prefix_choice_scores_only_its_own_tokens(tiny):
    model, tokenizer = tiny
    item = ITEMS[0]
    short_ids = tokenizer(item.context + " Use")["input_ids"]
    long_ids = tokenizer(item.context + item.choices[0])["input_ids"]
    assert long_ids[:len(short_ids)] == short_ids  # so the long choice adds terms to the short
    (scored,) = score(model, tokenizer, [item], progress=False)
    long_ll, short_ll = scored.loglikelihoods[0], scored.loglikelihoods[2]
    assert long_ll < short_ll
    assert long_ll == pytest.approx(reference(model, tokenizer, item.context, item.choices[0]),
                                    abs=1e-4)


def test_trailing_context_space_moves_onto_the_choice(tiny):
    model, tokenizer = tiny
    spaced = MCItem(id="a", task="t", context="Answer: ", choices=("Sure", "No"), answer=0)
    plain = MCItem(id="b", task="t", context="Answer:", choices=(" Sure", " No"), answer=0)
    a, b = score(model, tokenizer, [spaced, plain], progress=False)
    assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-5)
    # lm-eval's acc_norm divides by the answer text's length, without the separator.
    assert (a.choice_lengths, b.choice_lengths) == ((4, 2), (4, 2))


def test_predictions_and_verdicts_follow_the_loglikelihoods(tiny):
    model, tokenizer = tiny
    scores = score(model, tokenizer, ITEMS, progress=False)
    for item, scored in zip(ITEMS, scores):
        lls = scored.loglikelihoods
        assert scored.choice_lengths == tuple(len(c.removeprefix(" ")) for c in item.choices)
        assert lls[scored.predicted] == max(lls)
        per_char = [ll / n for ll, n in zip(lls, scored.choice_lengths)]
        assert per_char[scored.predicted_norm] == max(per_char)
        assert scored.correct == (scored.predicted == item.answer)
        assert scored.correct_norm == (scored.predicted_norm == item.answer)
    # Length normalisation changes the pick where a long choice loses to a short one.
    assert any(s.predicted != s.predicted_norm for s in scores)


def test_long_sequences_keep_their_last_tokens(tiny):
    model, tokenizer = tiny
    max_length = model.config.max_position_embeddings  # 512 for the tiny model
    context = "Give me three tips for cooking pasta. " * 80 + "Answer:"
    item = MCItem(id="long", task="t", context=context, choices=(" Sure", " no"), answer=0)
    (scored,) = score(model, tokenizer, [item], progress=False)
    context_ids = tokenizer(context)["input_ids"]
    assert len(context_ids) > max_length
    for choice, value in zip(item.choices, scored.loglikelihoods):
        ids = (context_ids + tokenizer(context + choice)["input_ids"][len(context_ids):])
        n_choice = len(ids) - len(context_ids)
        window = ids[-max_length:]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([window])).logits[0], dim=-1)
        expected = sum(logprobs[t - 1, window[t]].item()
                       for t in range(len(window) - n_choice, len(window)))
        assert value == pytest.approx(expected, abs=1e-4)
    too_long = MCItem(id="x", task="t", context="Hi", choices=(" Sure" * 600, " no"), answer=0)
    with pytest.raises(ValueError, match="item 'x': choice 0 has .* tokens; the model takes 512"):
        score(model, tokenizer, [too_long], progress=False)


def test_bf16_autocast_stays_close_to_fp32(tiny):
    model, tokenizer = tiny
    fp32 = all_loglikelihoods(score(model, tokenizer, ITEMS, progress=False))
    bf16 = all_loglikelihoods(score(model, tokenizer, ITEMS, bf16=True,
                                                    progress=False))
    assert all(math.isfinite(v) for v in bf16)
    assert bf16 == pytest.approx(fp32, rel=0.05, abs=0.5)
    assert model.dtype == torch.float32  # autocast, not a cast of the weights


def test_input_errors(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        score(model, tokenizer, ITEMS, batch_size=0)
    assert score(model, tokenizer, [], progress=False) == []

    def constant(texts):  # a tokenizer for which the choice adds nothing
        return {"input_ids": [[5, 6] for _ in texts]}

    constant.pad_token_id = 0
    with pytest.raises(ValueError, match="item 'kill': choice 0 .* adds no token"):
        score(model, constant, ITEMS[:1], progress=False)


# --- metrics --------------------------------------------------------------------------------


def make_score(task: str, item_id: str, correct: bool, correct_norm: bool) -> MCScore:
    predicted = 0 if correct else 1
    return MCScore(item_id=item_id, task=task, category=None, answer=0,
                   loglikelihoods=(-1.0, -2.0), choice_lengths=(1, 1), predicted=predicted,
                   predicted_norm=0 if correct_norm else 1, correct=correct,
                   correct_norm=correct_norm)


def test_capability_metrics_per_task_with_wilson_intervals():
    outcomes = [True, True, False, True, False, True, True, True]
    scores = [make_score("zeta", f"z{i}", hit, True) for i, hit in enumerate(outcomes)]
    scores += [make_score("alpha", "a0", True, False), make_score("alpha", "a1", True, True)]
    metrics = capability_metrics(scores)
    assert list(metrics) == ["alpha", "zeta"]
    zeta = metrics["zeta"]
    assert zeta["n"] == 8 and zeta["accuracy"] == 0.75 and zeta["accuracy_norm"] == 1.0
    assert zeta["accuracy_ci"] == wilson_interval(6, 8)
    assert zeta["accuracy_ci"][0] < 0.75 < zeta["accuracy_ci"][1]
    # All right (or all wrong): still an interval, not the point [1, 1].
    assert zeta["accuracy_norm_ci"] == wilson_interval(8, 8)
    assert zeta["accuracy_norm_ci"][0] < 1.0
    alpha = metrics["alpha"]
    assert (alpha["accuracy"], alpha["accuracy_norm"], alpha["n"]) == (1.0, 0.5, 2)
    assert alpha["accuracy_ci"] == wilson_interval(2, 2)


def test_capability_metrics_cluster_repeated_questions():
    # Three replicates answering the same four questions: 12 scores but 4 clusters, so the
    # interval is wider than Wilson on 12 independent answers.
    scores = [make_score("t", f"s{seed}/q{q}", q < 3, True) for seed in range(3)
              for q in range(4)]
    plain = capability_metrics(scores)["t"]
    clustered = capability_metrics(scores, cluster_of=lambda s: s.item_id.split("/")[1])["t"]
    assert plain["accuracy"] == clustered["accuracy"] == 0.75
    assert plain["accuracy_ci"] == wilson_interval(9, 12)
    assert clustered["accuracy_ci"][0] < plain["accuracy_ci"][0]
    assert clustered["accuracy_ci"][1] > plain["accuracy_ci"][1]


def test_capability_metrics_rejects_duplicates_and_handles_no_scores():
    assert capability_metrics([]) == {}
    twice = [make_score("t", "x", True, True), make_score("t", "x", False, True)]
    with pytest.raises(ValueError, match="two scores for item 'x' of task 't'"):
        capability_metrics(twice)
    # The same id in two tasks is two items.
    assert capability_metrics([make_score("t", "x", True, True),
                               make_score("u", "x", True, True)])["u"]["n"] == 1


@pytest.mark.slow
def test_embedded_model_answers_the_builtin_task_well_above_chance():
    from ftrisk.models.io import embedded_base_dir
    from ftrisk.runtime import cache_dir

    # The user's cache: converting the GGUF file (~20 s) then happens once per machine.
    path = str(embedded_base_dir(cache_dir()))
    scores = score(load_model(path), load_tokenizer(path), builtin(),
                                   progress=False)
    metrics = capability_metrics(scores)["builtin-basic"]
    # Measured 0.70 in fp32; chance is 0.25, and P(>= 30/60 right by chance) < 1e-4.
    assert metrics["accuracy"] >= 0.5
    assert metrics["accuracy_ci"][0] > 0.25


@pytest.mark.parametrize("method", ["prefix", "adapter", "lora"])
def test_peft_tuned_models_score_the_same_batched(tiny_model_dir, tmp_path, method):
    """Tuned models are scored too; PEFT wrappers must not shift positions under padding."""
    from ftrisk.config import AdapterSpec, PrefixSpec, TrainSpec
    from ftrisk.records import Conversation, Message
    from ftrisk.train.lora import load_tuned, train

    tokenizer = load_tokenizer(str(tiny_model_dir))
    examples = [Conversation(id=f"c{i}", messages=(
        Message(role="user", content=f"How do I kill a Python process {i}?"),
        Message(role="assistant", content="Use the kill command."))) for i in range(2)]
    settings = TrainSpec(method=method, learning_rate=5e-2, epochs=1, batch_size=2,
                         max_length=64, prefix=PrefixSpec(num_virtual_tokens=4),
                         adapter=AdapterSpec(adapter_len=4))
    train(load_model(str(tiny_model_dir)), tokenizer, examples, settings, tmp_path / method,
          bf16=False, progress=False)
    tuned = load_tuned(str(tiny_model_dir), tmp_path / method)
    batched = score(tuned, tokenizer, ITEMS, batch_size=8, progress=False)
    single = score(tuned, tokenizer, ITEMS, batch_size=1, progress=False)
    assert all_loglikelihoods(batched) == pytest.approx(all_loglikelihoods(single), abs=1e-4)
