"""Thin Faust agents: decode -> call the core -> encode -> send."""
