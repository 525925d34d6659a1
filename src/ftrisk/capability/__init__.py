"""Capability evaluation: multiple-choice tasks scored by log-likelihood, before and after
fine-tuning (readers in :mod:`~ftrisk.capability.tasks`, scoring and metrics in
:mod:`~ftrisk.capability.score`)."""
