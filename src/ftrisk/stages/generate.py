"""The generation stage: one condition's answers to every benchmark prompt, from its model."""

from __future__ import annotations

from typing import Any

from ftrisk.config import EvalSpec, GenerationSpec
from ftrisk.data.sources import apply_eval_spec
from ftrisk.generate.backend import ModelRef
from ftrisk.protocols import ChatBackend
from ftrisk.records import Conversation, Generation
from ftrisk.rundir import stage_fingerprint
from ftrisk.stages.context import Context, Made


def backend_for(ctx: Context, model: ModelRef, gen: GenerationSpec) -> ChatBackend:
    """The generation backend for ``model``: its provider's endpoint for a hosted model,
    else the configured local backend (which loads or serves the model only if an answer
    is not cached)."""
    if model.remote is not None:
        from ftrisk.generate.openai_api import OpenAIBackend

        r = ctx.config.remote
        return OpenAIBackend(
            model.remote, base_url=r.base_url, api_key_env=r.api_key_env,
            concurrency=r.concurrency, timeout=r.timeout, max_retries=r.max_retries,
            temperature=0.0, max_tokens=gen.max_new_tokens)
    from ftrisk.registry import GENERATION_BACKENDS

    return GENERATION_BACKENDS.get(gen.backend).for_model(
        model, ctx.tokenizer(model.path), gen, bf16=ctx.bf16(), services=ctx.services)


def answer(ctx: Context, model: ModelRef, items: list[Conversation], backend: ChatBackend,
           desc: str) -> list[Generation]:
    """Answers to ``items`` through the content-keyed cache, with one line of counts."""
    from ftrisk.generate.cached import Generator

    generator = Generator(backend, fingerprint=model.fingerprint, store=ctx.store,
                          progress=ctx.progress)
    generations = generator.generate(items, desc=desc)
    ctx.log(f"[{desc.split(':')[0]}] generated {len(items) - generator.last_cached} "
            f"answers ({generator.last_cached} from cache)")
    return generations


def _settings(gen: GenerationSpec) -> dict[str, Any]:
    """The generation settings answers depend on (vLLM's only when vLLM answers)."""
    return gen.model_dump(mode="json", exclude=None if gen.backend == "vllm" else {"vllm"})


def _annotated(generations: list[Generation], items: list[Conversation]) -> list[Generation]:
    """Generations with the raw instruction (what judges are shown) and the cluster of
    their benchmark item."""
    by_id = {i.id: i for i in items}
    out = []
    for g in generations:
        item = by_id.get(g.item_id)
        if item is None:
            out.append(g)
            continue
        raw = item.prompt
        out.append(g.model_copy(update={"instruction": None if raw == g.prompt else raw,
                                        "cluster": item.cluster}))
    return out


def generate(ctx: Context, name: str, model: ModelRef, spec: EvalSpec,
             items: list[Conversation]) -> list[Generation]:
    """Generation stage of condition ``name``: ``model`` answers the benchmark ``items``
    as ``spec`` presents them (skipped when done with the same inputs)."""
    asked = apply_eval_spec(items, spec)
    backend = backend_for(ctx, model, ctx.config.generation)
    rendered = [backend.render([m.chat() for m in i.messages]) for i in asked]
    # The rendered prompts (template included) are what the model sees; ids and kinds
    # decide how answers are scored. A hosted model's answers do not depend on this
    # machine's threads.
    threads = None if model.remote is not None else ctx.cpu_threads()
    fingerprint = stage_fingerprint(
        model.fingerprint, rendered, [(i.id, i.kind, i.category) for i in asked],
        _settings(ctx.config.generation), ctx.bf16(), threads)
    out = f"conditions/{name}/generations.jsonl"

    def make() -> Made[list[Generation]]:
        # Stored with what judges need, so re-judging reads nothing but the run directory.
        generations = _annotated(answer(ctx, model, asked, backend, desc=f"{name}: generate"),
                                 items)
        ctx.run.write_jsonl(out, generations)
        return Made(generations, [out], {
            "n": len(generations), "threads": None if model.remote is not None else ctx.threads})

    # Stored answers are annotated again: an item's cluster may change without its prompt.
    return ctx.stage(name, "generations", f"{name}/generate", fingerprint,
                     read=lambda: _annotated(ctx.run.read_jsonl(out, Generation), items),
                     make=make)
