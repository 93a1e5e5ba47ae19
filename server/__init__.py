"""emostream server: Starlette app, protocol, sessions, inference pool, uploads, settings."""
