"""Model files: loading, fingerprints, tokenizers and the chat templates ftrisk ships."""
