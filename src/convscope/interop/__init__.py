"""Bring your own model: convert PyTorch modules and ONNX files to convscope models and back."""
