from __future__ import annotations

import asyncio

from app.store import InMemoryStateStore
from tests.store_contract import check_store_contract


def test_in_memory_store_contract() -> None:
    asyncio.run(check_store_contract(InMemoryStateStore()))
