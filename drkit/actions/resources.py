"""What an action works with: the plan, its stores (wrapped for retries), its keys, and the
catalog (None when the catalog is unavailable and the action can do without it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drkit.errors import UsageError
from drkit.plan.schema import Plan

if TYPE_CHECKING:
    from drkit.catalog import Catalog
    from drkit.crypto import KeyEncryptionKey
    from drkit.stores.base import Store


@dataclass
class Resources:
    plan: Plan
    stores: list[Store]
    keys: list[KeyEncryptionKey]
    catalog: Catalog | None


def open_resources(plan: Plan, catalog: Catalog | None) -> Resources:
    """Build stores and keys from the plan. Nothing is contacted yet: stores and keys connect
    lazily, so one unreachable region or one missing key does not stop the others."""
    from drkit.crypto import keys_from_plan
    from drkit.stores import make_stores

    return Resources(plan, make_stores(plan), keys_from_plan(plan.keys), catalog)


def order_stores(stores: Sequence[Store], first: str | None) -> list[Store]:
    """The plan's order, or the named store first (`--store NAME`)."""
    if first is None:
        return list(stores)
    chosen = [store for store in stores if store.name == first]
    if not chosen:
        names = ", ".join(store.name for store in stores)
        raise UsageError(f"the plan has no store named {first!r}", hint=f"stores: {names}")
    return chosen + [store for store in stores if store.name != first]
