"""Fake model-provider servers speaking the real wire protocols, with injectable faults."""

from .anthropic import FakeAnthropic
from .azure import FakeAzure
from .base import FakeUpstream, Fault, RecordedRequest
from .gemini import FakeGemini
from .openai import FakeOpenAI

FAKES: dict[str, type[FakeUpstream]] = {
    "openai": FakeOpenAI,
    "anthropic": FakeAnthropic,
    "gemini": FakeGemini,
    "azure": FakeAzure,
}

__all__ = [
    "FAKES",
    "FakeAnthropic",
    "FakeAzure",
    "FakeGemini",
    "FakeOpenAI",
    "FakeUpstream",
    "Fault",
    "RecordedRequest",
]
