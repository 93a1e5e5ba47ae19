"""The reference client: stream audio to an emostream server over its WebSocket protocol,
classify recordings offline, and write the results as a table, JSON lines, CSV or WebVTT."""
