"""The synthetic speech corpus: sentences spoken by espeak-ng with emotional prosody, room
acoustics and noise, and the independent set (docs/synthetic-corpus.md)."""
