"""The product catalog (`--catalog` JSONL): prices, unit costs, kinds and relations.

One JSON object per line:
    {"sku": "RUN-GEL-12", "title": "Energy gels", "category": "nutrition", "price": 21.0,
     "unit_cost": 9.5, "kind": "consumable", "refill_days": 30,
     "related": {"subscription": "RUN-GEL-SUB", "bundle_with": ["RUN-BOTTLE-01"]}}

`related` may name accessories, bundle_with, subscription, warranty and upgrade (each a SKU or
a list of SKUs). Where a product names no relations, tact learns related items from what is
bought together (app/affinity.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from app import codec
from app.decode import describe_validation_error
from app.errors import ConfigurationError

log = logging.getLogger(__name__)
_MAX_LEVEL = 4.0  # doublings of the median price the price level counts

Kind = Literal["core", "accessory", "consumable", "subscription", "warranty", "premium"]
Relation = Literal["accessories", "bundle_with", "subscription", "warranty", "upgrade"]
RELATIONS: tuple[Relation, ...] = (
    "accessories",
    "bundle_with",
    "subscription",
    "warranty",
    "upgrade",
)


def _as_list(value: object) -> object:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


SkuList = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_as_list)]


class RelatedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accessories: SkuList = []
    bundle_with: SkuList = []
    subscription: SkuList = []
    warranty: SkuList = []
    upgrade: SkuList = []


class ProductSpec(BaseModel):
    """One catalog line."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: Annotated[str, Field(min_length=1, max_length=128)]
    title: str = ""
    category: str = "uncategorised"
    price: float = Field(ge=0, allow_inf_nan=False, strict=True)  # a number, never "12"
    unit_cost: float = Field(ge=0, allow_inf_nan=False, strict=True)
    kind: Kind = "core"
    related: RelatedSpec = RelatedSpec()
    refill_days: int | None = Field(default=None, ge=1, le=3650)


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    title: str
    category: str
    price: float
    unit_cost: float
    kind: Kind
    refill_days: int | None
    related: tuple[tuple[Relation, str], ...]
    # how dear the item is for this store (price_level: from_specs works it out)
    price_level: float = field(default=0.0, compare=False, repr=False)
    # Worked out once (read for every offer of every moment):
    margin: float = field(init=False, compare=False, repr=False)  # price - unit cost
    margin_rate: float = field(init=False, compare=False, repr=False)  # margin / price (0: free)

    def __post_init__(self) -> None:
        margin = self.price - self.unit_cost
        object.__setattr__(self, "margin", margin)
        object.__setattr__(self, "margin_rate", margin / self.price if self.price > 0 else 0.0)


def median_price(prices: Iterable[float]) -> float:
    """The median of the prices above 0 (the upper one of an even count; 0 for none)."""
    above = sorted(p for p in prices if p > 0)
    return above[len(above) // 2] if above else 0.0


def price_level(price: float, median: float) -> float:
    """How dear an item is for its store: log2 of (its price + 1) over (the catalog's median
    price + 1), 0 to 4 (a catalog with other items moves it)."""
    return min(max(math.log2((price + 1.0) / (median + 1.0)), 0.0), _MAX_LEVEL)


class Catalog:
    """Products by SKU, and the catalog's relations between them."""

    def __init__(self, products: Iterable[Product]) -> None:
        self.products: dict[str, Product] = {p.sku: p for p in products}
        # the product of an SKU, or None (the dict's own method: no Python call per lookup)
        self.get: Callable[[str], Product | None] = self.products.get
        self.related_by_relation: dict[tuple[str, Relation], tuple[str, ...]] = {}
        for product in self.products.values():
            for relation in RELATIONS:
                skus = tuple(s for r, s in product.related if r == relation)
                if skus:
                    self.related_by_relation[(product.sku, relation)] = skus

    def __len__(self) -> int:
        return len(self.products)

    def __contains__(self, sku: object) -> bool:
        return sku in self.products

    def related(self, sku: str, relation: Relation) -> tuple[str, ...]:
        return self.related_by_relation.get((sku, relation), ())

    @classmethod
    def from_specs(cls, specs: Iterable[ProductSpec]) -> Catalog:
        specs = list(specs)
        median = median_price(s.price for s in specs)
        products = [
            Product(
                s.sku,
                s.title,
                s.category,
                s.price,
                s.unit_cost,
                s.kind,
                s.refill_days,
                tuple((r, sku) for r in RELATIONS for sku in getattr(s.related, r)),
                price_level(s.price, median),
            )
            for s in specs
        ]
        catalog = cls(products)
        catalog._check()
        return catalog

    @classmethod
    def from_jsonl(cls, path: str | Path) -> Catalog:
        """Load a catalog file; ConfigurationError names the line and field of any mistake.
        Products sold at a loss (unit cost above price: a loss leader, or swapped columns)
        are allowed, with a warning."""
        catalog = cls.from_specs(_read_specs(Path(path)))
        losses = [p for p in catalog.products.values() if p.unit_cost > p.price]
        if losses:
            first = losses[0]
            log.warning(
                "%s: %d products cost more than their price (e.g. %s: unit_cost %g, price %g): "
                "every sale of them loses money; are price and unit_cost swapped?",
                path,
                len(losses),
                first.sku,
                first.unit_cost,
                first.price,
            )
        return catalog

    def _check(self) -> None:
        unknown = sorted(
            {
                f"{p.sku} -> {s}"
                for p in self.products.values()
                for _, s in p.related
                if s not in self.products
            }
        )
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ConfigurationError(f"catalog relations name unknown SKUs: {shown}")


def _read_specs(path: Path) -> Iterator[ProductSpec]:
    if not path.is_file():
        raise ConfigurationError(f"catalog file not found: {path}")
    seen: set[str] = set()
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                spec = ProductSpec.model_validate(codec.loads(line))
            except codec.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}:{number}: not JSON: {exc}") from None
            except ValidationError as exc:
                raise ConfigurationError(
                    f"{path}:{number}: {describe_validation_error(exc, 'product')}"
                ) from None
            if spec.sku in seen:
                raise ConfigurationError(f"{path}:{number}: duplicate sku {spec.sku!r}")
            seen.add(spec.sku)
            yield spec


def write_jsonl(specs: Iterable[ProductSpec], path: str | Path) -> None:
    """Write catalog lines (used by the sample and dataset adapters)."""
    with Path(path).open("wb") as out:
        for spec in specs:
            out.write(codec.dumps_line(spec.model_dump(exclude_defaults=True)))
