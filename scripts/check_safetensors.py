#!/usr/bin/env python3
"""Loads a gradus safetensors export into the equivalent PyTorch nn.Sequential and reports
its MNIST test accuracy, to compare with what gradus reports for the same weights.

    cargo run --example mnist -- --safetensors mnist-mlp.safetensors
    python3 scripts/check_safetensors.py mnist-mlp.safetensors [data/mnist]
    cargo run --example mnist -- --model cnn --safetensors mnist-cnn.safetensors
    python3 scripts/check_safetensors.py mnist-cnn.safetensors [data/mnist]

A file with BatchNorm buffers (running_mean, ...) is the example's CNN, rebuilt as the same
nn.Sequential and loaded with strict=True: buffers included, every name and shape must match.

Needs torch, numpy and safetensors (a virtual environment outside the repo).
"""
import gzip
import sys

import numpy as np
import torch
from safetensors.torch import load_file


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


path = sys.argv[1]
data_dir = sys.argv[2] if len(sys.argv) > 2 else "data/mnist"
state = load_file(path)
nn = torch.nn
if any(k.endswith("running_mean") for k in state):
    # examples/mnist.rs --model cnn, layer for layer.
    model = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )
else:
    # Rebuild the MLP from the names: "0.weight", "2.weight", ... with ReLU between.
    indices = sorted({int(k.split(".")[0]) for k in state})
    layers = []
    for n, i in enumerate(indices):
        out_f, in_f = state[f"{i}.weight"].shape
        while len(layers) < i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(in_f, out_f, bias=f"{i}.bias" in state))
    model = nn.Sequential(*layers)
model.load_state_dict(state, strict=True)  # every name and shape must match, buffers too
model.eval()  # BatchNorm uses its running statistics, as gradus's evaluation does
x = torch.tensor(idx(f"{data_dir}/t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255.0
y = torch.tensor(idx(f"{data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
with torch.no_grad():
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
print(f"PyTorch {torch.__version__}: {model}")
print(f"test loss {loss:.4f}, test accuracy {100 * acc:.2f}%")
