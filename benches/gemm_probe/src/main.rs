//! Microseconds (and GFLOP/s) per product `C = A B` for the products one training step of
//! W1, W2 and W3 runs, forward and backward, with matrixmultiply (gradus's default backend)
//! and faer's `gemm` crate, both on one thread, each operand in the layout gradus hands over
//! (`W^T` of a linear layer is a strided view of PyTorch's [out, in] weight; a convolution's
//! columns are `[c kh kw, positions]`, so its weight gradient reads them transposed).
//! `gradus_autograd::gemm` runs a dot-product kernel where both operands run along `k`
//! (row-major A, column-major B), and otherwise matrixmultiply with such operands first
//! transposed into the layouts it packs by whole rows (column-major A, row-major B).
//! Medians of 5 runs of 300 products.

use std::time::Instant;

use gradus_autograd::ndarray::{Array2, ArrayView2};

/// How a `rows x cols` operand is laid out in memory.
#[derive(Clone, Copy)]
enum Layout {
    RowMajor,
    /// The transpose of a row-major matrix (unit stride down the rows).
    Transposed,
}

impl Layout {
    fn strides(self, rows: usize, cols: usize) -> (isize, isize) {
        match self {
            Layout::RowMajor => (cols as isize, 1),
            Layout::Transposed => (1, rows as isize),
        }
    }
}

fn view(v: &[f32], rows: usize, cols: usize, layout: Layout) -> ArrayView2<'_, f32> {
    match layout {
        Layout::RowMajor => ArrayView2::from_shape((rows, cols), v).unwrap(),
        Layout::Transposed => ArrayView2::from_shape((cols, rows), v)
            .unwrap()
            .reversed_axes(),
    }
}

fn micros(mut product: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..300 {
                product();
            }
            start.elapsed().as_secs_f64() * 1e6 / 300.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn row(name: &str, (m, k, n): (usize, usize, usize), a_layout: Layout, b_layout: Layout) {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 / 17.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 / 13.0).collect();
    let mut c = vec![0f32; m * n];
    let (a_rs, a_cs) = a_layout.strides(m, k);
    let (b_rs, b_cs) = b_layout.strides(k, n);
    // SAFETY (both): the pointers and strides describe the vectors above.
    let mm = micros(|| unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_rs,
            a_cs,
            b.as_ptr(),
            b_rs,
            b_cs,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    });
    let faer = micros(|| unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    });
    let (av, bv) = (view(&a, m, k, a_layout), view(&b, k, n, b_layout));
    let mut cv = Array2::<f32>::zeros((m, n));
    let gradus = micros(|| gradus_autograd::gemm(1.0, &av, &bv, 0.0, &mut cv.view_mut()));
    let flops = 2.0 * (m * k * n) as f64 / 1e3; // per microsecond: GFLOP/s
    println!(
        "| {name} | {m} x {k} x {n} | {mm:.1} us ({:.0}) | {faer:.1} us ({:.0}) | {gradus:.1} us ({:.0}) |",
        flops / mm,
        flops / faer,
        flops / gradus
    );
}

fn main() {
    use Layout::{RowMajor as R, Transposed as T};
    println!(
        "| product | m x k x n | matrixmultiply (GFLOP/s) | `gemm` (GFLOP/s) | gradus_autograd::gemm (GFLOP/s) |"
    );
    println!("| --- | --- | ---: | ---: | ---: |");
    // Linear layers: forward x W^T, weight gradient dY^T x, input gradient dY W.
    for (name, batch, inputs, outputs) in [
        ("W1 layer 1, 2 workers", 32, 784, 128),
        ("W1 layer 1, 1 worker", 64, 784, 128),
        ("W2 layer 1, 2 workers", 128, 784, 512),
        ("W2 layer 2, 2 workers", 128, 512, 512),
        ("W3 linear 1600 -> 128", 64, 1600, 128),
    ] {
        row(&format!("{name}: forward"), (batch, inputs, outputs), R, T);
        row(
            &format!("{name}: forward, W stored [in, out]"),
            (batch, inputs, outputs),
            R,
            R,
        );
        row(&format!("{name}: weight gradient"), (outputs, batch, inputs), T, R);
    }
    row("W2 layer 2, 2 workers: input gradient", (128, 512, 512), R, R);
    // W3's convolutions, one block of samples each (3 for conv 2, 21 for conv 1).
    row("W3 conv 2: forward, W cols", (64, 288, 363), R, R);
    row("W3 conv 2: weight gradient, dY cols^T", (64, 363, 288), R, T);
    row("W3 conv 2: column gradient, W^T dY", (288, 64, 363), T, R);
    row("W3 conv 1: forward", (32, 9, 676 * 21), R, R);
    row("W3 conv 1: weight gradient", (32, 676 * 21, 9), R, T);
}
