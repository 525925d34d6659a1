"""The stages of an audit, one file each, sharing one Context (see stages/context.py)."""
