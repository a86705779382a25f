#!/usr/bin/env python3
"""Golden numbers for gradus-optim, produced by PyTorch's torch.optim.

Run:  python3 scripts/optim_golden.py > crates/optim/tests/golden.json
Needs torch and numpy (a virtual environment outside the repo: pip install torch numpy).
The Rust tests read the JSON; neither they nor CI need torch.

Every optimizer case starts from the same f64 parameters and applies the same fixed
gradient sequence (gradients are given, not computed, so only the update rule is tested).
"""
import json
import math

import torch

STEPS = 6
torch.set_default_dtype(torch.float64)

initial = {
    "a": [[0.5, -1.25, 2.0], [0.75, -0.3, 1.1]],
    "b": [0.2, -0.4, 0.9],
}


def grad_at(step):
    # Varied signs and magnitudes; some steps reverse sign so momentum terms matter.
    a = [[math.sin(1.3 * step + i * 3 + j) * (1.0 + 0.5 * j) for j in range(3)] for i in range(2)]
    b = [math.cos(0.7 * step + k) * (0.1 + k) for k in range(3)]
    return {"a": a, "b": b}


GRADS = [grad_at(s) for s in range(STEPS)]

CASES = [
    ("sgd", "SGD", dict(lr=0.1)),
    ("sgd_weight_decay", "SGD", dict(lr=0.1, weight_decay=0.05)),
    ("sgd_momentum", "SGD", dict(lr=0.1, momentum=0.9)),
    ("sgd_momentum_dampening", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("sgd_nesterov", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd_nesterov_weight_decay", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("adagrad", "Adagrad", dict(lr=0.1)),
    ("adagrad_lr_decay_init_acc", "Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.2)),
    ("adagrad_weight_decay", "Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6)),
    ("rmsprop", "RMSprop", dict(lr=0.01)),
    ("rmsprop_centered", "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop_momentum", "RMSprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop_centered_momentum_wd", "RMSprop", dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1)),
    ("adam", "Adam", dict(lr=0.01)),
    ("adam_betas_eps", "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    ("adam_weight_decay", "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam_amsgrad", "Adam", dict(lr=0.01, amsgrad=True)),
    ("adamw", "AdamW", dict(lr=0.01)),
    ("adamw_amsgrad_wd", "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]


def run_case(cls, kwargs):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial.items()}
    opt = getattr(torch.optim, cls)([params["a"], params["b"]], **kwargs)
    out = []
    for g in GRADS:
        for k in params:
            params[k].grad = torch.tensor(g[k])
        opt.step()
        out.append({k: params[k].detach().tolist() for k in params})
    return out


def schedule_lrs(make, steps, base_lr=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


S = torch.optim.lr_scheduler
SCHEDULES = {
    "step": (lambda o: S.StepLR(o, step_size=3, gamma=0.5), 12),
    "exponential": (lambda o: S.ExponentialLR(o, gamma=0.9), 12),
    "cosine": (lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 21),
    "linear_warmup": (lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4), 8),
    "one_cycle": (lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=20, cycle_momentum=False), 20),
    "one_cycle_linear": (
        lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=15, pct_start=0.4, anneal_strategy="linear",
                               div_factor=10.0, final_div_factor=100.0, cycle_momentum=False),
        15,
    ),
}


# OneCycle with momentum cycling (PyTorch's default cycle_momentum=True): the scheduler sets
# lr and momentum (SGD, RMSprop) or beta1 (Adam) before every step.
CYCLED = [
    ("one_cycle_sgd_momentum", "SGD", dict(lr=0.1, momentum=0.9), dict(max_lr=0.5, total_steps=10)),
    ("one_cycle_sgd_plain", "SGD", dict(lr=0.1), dict(max_lr=0.5, total_steps=10)),
    ("one_cycle_nesterov_linear", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True),
     dict(max_lr=0.3, total_steps=8, anneal_strategy="linear", base_momentum=0.8, max_momentum=0.9)),
    ("one_cycle_rmsprop", "RMSprop", dict(lr=0.01, momentum=0.5), dict(max_lr=0.02, total_steps=10)),
    ("one_cycle_adam", "Adam", dict(lr=0.01), dict(max_lr=0.05, total_steps=10)),
]


def run_cycled(cls, kwargs, sched_kwargs):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial.items()}
    opt = getattr(torch.optim, cls)([params["a"], params["b"]], **kwargs)
    sched = S.OneCycleLR(opt, **sched_kwargs)
    out, lrs, momenta = [], [], []
    for g in GRADS:
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
        for k in params:
            params[k].grad = torch.tensor(g[k])
        opt.step()
        sched.step()
        out.append({k: params[k].detach().tolist() for k in params})
    return {"expected": out, "lrs": lrs, "momenta": momenta}


def defaults():
    p = [torch.zeros(1, requires_grad=True)]
    out = {}
    for name in ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]:
        d = getattr(torch.optim, name)(p).defaults
        out[name] = {k: v for k, v in d.items() if isinstance(v, (int, float, bool, tuple, list))}
    return out


def clip():
    g1 = torch.tensor([[3.0, -4.0], [1.0, 2.0]])
    g2 = torch.tensor([12.0, -1.0])
    ps = [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    ps[0].grad, ps[1].grad = g1.clone(), g2.clone()
    norm = torch.nn.utils.clip_grad_norm_(ps, max_norm=5.0)
    clipped = [p.grad.tolist() for p in ps]
    ps[0].grad, ps[1].grad = g1.clone(), g2.clone()
    torch.nn.utils.clip_grad_value_(ps, clip_value=2.5)
    valued = [p.grad.tolist() for p in ps]
    return {"norm": norm.item(), "clipped": clipped, "valued": valued}


print(json.dumps({
    "generator": "scripts/optim_golden.py, torch " + torch.__version__,
    "initial": initial,
    "grads": GRADS,
    "cases": [{"name": n, "optimizer": c, "kwargs": k, "expected": run_case(c, k)} for n, c, k in CASES],
    "schedules": {n: schedule_lrs(m, s) for n, (m, s) in SCHEDULES.items()},
    "cycled": [{"name": n, "optimizer": c, "kwargs": k, "schedule": sk, **run_cycled(c, k, sk)}
               for n, c, k, sk in CYCLED],
    "defaults": defaults(),
    "clip": clip(),
}, indent=1))
