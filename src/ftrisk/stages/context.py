"""What every stage shares: the config, the run directory, the cache, and the stage contract.

The contract (:meth:`Context.stage`): a stage fingerprints its inputs; when the run directory
holds a marker with that fingerprint and every file the marker recorded is intact, the stored
output is read back and nothing runs. Otherwise the marker is cleared, the stage computes and
writes its output, and a new marker records the fingerprint and what was written, so a kill
between the two never pairs new output with an old marker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from ftrisk.config import AuditConfig
from ftrisk.errors import FtriskError
from ftrisk.generate.backend import ModelRef, Services
from ftrisk.rundir import RunDir
from ftrisk.store import Store

Log = Callable[[str], None]
T = TypeVar("T")


@dataclass
class Made(Generic[T]):
    """What a stage computed: its value, the files it wrote (inside the run directory) and
    anything else its marker should record."""

    value: T
    outputs: Sequence[str | Path]
    info: dict[str, object] = field(default_factory=dict)


class Context:
    """One replicate's shared state: config, run directory, cache and store, log, thread
    count, seed offset, tokenizers and long-lived services (model servers)."""

    def __init__(self, config: AuditConfig, run: RunDir, cache: Path, *, log: Log,
                 progress: bool, threads: int, services: Services | None = None) -> None:
        self.config = config
        self.run = run
        self.cache = cache
        self.log = log
        self.progress = progress
        #: CPU threads: fixed by config / $FTRISK_THREADS (default all cores), never by load.
        self.threads = threads
        #: Added to the organism's build seed and every attack's training seed (one replicate).
        self.seed_offset = config.seeds[0]
        #: Model servers and other helpers, stopped when the run ends; shared with the
        #: caller's when given (a sweep's cells share one server per model).
        self.owns_services = services is None
        self.services = Services(run.path("logs")) if services is None else services
        self._store: Store | None = None
        self._tokenizers: dict[str, Any] = {}

    @property
    def store(self) -> Store:
        """The content-keyed cache of answers, judgments and capability scores."""
        if self._store is None:
            self._store = Store(self.cache / "store.sqlite", log=self.log)
        return self._store

    def bf16(self) -> bool:
        """Whether local models compute under bf16 autocast (``precision``, or what the
        hardware supports)."""
        if self.config.precision != "auto":
            return self.config.precision == "bf16"
        from ftrisk.runtime import native_bf16

        return native_bf16()

    def cpu_threads(self) -> int | None:
        """The thread count when local models compute on this CPU, where it changes the sums
        (so it is part of every CPU stage's fingerprint); None on a GPU, where it does not."""
        import torch

        return None if torch.cuda.is_available() else self.threads

    def tokenizer(self, path: str) -> Any:
        """The tokenizer of ``path`` with the config's chat template, if one is set."""
        if path not in self._tokenizers:
            from ftrisk.models.io import load_tokenizer

            self._tokenizers[path] = load_tokenizer(
                path, trust_remote_code=self.config.trust_remote_code,
                chat_template=self.config.chat_template)
        return self._tokenizers[path]

    def model_ref(self, path: str, fingerprint: str) -> ModelRef:
        """The local model at ``path``, loaded on first use as the config says (quantization),
        with the dtype it loads in when that is known without loading: float32, or None for
        quantized loads (their dtype is bitsandbytes')."""
        from ftrisk.models.io import load_model

        config = self.config
        return ModelRef(path, fingerprint,
                        lambda: load_model(path, trust_remote_code=config.trust_remote_code,
                                           quantization=config.quantization),
                        dtype="float32" if config.quantization == "none" else None)

    def reused(self, label: str, what: str, stage: str, fingerprint: str,
               read: Callable[[], T]) -> T | None:
        """``read()`` of a stage's stored output when the stage finished with these inputs and
        its outputs are intact; else None, with one line saying why when it is damaged."""
        state = self.run.check(stage, fingerprint)
        if state.problem:
            self.log(f"[{label}] {what}: redoing: {state.problem}")
        if not state.done:
            return None
        try:
            value = read()
        except (OSError, ValueError, KeyError, TypeError, FtriskError) as err:
            reason = " ".join(str(err).split())[:300]
            self.log(f"[{label}] {what}: redoing: the stored output cannot be read ({reason})")
            return None
        self.log(f"[{label}] {what}: done already, skipped")
        return value

    def stage(self, label: str, what: str, stage: str, fingerprint: str, *,
              read: Callable[[], T], make: Callable[[], Made[T]]) -> T:
        """Run ``stage`` under the contract: the stored output when it is done with these
        inputs, else ``make()`` (which writes the outputs) followed by a new marker."""
        stored = self.reused(label, what, stage, fingerprint, read)
        if stored is not None:
            return stored
        self.run.clear(stage)
        made = make()
        self.run.mark_done(stage, fingerprint, outputs=made.outputs, **made.info)
        return made.value
