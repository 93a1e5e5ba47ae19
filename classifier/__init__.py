"""The model contract shared by server, training and bench: the model directory format
(manifest, labels, sha256) and the ONNX Runtime classifier that runs it."""
