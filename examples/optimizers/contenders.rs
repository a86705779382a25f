//! The contenders: every gradient-descent variant with the settings the race uses.

use gradus::autograd::Float;
use gradus::optim::{Adagrad, Adam, Optimizer, RmsProp, Sgd};

/// One member of the gradient-descent family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Plain GD over the whole training set per step.
    BatchGd,
    /// Plain GD over one sample per step.
    StochasticGd,
    /// Plain GD over 64 samples per step.
    MiniBatchGd,
    /// Heavy-ball momentum 0.9.
    Momentum,
    /// Nesterov momentum 0.9.
    Nesterov,
    Adagrad,
    RmsProp,
    Adam,
    AdamW,
}

pub const ALL: [Kind; 9] = [
    Kind::BatchGd,
    Kind::StochasticGd,
    Kind::MiniBatchGd,
    Kind::Momentum,
    Kind::Nesterov,
    Kind::Adagrad,
    Kind::RmsProp,
    Kind::Adam,
    Kind::AdamW,
];

impl Kind {
    /// The name used in flags, tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Kind::BatchGd => "batch-gd",
            Kind::StochasticGd => "sgd",
            Kind::MiniBatchGd => "minibatch-gd",
            Kind::Momentum => "momentum",
            Kind::Nesterov => "nesterov",
            Kind::Adagrad => "adagrad",
            Kind::RmsProp => "rmsprop",
            Kind::Adam => "adam",
            Kind::AdamW => "adamw",
        }
    }

    pub fn parse(s: &str) -> Result<Kind, String> {
        ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown optimizer `{s}`, expected one of {}",
                names.join(", ")
            )
        })
    }

    /// Samples per step on a training set of `n` samples.
    pub fn batch(self, n: usize) -> usize {
        match self {
            Kind::BatchGd => n,
            Kind::StochasticGd => 1,
            _ => 64,
        }
    }

    /// Learning rate on MNIST: each is a common, sensible setting for its rule.
    pub fn mnist_lr(self) -> f64 {
        match self {
            Kind::BatchGd => 0.5,
            Kind::StochasticGd => 0.01,
            Kind::MiniBatchGd => 0.1,
            Kind::Momentum | Kind::Nesterov => 0.05,
            Kind::Adagrad => 0.05,
            Kind::RmsProp | Kind::Adam | Kind::AdamW => 1e-3,
        }
    }

    /// The optimizer with PyTorch's defaults for everything but the learning rate
    /// (momentum 0.9 for the two momentum variants).
    pub fn build<T: Float>(self, lr: f64) -> Box<dyn Optimizer<T>> {
        match self {
            Kind::BatchGd | Kind::StochasticGd | Kind::MiniBatchGd => Box::new(Sgd::new(lr)),
            Kind::Momentum => Box::new(Sgd::new(lr).momentum(0.9)),
            Kind::Nesterov => Box::new(Sgd::new(lr).nesterov(0.9)),
            Kind::Adagrad => Box::new(Adagrad::new(lr)),
            Kind::RmsProp => Box::new(RmsProp::new(lr)),
            Kind::Adam => Box::new(Adam::new(lr)),
            Kind::AdamW => Box::new(Adam::adamw(lr)),
        }
    }
}
