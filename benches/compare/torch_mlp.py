#!/usr/bin/env python3
"""The standard throughput workloads in PyTorch, for the side-by-side comparison.

    python3 benches/compare/torch_mlp.py w1 --threads 1

W1: MLP 784-128-10, batch 64; W2: 784-512-512-10, batch 256; both ReLU, SGD lr 0.1
momentum 0.9. W3: conv(1->32, 3x3) -> ReLU -> maxpool 2 -> conv(32->64, 3x3) -> ReLU ->
maxpool 2 -> flatten (1600) -> linear(128) -> ReLU -> linear(10), Adam lr 1e-3, batch 64.
All: cross-entropy (mean), f32, the 60,000 MNIST training images reshuffled every epoch.
Prints one JSON line like the Rust runners: median samples/s of epochs 2-4 and the test
accuracy after 3 epochs.
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=["w1", "w2", "w3"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "../../data/mnist"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d = a.data_dir
    x = torch.tensor(idx(f"{d}/train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255.0
    y = torch.tensor(idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
    xt = torch.tensor(idx(f"{d}/t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255.0
    yt = torch.tensor(idx(f"{d}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    nn = torch.nn
    if a.workload == "w3":
        batch = 64
        model = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        hidden, batch = ([128], 64) if a.workload == "w1" else ([512, 512], 256)
        layers, width = [], 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        model = nn.Sequential(*layers, nn.Linear(width, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    rates, accuracy = [], 0.0
    for epoch in range(1, 5):
        start = time.perf_counter()
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], batch):
            j = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[j]), y[j])
            loss.backward()
            opt.step()
        secs = time.perf_counter() - start
        if epoch > 1:
            rates.append(x.shape[0] / secs)
        if epoch == 3:
            with torch.no_grad():
                accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    print(json.dumps({
        "impl": f"pytorch {torch.__version__}",
        "workload": a.workload,
        "threads": str(a.threads),
        "samples_per_sec": round(statistics.median(rates)),
        "test_accuracy": round(accuracy, 4),
    }))


if __name__ == "__main__":
    main()
