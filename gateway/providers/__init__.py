"""Provider adapters: one per wire protocol, each knowing its URLs, headers and errors."""
