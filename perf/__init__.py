"""perf: load testing and performance tuning for NVIDIA Triton Inference Server."""

__version__ = "0.1.0"
