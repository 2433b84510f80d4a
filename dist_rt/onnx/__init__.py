"""ONNX import (ModelProto -> Network) and export (Network -> ModelProto)."""
