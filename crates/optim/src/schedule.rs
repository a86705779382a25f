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

/// OneCycle's momentum cycle: from `max` down to `base` while the learning rate rises, and
/// back to `max` while it falls (PyTorch's `base_momentum`, `max_momentum`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MomentumCycle {
    /// Momentum at the learning rate's peak (PyTorch's default 0.85).
    pub base: f64,
    /// Momentum at the start and the end (PyTorch's default 0.95).
    pub max: f64,
}

impl Default for MomentumCycle {
    fn default() -> Self {
        Self {
            base: 0.85,
            max: 0.95,
        }
    }
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
    /// `OneCycleLR`: up from `max_lr / div_factor` to `max_lr` over `pct_start` of the
    /// steps, then down to `max_lr / (div_factor * final_div_factor)`, with the momentum (or
    /// Adam's beta1) cycled the other way when `momentum` is set, as PyTorch does by default
    /// (`cycle_momentum=True`); see [`Schedule::momentum_at`]. Ignores the base rate.
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
        /// The momentum cycle, or `None` for PyTorch's `cycle_momentum=False` (and for
        /// schedules saved before momentum cycling existed).
        #[serde(default)]
        momentum: Option<MomentumCycle>,
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

    /// OneCycle with PyTorch's defaults (pct_start 0.3, cosine, div 25, final div 1e4) and
    /// PyTorch's `cycle_momentum`: when true, the momentum (or Adam's beta1) cycles between
    /// 0.95 and 0.85, which needs an optimizer that has one (not Adagrad).
    ///
    /// ```
    /// use gradus_optim::Schedule;
    /// let s = Schedule::one_cycle(0.1, 100, true);
    /// assert_eq!(s.momentum_at(0), Some(0.95));
    /// assert!((s.momentum_at(29).unwrap() - 0.85).abs() < 1e-12); // the learning rate's peak
    /// assert_eq!(Schedule::one_cycle(0.1, 100, false).momentum_at(0), None);
    /// assert_eq!(Schedule::Constant.momentum_at(5), None);
    /// ```
    pub fn one_cycle(max_lr: f64, total_steps: u64, cycle_momentum: bool) -> Self {
        Schedule::OneCycle {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            momentum: cycle_momentum.then(MomentumCycle::default),
        }
    }

    /// The momentum (SGD, RMSprop) or beta1 (Adam) for step `t`, for a schedule that cycles
    /// it; `None` leaves the optimizer's own. A warm-up passes the schedule after it through.
    pub fn momentum_at(&self, t: u64) -> Option<f64> {
        match self {
            Schedule::Warmup { steps, then, .. } => {
                t.checked_sub(*steps).and_then(|t| then.momentum_at(t))
            }
            Schedule::OneCycle {
                total_steps,
                pct_start,
                anneal,
                momentum: Some(m),
                ..
            } => {
                let (phase, pct) = one_cycle_phase(*total_steps, *pct_start, t);
                let (from, to) = if phase == 0 {
                    (m.max, m.base)
                } else {
                    (m.base, m.max)
                };
                Some(anneal.between(from, to, pct))
            }
            _ => None,
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
                ..
            } => {
                let initial = max_lr / div_factor;
                let min = initial / final_div_factor;
                let (phase, pct) = one_cycle_phase(*total_steps, *pct_start, t);
                let (from, to) = if phase == 0 {
                    (initial, *max_lr)
                } else {
                    (*max_lr, min)
                };
                anneal.between(from, to, pct)
            }
        }
    }
}

/// OneCycle's phase at step `t` (0 rising, 1 falling) and how far through it (0 to 1).
fn one_cycle_phase(total_steps: u64, pct_start: f64, t: u64) -> (u8, f64) {
    let up_end = pct_start * total_steps as f64 - 1.0;
    let last = total_steps.saturating_sub(1) as f64;
    let t = (t as f64).min(last);
    if t <= up_end {
        (0, t / up_end)
    } else {
        (1, (t - up_end) / (last - up_end))
    }
}

impl Anneal {
    /// The point `pct` of the way from `from` to `to`.
    fn between(self, from: f64, to: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0),
            Anneal::Linear => (to - from) * pct + from,
        }
    }
}
