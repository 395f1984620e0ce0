"""HTTP endpoints: thin handlers that validate and hand over to `gateway.dispatch`."""
