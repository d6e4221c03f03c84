"""The engine service (API, dispatcher, status ingester) and the `converge` CLI."""
