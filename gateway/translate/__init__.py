"""Pure translation functions between the wire protocols the gateway speaks (OpenAI hub)."""
