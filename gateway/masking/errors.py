"""The masking engine's errors: a policy that cannot be built, and a request it refuses."""

from __future__ import annotations

from gateway.errors import GatewayError


class PolicyError(ValueError):
    """A masking rule or custom detector in the configuration is wrong; the message names it."""


class SensitiveDataBlocked(GatewayError):
    """The policy blocks a kind of data the prompt contains (400); names the detector only."""

    status = 400
    code = "sensitive_data_blocked"
    openai_type = "invalid_request_error"

    def __init__(self, detector: str) -> None:
        # Never the value: the message reaches the client, the logs and the ledger.
        super().__init__(
            f"the request was refused by this project's data protection policy: the prompt "
            f"contains data of type {detector!r}; remove it and send the request again"
        )
        self.detector = detector
