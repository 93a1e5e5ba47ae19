"""The audio format every part shares: encodings, bytes per sample, sample-rate bounds, the
pipeline rate, and the one pcm16 <-> float conversion (see pcm/format.py)."""
