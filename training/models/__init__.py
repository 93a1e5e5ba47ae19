"""Models: fine-tuning wav2vec2, the small mel CNN, evaluation and scoring, ONNX export and
int8 quantisation, and what a served model costs."""
