"""Prices: the shipped list, the admin's price table, the in-memory book the hot path reads,
and what happens to a model without a price.

The hot path uses `PriceBook.lookup`, `Price.cost`, `worst_case`, `unpriced_decision` and
`ModelNotPriced`; admin writes go through `gateway.pricing.store`; people's decimal amounts
become micro-units with `to_micros`.
"""

from gateway.pricing._values import to_micros
from gateway.pricing.book import Price, PriceBook, worst_case
from gateway.pricing.policy import UNPRICED_POLICIES, ModelNotPriced, unpriced_decision
from gateway.pricing.store import seed_defaults

__all__ = [
    "UNPRICED_POLICIES",
    "ModelNotPriced",
    "Price",
    "PriceBook",
    "seed_defaults",
    "to_micros",
    "unpriced_decision",
    "worst_case",
]
