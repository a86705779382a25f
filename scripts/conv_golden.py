#!/usr/bin/env python3
"""Golden values and gradients for gradus's convolution, pooling and batch-norm ops, from
PyTorch's torch.nn.functional in float64, with non-default arguments.

Run:  python3 scripts/conv_golden.py > crates/autograd/tests/conv_golden.json
Needs torch (a virtual environment outside the repo: pip install torch numpy). The Rust
test (crates/autograd/tests/conv_golden.rs) reads the JSON; neither it nor CI needs torch.

Every case gives its inputs, the output, and the gradients of sum(output * r) for a fixed
tensor r (so every output element has its own weight in the gradient).
"""
import json
import math

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def tensor(shape, seed):
    # Deterministic, non-symmetric values in about [-2, 2], distinct enough that max-pool
    # windows have no ties.
    n = math.prod(shape)
    vals = [math.sin(seed * 12.9898 + i * 78.233) * 2.0 + 0.001 * i for i in range(n)]
    return torch.tensor(vals).reshape(shape)


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def case(name, fn, inputs, kwargs, extra=None):
    leaves = [t.clone().requires_grad_(g) for t, g in inputs]
    out = fn(*leaves)
    r = tensor(list(out.shape), 99)
    (out * r).sum().backward()
    c = {
        "name": name,
        "kwargs": kwargs,
        "inputs": [{"shape": list(t.shape), "values": flat(t)} for t, _ in inputs],
        "r": flat(r),
        "output": {"shape": list(out.shape), "values": flat(out)},
        "grads": [flat(l.grad) if l.grad is not None else None for l in leaves],
    }
    if extra:
        c.update(extra)
    return c


cases = []
x = tensor([2, 4, 7, 6], 1)
w = tensor([6, 2, 3, 2], 2)
b = tensor([6], 3)
kw = dict(stride=[2, 1], padding=[1, 2], dilation=[2, 1], groups=2)
cases.append(case("conv2d_groups_stride_padding_dilation", lambda x, w, b: F.conv2d(x, w, b, **kw), [(x, True), (w, True), (b, True)], kw))
x2 = tensor([3, 3, 8, 8], 4)
w2 = tensor([5, 3, 3, 3], 5)
kw2 = dict(stride=[2, 2], padding=[1, 1], dilation=[1, 1], groups=1)
cases.append(case("conv2d_stride2_padding1_no_bias", lambda x, w: F.conv2d(x, w, None, **kw2), [(x2, True), (w2, True)], kw2))
# 3x3 at stride 1 with 16 or more channels: gradus computes it by Winograd's F(2x2, 3x3).
xw = tensor([2, 16, 7, 6], 12)
ww = tensor([17, 16, 3, 3], 13) * 0.25
bw = tensor([17], 14)
kww = dict(stride=[1, 1], padding=[1, 0], dilation=[1, 1], groups=1)
cases.append(case("conv2d_3x3_winograd_padding", lambda x, w, b: F.conv2d(x, w, b, **kww), [(xw, True), (ww, True), (bw, True)], kww))
xp = tensor([2, 3, 7, 6], 6)
kmp = dict(kernel=[3, 2], stride=[2, 1], padding=[1, 1])
cases.append(case("max_pool2d", lambda x: F.max_pool2d(x, kmp["kernel"], kmp["stride"], kmp["padding"]), [(xp, True)], kmp))
kap = dict(kernel=[3, 3], stride=[2, 2], padding=[1, 1])
cases.append(case("avg_pool2d", lambda x: F.avg_pool2d(x, kap["kernel"], kap["stride"], kap["padding"]), [(xp, True)], kap))
kad = dict(output=[4, 3])
cases.append(case("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, kad["output"]), [(xp, True)], kad))
cases.append(case("adaptive_avg_pool2d_global", lambda x: F.adaptive_avg_pool2d(x, [1, 1]), [(xp, True)], dict(output=[1, 1])))

xb = tensor([4, 3, 5, 5], 7)
gamma = tensor([3], 8)
beta = tensor([3], 9)
rm = tensor([3], 10)
rv = tensor([3], 11).abs() + 0.5
for training in (True, False):
    rm_t, rv_t = rm.clone(), rv.clone()
    kbn = dict(training=training, momentum=0.3, eps=1e-3, running_mean=flat(rm), running_var=flat(rv))
    c = case(
        f"batch_norm_{'train' if training else 'eval'}",
        lambda x, g, b: F.batch_norm(x, rm_t, rv_t, g, b, training=training, momentum=0.3, eps=1e-3),
        [(xb, True), (gamma, True), (beta, True)],
        kbn,
    )
    # F.batch_norm updated rm_t / rv_t in place (in training): the new running statistics.
    c["running_mean_after"] = flat(rm_t)
    c["running_var_after"] = flat(rv_t)
    cases.append(c)

print(json.dumps({"torch": torch.__version__, "cases": cases}))
