//! Microseconds per product `y = x W^T` (x: m x k, W: n x k) for the shapes of W1 and W2's
//! layers at a whole batch and at a worker's half: matrixmultiply and `gemm` reading `W^T`
//! as a strided view of PyTorch's [out, in] layout (what gradus's `linear` does), and
//! matrixmultiply reading a row-major [in, out] copy. Medians of 5 runs of 1000 products,
//! one thread.

use std::time::Instant;

fn micros(mut product: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..1000 {
                product();
            }
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn main() {
    let shapes = [
        ("W1 layer 1, 2 workers", 32, 784, 128),
        ("W1 layer 1, 1 worker", 64, 784, 128),
        ("W2 layer 1, 2 workers", 128, 784, 512),
        ("W2 layer 2, 2 workers", 128, 512, 512),
    ];
    println!(
        "| product | m x k x n | matrixmultiply, W [out, in] | matrixmultiply, W [in, out] | gemm, W [out, in] |"
    );
    println!("| --- | --- | ---: | ---: | ---: |");
    for (name, m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 / 17.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 / 13.0).collect();
        let mut wt = vec![0f32; k * n];
        for (o, row) in w.chunks(k).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                wt[i * n + o] = v;
            }
        }
        let mut y = vec![0f32; m * n];
        let (k_, n_) = (k as isize, n as isize);
        // SAFETY (all three): the pointers and strides describe the vectors above.
        let strided = micros(|| unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                x.as_ptr(),
                k_,
                1,
                w.as_ptr(),
                1,
                k_,
                0.0,
                y.as_mut_ptr(),
                n_,
                1,
            );
        });
        let row_major = micros(|| unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                x.as_ptr(),
                k_,
                1,
                wt.as_ptr(),
                n_,
                1,
                0.0,
                y.as_mut_ptr(),
                n_,
                1,
            );
        });
        let faer = micros(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n_,
                false,
                x.as_ptr(),
                1,
                k_,
                w.as_ptr(),
                k_,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        });
        println!(
            "| {name} | {m} x {k} x {n} | {strided:.1} us | {row_major:.1} us | {faer:.1} us |"
        );
    }
}
