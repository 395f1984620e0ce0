"""Masking: find sensitive data in prompts, mask, redact or block it, restore it in answers.

A `Policy` (detector name -> `Action`) is built once per project when the configuration
loads. `scan_request` applies it to a request body and returns a `MaskResult`: the body to
send, the detectors that fired, the blocking detector if any, and a `Restorer` that puts the
masked values back into the response (`restore_json`) or into a stream (`stream()`, one per
text channel). The engine (detectors, policy, restore) needs nothing of the gateway but
`gateway.errors`.
"""

from gateway.masking._text import Finding
from gateway.masking.custom import CUSTOM_PREFIX, CustomDetector, RegexDetector, WordsDetector
from gateway.masking.detectors import (
    BUILTIN,
    CARD,
    CN_ID,
    EMAIL,
    IBAN,
    IPV4,
    IPV6,
    PHONE,
    SECRET,
    US_SSN,
    Scanner,
)
from gateway.masking.errors import PolicyError, SensitiveDataBlocked
from gateway.masking.policy import Action, MaskResult, Policy, label, scan_request
from gateway.masking.restore import PLACEHOLDER, Restorer, StreamRestorer

__all__ = [
    "BUILTIN",
    "CARD",
    "CN_ID",
    "CUSTOM_PREFIX",
    "EMAIL",
    "IBAN",
    "IPV4",
    "IPV6",
    "PHONE",
    "PLACEHOLDER",
    "SECRET",
    "US_SSN",
    "Action",
    "CustomDetector",
    "Finding",
    "MaskResult",
    "Policy",
    "PolicyError",
    "RegexDetector",
    "Restorer",
    "Scanner",
    "SensitiveDataBlocked",
    "StreamRestorer",
    "WordsDetector",
    "label",
    "scan_request",
]
