"""Training, evaluation and export of emotion classifiers (needs the ``train`` extra)."""
