"""Local fine-tuning in one plain loop on Hugging Face Accelerate: PEFT (LoRA, LLaMA-Adapter,
prefix tuning) or full fine-tuning.

Loss is on assistant tokens only, and logits are computed only at positions that have a
target (the same arithmetic, bit for bit for LoRA on a CPU, without the step's largest matmul
and tensor). Batches group examples of similar length so little compute goes to padding;
Accelerate supplies bf16 autocast, devices and multi-GPU (FSDP / DeepSpeed via ``accelerate
launch``) without a launcher of our own.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ftrisk.config import TrainSpec
from ftrisk.errors import InputError
from ftrisk.models.io import accepts_logits_to_keep
from ftrisk.records import Conversation, TrainStats
from ftrisk.rundir import atomic_dir

IGNORE = -100


def tokenize_for_training(
    tokenizer: Any, conversation: Conversation, max_length: int,
    max_answer_tokens: int | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation, with labels only on assistant turns (of
    weight 1).

    With ``max_answer_tokens``, only the first tokens of each answer carry labels and the
    sequence ends after the last labelled token.

    Each assistant turn's span is found in characters (render up to the turn with the generation
    prompt, then through the turn) and mapped to tokens with the tokenizer's offsets, which works
    for any chat template whose rendering of a prefix is a prefix of the whole.
    """
    messages = [m.chat() for m in conversation.messages]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(conversation.messages):
        # Weight-0 turns (OpenAI's format) are context, not targets.
        if message.role != "assistant" or message.weight == 0:
            continue
        head = tokenizer.apply_chat_template(messages[:i], tokenize=False,
                                             add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not full.startswith(head) or not full.startswith(upto):
            raise InputError(
                "the chat template does not render conversations prefix-consistently, so "
                "assistant tokens cannot be located", field=f"example {conversation.id}")
        spans.append((len(head), len(upto)))
    if not spans:
        raise InputError("expected at least one assistant turn to train on",
                         field=f"example {conversation.id}")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"][:max_length]
    labels, span_counts = [], [0] * len(spans)
    for tok, (start, _end) in zip(ids, enc["offset_mapping"][:max_length]):
        span = next((k for k, (lo, hi) in enumerate(spans) if lo <= start < hi), None)
        keep = span is not None and (max_answer_tokens is None
                                     or span_counts[span] < max_answer_tokens)
        if keep:
            span_counts[span] += 1
        labels.append(tok if keep else IGNORE)
    if all(lab == IGNORE for lab in labels):
        # An all-masked batch has a NaN loss that would silently corrupt the weights.
        raise InputError(f"the prompt fills all {max_length} tokens, leaving no answer token to "
                         "train on; raise train.max_length", field=f"example {conversation.id}")
    if max_answer_tokens is not None:
        last = max(i for i, lab in enumerate(labels) if lab != IGNORE)
        ids, labels = ids[: last + 1], labels[: last + 1]
    return ids, labels


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Indices in batches of similar length (in shuffled order), to cut padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (tokens, labs) in enumerate(examples):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _reset_single_process_state(precision: str) -> None:
    """Let one process run jobs of different precisions (Accelerate keeps a global state).

    Only in a plain single process: under ``accelerate launch`` the launcher owns the state.
    """
    from accelerate.state import AcceleratorState, DistributedType

    state = AcceleratorState._shared_state
    if state and state.get("distributed_type") == DistributedType.NO and \
            str(state.get("_mixed_precision")) != precision:
        AcceleratorState._reset_state(reset_partial_state=True)


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Conversation],
    settings: TrainSpec,
    output_dir: str | Path,
    *,
    bf16: bool,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainStats:
    """Fine-tune ``model`` on ``examples`` with ``settings`` (under bf16 autocast when
    ``bf16``) and save the result to ``output_dir``.

    PEFT methods save an adapter (``adapter_config.json`` + ``adapter_model.safetensors``); full
    fine-tuning saves the whole model as safetensors. A model loaded quantized (bitsandbytes)
    is prepared for k-bit training first. The directory is written atomically.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # transformers 5 deprecates an attribute that accelerate still reads; not actionable here.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    set_seed(settings.seed)
    precision = "bf16" if bf16 else "no"
    _reset_single_process_state(precision)
    accelerator = Accelerator(mixed_precision=precision)
    peft_config = settings.method_spec().peft_config(model)
    if peft_config is not None:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if getattr(model, "is_quantized", False):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, peft_config)
    model.train()
    data = [tokenize_for_training(tokenizer, ex, settings.max_length, settings.max_answer_tokens)
            for ex in examples]
    lengths = [len(ids) for ids, _ in data]
    rng = random.Random(settings.seed)
    steps_per_epoch = math.ceil(len(data) / settings.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    # Qi et al. multiply the learning rate by a constant factor after every epoch.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: settings.lr_epoch_decay ** (step // steps_per_epoch))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    # Prompt tuning and its kin put virtual tokens before the input (prefix tuning keeps them
    # in the cache): the input's logits are the last ones, and kept positions would be off.
    shifted = peft_config is not None and peft_config.is_prompt_learning and \
        peft_config.peft_type != "PREFIX_TUNING"
    keep_logits = not shifted and accepts_logits_to_keep(accelerator.unwrap_model(model))

    tokens = steps = 0
    loss_value = math.nan
    start = time.perf_counter()
    bar = tqdm(total=steps_per_epoch * settings.epochs, desc="train", unit="step",
               disable=not progress, dynamic_ncols=True)
    for _epoch in range(settings.epochs):
        for batch_idx in length_grouped_batches(lengths, settings.batch_size, rng):
            batch = _collate([data[i] for i in batch_idx], tokenizer.pad_token_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            # The logits at position t predict the token at t + 1.
            targets = batch["labels"][:, 1:]
            with accelerator.autocast():
                if keep_logits:
                    # Project to the vocabulary only where some row has a target: elsewhere
                    # the largest matmul and tensor of the step would go unused.
                    positions = (targets != IGNORE).any(0).nonzero().squeeze(-1)
                    targets = targets[:, positions]
                    logits = model(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"],
                                   logits_to_keep=positions).logits
                else:
                    width = batch["input_ids"].shape[1]
                    logits = model(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).logits
                    logits = logits[:, logits.shape[1] - width : -1]
            # Mean over assistant tokens of the whole batch, computed in fp32.
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                ignore_index=IGNORE)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            tokens += int(batch["attention_mask"].sum())
            loss_value = float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if on_step is not None:
                on_step(steps, loss_value)
    bar.close()
    seconds = time.perf_counter() - start

    stats = TrainStats(seconds=seconds, tokens=tokens, steps=steps, examples=len(data),
                       final_loss=loss_value)
    with atomic_dir(Path(output_dir)) as tmp:
        accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
        (tmp / "train_stats.json").write_text(json.dumps(stats.model_dump(), indent=2))
    return stats


def load_tuned(base_path: str, tuned_dir: str | Path, *, dtype: str = "float32",
               trust_remote_code: bool = False, quantization: str = "none") -> Any:
    """Load the result of :func:`train`: base + PEFT adapter, or a fully tuned model."""
    from ftrisk.models.io import load_model

    tuned_dir = Path(tuned_dir)
    if (tuned_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(base_path, dtype=dtype, trust_remote_code=trust_remote_code,
                          quantization=quantization)
        tuned = PeftModel.from_pretrained(base, tuned_dir)
        # Merging LoRA makes generation as fast as the base model's; other adapters (and LoRA
        # on quantized weights, which would be rounded) stay separate.
        if tuned.peft_config["default"].peft_type == "LORA" and quantization == "none":
            return tuned.merge_and_unload().eval()
        return tuned.eval()
    return load_model(str(tuned_dir), dtype=dtype, trust_remote_code=trust_remote_code)
