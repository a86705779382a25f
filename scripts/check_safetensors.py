#!/usr/bin/env python3
"""Loads a gradus safetensors export into the equivalent PyTorch nn.Sequential and reports
its MNIST test accuracy, to compare with what gradus reports for the same weights.

    cargo run --example mnist -- --safetensors mnist-mlp.safetensors
    python3 scripts/check_safetensors.py mnist-mlp.safetensors [data/mnist]

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
# Rebuild the nn.Sequential from the names: "0.weight", "2.weight", ... with ReLU between.
indices = sorted({int(k.split(".")[0]) for k in state})
layers = []
for n, i in enumerate(indices):
    out_f, in_f = state[f"{i}.weight"].shape
    while len(layers) < i:
        layers.append(torch.nn.ReLU())
    layers.append(torch.nn.Linear(in_f, out_f, bias=f"{i}.bias" in state))
model = torch.nn.Sequential(*layers)
model.load_state_dict(state)  # strict: every name and shape must match
x = torch.tensor(idx(f"{data_dir}/t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255.0
y = torch.tensor(idx(f"{data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
with torch.no_grad():
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
print(f"PyTorch {torch.__version__}: {model}")
print(f"test loss {loss:.4f}, test accuracy {100 * acc:.2f}%")
