"""Releases: a checkpoint exported, evaluated and written as a served model directory, and
the recipe and card of the bundled default model."""
