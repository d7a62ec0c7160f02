"""What an action works with: the plan, its repository (stores wrapped for retries, and keys),
and the catalog (None when the catalog is unavailable and the action can do without it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drkit.plan.schema import Plan
from drkit.repository import Repository

if TYPE_CHECKING:
    from drkit.catalog import Catalog
    from drkit.crypto import KeyEncryptionKey
    from drkit.stores.base import Store


@dataclass
class Resources:
    plan: Plan
    repository: Repository
    catalog: Catalog | None

    @property
    def stores(self) -> list[Store]:
        return self.repository.stores

    @stores.setter
    def stores(self, stores: list[Store]) -> None:
        """Replace the stores (tests wrap them in fault injectors)."""
        self.repository.stores = list(stores)

    @property
    def keys(self) -> list[KeyEncryptionKey]:
        return self.repository.keys


def open_resources(plan: Plan, catalog: Catalog | None) -> Resources:
    """Build stores and keys from the plan. Nothing is contacted yet: stores and keys connect
    lazily, so one unreachable region or one missing key does not stop the others."""
    from drkit.crypto import keys_from_plan
    from drkit.stores import make_stores

    return Resources(
        plan, Repository(plan.name, make_stores(plan), keys_from_plan(plan.keys)), catalog
    )
