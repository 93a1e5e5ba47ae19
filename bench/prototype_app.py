"""The prototype's way of serving, rebuilt for the end-to-end comparison (benchmark 2).

Flask on its threaded development server; each upload is saved to a temporary file,
classified by a Transformers ``pipeline("audio-classification")`` (ffmpeg decode,
PyTorch fp32), and the file deleted. Only for benchmarks: it has none of the real
server's limits or validation.

    .venv/bin/python -m bench.prototype_app --model artifacts/bench/wav2vec2-base-seed0/hf
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request


def create_app(model_dir: Path, threads: int) -> Flask:
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    classifier = pipeline("audio-classification", model=str(model_dir), device="cpu")
    app = Flask(__name__)

    @app.post("/predict")
    def predict() -> Any:
        upload = request.files.get("file")
        if upload is None:
            return jsonify({"error": "no file field"}), 400
        fd, path = tempfile.mkstemp(suffix=".wav")
        os.close(fd)
        try:
            upload.save(path)
            scores = classifier(path)
        finally:
            os.remove(path)
        best = max(scores, key=lambda s: s["score"])
        return jsonify({"label": best["label"], "confidence": best["score"], "scores": scores})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="Transformers model directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)
    create_app(args.model, args.threads).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
