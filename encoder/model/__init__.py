"""The model wing: its files, what its card says, graph preparation, int8, the ONNX runtime."""
