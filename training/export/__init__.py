"""Exports of trained checkpoints for serving: TorchServe archives, ONNX for Triton."""
