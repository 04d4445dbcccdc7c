"""Adapters from public datasets to tact's event schema (pure: rows in, events out)."""
