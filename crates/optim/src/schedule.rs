//! Learning-rate schedules as pure functions of the step, equal to PyTorch's
//! `lr_scheduler` classes. A schedule composes with any optimizer: before step `t` the
//! training loop sets `opt.set_lr(schedule.lr_at(base_lr, t))`.

use serde::{Deserialize, Serialize};

/// How OneCycle moves between its end points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anneal {
    /// Half a cosine (PyTorch's default).
    Cos,
    /// A straight line.
    Linear,
}

/// A learning rate as a function of the step number `t` (0 for the first step).
///
/// ```
/// use gradus_optim::Schedule;
/// let s = Schedule::Step { step_size: 10, gamma: 0.1 };
/// assert_eq!(s.lr_at(1.0, 9), 1.0);
/// assert!((s.lr_at(1.0, 25) - 0.01).abs() < 1e-15);
///
/// // Five warm-up steps, then cosine annealing over 100.
/// let w = Schedule::warmup(5, 0.1, Schedule::CosineAnnealing { t_max: 100, eta_min: 0.0 });
/// assert!((w.lr_at(1.0, 0) - 0.1).abs() < 1e-15);
/// assert_eq!(w.lr_at(1.0, 5), 1.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The base learning rate throughout.
    Constant,
    /// `base * gamma^(t / step_size)` (integer division): `StepLR`.
    Step {
        /// Steps between decays.
        step_size: u64,
        /// Decay factor.
        gamma: f64,
    },
    /// `base * gamma^t`: `ExponentialLR`.
    Exponential {
        /// Decay factor per step.
        gamma: f64,
    },
    /// `eta_min + (base - eta_min) (1 + cos(pi t / t_max)) / 2`: `CosineAnnealingLR`.
    CosineAnnealing {
        /// Half-period in steps.
        t_max: u64,
        /// Minimum learning rate.
        eta_min: f64,
    },
    /// Linear warm-up from `start_factor * base` to `base` over `steps`, then `then` with
    /// its step count starting at 0 (PyTorch's `LinearLR` chained by `SequentialLR`).
    Warmup {
        /// Warm-up length in steps.
        steps: u64,
        /// Fraction of the base rate at step 0.
        start_factor: f64,
        /// The schedule after warm-up.
        then: Box<Schedule>,
    },
    /// `OneCycleLR` (without momentum cycling): up from `max_lr / div_factor` to `max_lr`
    /// over `pct_start` of the steps, then down to `max_lr / (div_factor * final_div_factor)`.
    /// Ignores the base rate.
    OneCycle {
        /// Peak learning rate.
        max_lr: f64,
        /// Total number of steps.
        total_steps: u64,
        /// Fraction of steps spent increasing.
        pct_start: f64,
        /// Shape of both phases.
        anneal: Anneal,
        /// `initial_lr = max_lr / div_factor`.
        div_factor: f64,
        /// `min_lr = initial_lr / final_div_factor`.
        final_div_factor: f64,
    },
}

impl Schedule {
    /// Warm-up before another schedule.
    pub fn warmup(steps: u64, start_factor: f64, then: Schedule) -> Self {
        Schedule::Warmup {
            steps,
            start_factor,
            then: Box::new(then),
        }
    }

    /// OneCycle with PyTorch's defaults (pct_start 0.3, cosine, div 25, final div 1e4).
    pub fn one_cycle(max_lr: f64, total_steps: u64) -> Self {
        Schedule::OneCycle {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }

    /// The learning rate for step `t` given the optimizer's base rate.
    pub fn lr_at(&self, base_lr: f64, t: u64) -> f64 {
        match self {
            Schedule::Constant => base_lr,
            Schedule::Step { step_size, gamma } => {
                base_lr * gamma.powi((t / (*step_size).max(1)) as i32)
            }
            Schedule::Exponential { gamma } => base_lr * gamma.powi(t as i32),
            Schedule::CosineAnnealing { t_max, eta_min } => {
                let phase = std::f64::consts::PI * t as f64 / (*t_max).max(1) as f64;
                eta_min + (base_lr - eta_min) * (1.0 + phase.cos()) / 2.0
            }
            Schedule::Warmup {
                steps,
                start_factor,
                then,
            } => {
                if t < *steps {
                    base_lr * (start_factor + (1.0 - start_factor) * t as f64 / *steps as f64)
                } else {
                    then.lr_at(base_lr, t - steps)
                }
            }
            Schedule::OneCycle {
                max_lr,
                total_steps,
                pct_start,
                anneal,
                div_factor,
                final_div_factor,
            } => {
                let initial = max_lr / div_factor;
                let min = initial / final_div_factor;
                let up_end = pct_start * *total_steps as f64 - 1.0;
                let last = total_steps.saturating_sub(1) as f64;
                let t = (t as f64).min(last);
                let (from, to, pct) = if t <= up_end {
                    (initial, *max_lr, t / up_end)
                } else {
                    (*max_lr, min, (t - up_end) / (last - up_end))
                };
                match anneal {
                    Anneal::Cos => {
                        to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
                    }
                    Anneal::Linear => (to - from) * pct + from,
                }
            }
        }
    }
}
