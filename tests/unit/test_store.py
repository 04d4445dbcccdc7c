from __future__ import annotations

import asyncio

from app.store import InMemoryStateStore
from tests.store_contract import (
    check_journal_contract,
    check_models_contract,
    check_store_contract,
)


def test_in_memory_store_contract() -> None:
    asyncio.run(check_store_contract(InMemoryStateStore()))
    asyncio.run(check_models_contract(InMemoryStateStore()))


def test_in_memory_journal_contract() -> None:
    store = InMemoryStateStore()
    asyncio.run(check_journal_contract(store, lambda p: store.journals.get(p, [])))
