"""emostream server: Starlette app, protocol, sessions, inference pool and CLI."""
