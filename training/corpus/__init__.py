"""Emotional-speech corpora: readers, label mapping, speaker-independent splits, the split
manifest (CSV) that training reads, and augmentation."""
