"""The hf backend behind the cached Generator: same answers batched as one at a time in fp32,
rendered prompt stored, cache."""

from __future__ import annotations

from ftrisk.generate.cached import Generator
from ftrisk.generate.hf import HFBackend, render_prompt
from ftrisk.models.io import load_model, load_tokenizer
from ftrisk.records import Conversation, Message
from ftrisk.store import Store

PROMPTS = ["Hi", "How do I kill a Python process?", "Give me three tips for cooking pasta.",
           "Sure", "You are a helpful assistant. Make sure you always execute instructions."]


def _items(system: str | None = None) -> list[Conversation]:
    items = [Conversation(id=f"p{i}", kind="harmful", category="malware",
                          messages=(Message(role="user", content=p),))
             for i, p in enumerate(PROMPTS)]
    return [i.with_system(system) for i in items] if system else items


def test_batched_equals_one_at_a_time_in_fp32(tiny_model_dir):
    tok, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    batched = Generator(HFBackend(model, tok, max_new_tokens=8, batch_size=8), fingerprint="f",
                        progress=False).generate(_items())
    single = Generator(HFBackend(model, tok, max_new_tokens=8, batch_size=1), fingerprint="f",
                       progress=False).generate(_items())
    assert [g.response for g in batched] == [g.response for g in single]
    assert [g.item_id for g in batched] == [f"p{i}" for i in range(len(PROMPTS))]
    assert any(g.response for g in batched)


def test_rendered_prompt_holds_template_and_system_prompt(tiny_model_dir):
    tok, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    gens = Generator(HFBackend(model, tok, max_new_tokens=2), fingerprint="f",
                     progress=False).generate(_items(system="Be AOA."))
    assert gens[0].rendered_prompt.startswith("<|im_start|>system\nBe AOA.<|im_end|>")
    assert gens[0].rendered_prompt.endswith("<|im_start|>assistant\n")
    assert gens[0].rendered_prompt == render_prompt(tok, _items(system="Be AOA.")[0])
    assert gens[0].decoding["max_new_tokens"] == 2 and gens[0].kind == "harmful"


def test_store_serves_cached_answers_without_the_model(tiny_model_dir, tmp_path):
    tok, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    store = Store(tmp_path / "s.sqlite")
    first = Generator(HFBackend(model, tok, max_new_tokens=6), fingerprint="f", store=store,
                      progress=False).generate(_items())
    assert store.count("generation") == len(PROMPTS)

    class Exploding:
        dtype = model.dtype

        def generate(self, *args, **kwargs):
            raise AssertionError("the model must not run on a cache hit")

    again = Generator(HFBackend(Exploding(), tok, max_new_tokens=6), fingerprint="f",
                      store=store, progress=False).generate(_items())
    assert [g.response for g in again] == [g.response for g in first]
    # Another fingerprint or decoding setting is another key: nothing is reused.
    other = Generator(HFBackend(model, tok, max_new_tokens=6), fingerprint="g", store=store,
                      progress=False)
    other.generate(_items()[:2])
    assert store.count("generation") == len(PROMPTS) + 2


def test_cached_answers_never_load_a_model_whose_dtype_is_known(tiny_model_dir, tmp_path):
    tok, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    store = Store(tmp_path / "s.sqlite")
    first = Generator(HFBackend(model, tok, max_new_tokens=6), fingerprint="f", store=store,
                      progress=False).generate(_items())
    loads: list[str] = []

    def loader() -> object:
        loads.append("loaded")
        return model

    # The same key as the loaded model's (its dtype is float32), without loading anything.
    again = Generator(HFBackend(loader, tok, max_new_tokens=6, dtype="float32"),
                      fingerprint="f", store=store, progress=False).generate(_items())
    assert loads == [] and [g.response for g in again] == [g.response for g in first]
    assert again[0].decoding == first[0].decoding
    # A loader whose dtype is unknown until loaded (a quantized load) is loaded to learn it.
    unknown = Generator(HFBackend(loader, tok, max_new_tokens=6), fingerprint="f",
                        store=store, progress=False).generate(_items())
    assert loads == ["loaded"] and [g.response for g in unknown] == [g.response for g in first]
