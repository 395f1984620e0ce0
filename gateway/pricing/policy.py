"""What a project does with a model that has no price, and the refusal a client then sees.

`projects.unpriced` holds the admin's choice: 'refuse', 'allow' (the request runs at zero cost,
recorded with priced = 0, and the hot path raises an alert), or 'auto', the default: refuse
where a hard budget applies to the request (an unpriced request would spend outside it),
allow otherwise.
"""

from __future__ import annotations

from typing import Literal

from gateway.errors import GatewayError

UNPRICED_POLICIES = ("auto", "refuse", "allow")
Decision = Literal["refuse", "allow"]


def unpriced_decision(policy: str, hard_budget_applies: bool) -> Decision:
    """'refuse' or 'allow' for a request to an unpriced model under a project's `policy`."""
    if policy == "refuse":
        return "refuse"
    if policy == "allow":
        return "allow"
    if policy == "auto":
        return "refuse" if hard_budget_applies else "allow"
    raise ValueError(f"unknown unpriced-model policy {policy!r}; use one of {UNPRICED_POLICIES}")


class ModelNotPriced(GatewayError):
    """The model has no price and the project refuses unpriced models (403).

    403, like `model_not_allowed`: the request is well formed, but this box's policy does not
    let this key use this model until an admin prices it; retrying cannot help.
    """

    status = 403
    code = "model_not_priced"
    openai_type = "permission_error"

    @classmethod
    def for_model(cls, alias: str, provider: str, upstream_model: str) -> ModelNotPriced:
        """The refusal for `alias`, saying how an admin prices it."""
        return cls(
            f"the model {alias!r} has no price on this gateway, and your project does not run "
            f"unpriced models; an administrator can price it with `aigw prices set {provider} "
            f"{upstream_model} --input ... --output ...` (or POST /admin/v1/prices), or allow "
            "unpriced models for the project (`aigw projects update NAME --unpriced allow`)",
            param="model",
        )
