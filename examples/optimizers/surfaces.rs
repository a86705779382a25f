//! Two-dimensional test functions, written with gradus's own autograd, and the paths the
//! optimizers take on them.

use gradus::autograd::ndarray::arr1;
use gradus::autograd::{ParamStore, Var, value_and_grad};

use crate::contenders::Kind;

/// A function of two variables with a known minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `f(x, y) = (x^2 + 10 y^2) / 2`: curvature 1 along x and 10 along y.
    Quadratic,
    /// `f(x, y) = (1 - x)^2 + 100 (y - x^2)^2`: a curved, flat-bottomed valley.
    Rosenbrock,
}

impl Surface {
    pub fn name(self) -> &'static str {
        match self {
            Surface::Quadratic => "quadratic",
            Surface::Rosenbrock => "rosenbrock",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Surface::Quadratic => "f(x, y) = (x² + 10 y²) / 2, condition number 10",
            Surface::Rosenbrock => "Rosenbrock: f(x, y) = (1 - x)² + 100 (y - x²)²",
        }
    }

    /// The function on a tape, `p` holding `[x, y]`.
    pub fn on_tape<'t>(self, p: Var<'t, f64>) -> Var<'t, f64> {
        let x = p.slice_axis(0, 0..1);
        let y = p.slice_axis(0, 1..2);
        match self {
            Surface::Quadratic => (x.square() * 0.5 + y.square() * 5.0).sum(),
            Surface::Rosenbrock => ((1.0 - x).square() + (y - x.square()).square() * 100.0).sum(),
        }
    }

    /// The function on plain numbers, for contour lines.
    pub fn value(self, x: f64, y: f64) -> f64 {
        match self {
            Surface::Quadratic => 0.5 * x * x + 5.0 * y * y,
            Surface::Rosenbrock => (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2),
        }
    }

    pub fn start(self) -> [f64; 2] {
        match self {
            Surface::Quadratic => [-9.0, 2.5],
            Surface::Rosenbrock => [-1.5, 2.0],
        }
    }

    pub fn minimum(self) -> [f64; 2] {
        match self {
            Surface::Quadratic => [0.0, 0.0],
            Surface::Rosenbrock => [1.0, 1.0],
        }
    }

    /// The plotted region: `(x range, y range)`.
    pub fn view(self) -> ((f64, f64), (f64, f64)) {
        match self {
            Surface::Quadratic => ((-10.0, 10.0), (-3.5, 3.5)),
            Surface::Rosenbrock => ((-2.0, 2.0), (-1.0, 3.0)),
        }
    }

    /// Steps each optimizer gets by default.
    pub fn default_steps(self) -> usize {
        match self {
            Surface::Quadratic => 150,
            Surface::Rosenbrock => 4000,
        }
    }

    /// Learning rates chosen to show each rule's character (and stay stable).
    pub fn lr(self, kind: Kind) -> f64 {
        match (self, kind) {
            // Just below 2/10, the stability limit along y: GD zig-zags across the valley.
            (Surface::Quadratic, Kind::BatchGd | Kind::StochasticGd | Kind::MiniBatchGd) => 0.18,
            (Surface::Quadratic, Kind::Momentum | Kind::Nesterov) => 0.02,
            (Surface::Quadratic, Kind::Adagrad) => 2.0,
            (Surface::Quadratic, Kind::RmsProp) => 0.1,
            (Surface::Quadratic, Kind::Adam | Kind::AdamW) => 0.3,
            (Surface::Rosenbrock, Kind::BatchGd | Kind::StochasticGd | Kind::MiniBatchGd) => 1.5e-3,
            (Surface::Rosenbrock, Kind::Momentum | Kind::Nesterov) => 2e-4,
            (Surface::Rosenbrock, Kind::Adagrad) => 0.5,
            (Surface::Rosenbrock, Kind::RmsProp) => 2e-3,
            (Surface::Rosenbrock, Kind::Adam | Kind::AdamW) => 0.02,
        }
    }
}

/// The points visited by `kind` from the surface's start, one per step, start included.
/// Each step is a real gradus step: the function is recorded on a tape, differentiated by
/// backward, and the optimizer updates the parameter.
pub fn trajectory(surface: Surface, kind: Kind, steps: usize) -> Vec<[f64; 2]> {
    let mut params = ParamStore::<f64>::new();
    let p = params
        .insert("xy", arr1(&surface.start()).into_dyn())
        .expect("one parameter");
    let mut opt = kind.build::<f64>(surface.lr(kind));
    let mut path = vec![surface.start()];
    for _ in 0..steps {
        let (_, grads) = value_and_grad(|tape| surface.on_tape(tape.param(&params, p)));
        opt.step(&mut params, &grads)
            .expect("the parameter has a gradient");
        let v = params.get(p);
        path.push([v[0], v[1]]);
    }
    path
}

/// Euclidean distance from the surface's minimum.
pub fn distance_to_minimum(surface: Surface, point: [f64; 2]) -> f64 {
    let m = surface.minimum();
    ((point[0] - m[0]).powi(2) + (point[1] - m[1]).powi(2)).sqrt()
}
