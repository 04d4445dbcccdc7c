"""tact's decision core. Modules directly under `app/` are pure (no faust, kafka or redis
imports); the edges live in `app/io/` and `app/cli.py`."""
