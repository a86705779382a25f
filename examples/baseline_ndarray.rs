//! The hand-written baseline for the throughput comparison: the same workloads as
//! `throughput.rs`, with forward and backward written out by hand on ndarray (the same
//! matmul backend, no autograd, no layers, no trainer). It is the yardstick for what the
//! framework costs.
//!
//! `cargo run --release --example baseline_ndarray -- w1`

use std::time::Instant;

use gradus::BatchSize;
use gradus::data::mnist::Mnist;
use gradus::layers::Init;
use gradus::ndarray::{Array1, Array2, ArrayView2, Axis, Ix2};
use gradus::rand::SeedableRng;
use gradus::rand_chacha::ChaCha8Rng;

struct Layer {
    w: Array2<f32>, // [out, in]
    b: Array1<f32>,
    vw: Array2<f32>,
    vb: Array1<f32>,
}

fn main() {
    let workload = std::env::args().nth(1).unwrap_or_else(|| "w1".into());
    let (sizes, batch): (Vec<usize>, usize) = match workload.as_str() {
        "w1" => (vec![784, 128, 10], 64),
        "w2" => (vec![784, 512, 512, 10], 256),
        other => {
            eprintln!("error: unknown workload `{other}`");
            std::process::exit(2);
        }
    };
    let mnist = Mnist::load_default().expect("MNIST loads");
    let x_all = mnist
        .train
        .inputs()
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .to_owned();
    let y_all = mnist.train.labels().unwrap().to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layers: Vec<Layer> = sizes
        .windows(2)
        .map(|w| {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let weight = Init::PYTORCH_LINEAR.array::<f32>(&[w[1], w[0]], &mut rng);
            let bias = Init::Uniform {
                low: -bound,
                high: bound,
            }
            .array::<f32>(&[w[1]], &mut rng);
            Layer {
                w: weight.into_dimensionality().unwrap(),
                b: bias.into_dimensionality().unwrap(),
                vw: Array2::zeros((w[1], w[0])),
                vb: Array1::zeros(w[1]),
            }
        })
        .collect();
    let (lr, mu) = (0.1f32, 0.9f32);
    let mut first_step = true;
    let mut rates = Vec::new();
    let mut accuracy = 0.0;
    let mut shuffle = ChaCha8Rng::seed_from_u64(1);
    for epoch in 1..=4 {
        let start = Instant::now();
        for idx in mnist
            .train
            .epoch_batches(BatchSize::Mini(batch), Some(&mut shuffle), false)
        {
            let n = idx.len();
            let mut x = Array2::<f32>::zeros((n, 784));
            for (r, &i) in idx.iter().enumerate() {
                x.row_mut(r).assign(&x_all.row(i));
            }
            // Forward, keeping activations.
            let mut acts = vec![x];
            for (l, layer) in layers.iter().enumerate() {
                let mut z = acts[l].dot(&layer.w.t());
                z += &layer.b;
                if l + 1 < layers.len() {
                    z.mapv_inplace(|v| v.max(0.0));
                }
                acts.push(z);
            }
            // Softmax cross-entropy gradient: (softmax - onehot) / n.
            let mut g = acts.pop().unwrap();
            for (mut row, &i) in g.rows_mut().into_iter().zip(&idx) {
                let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                row.mapv_inplace(|v| (v - m).exp());
                let sum = row.sum();
                row /= sum;
                row[y_all[i]] -= 1.0;
                row /= n as f32;
            }
            // Backward and momentum SGD, last layer first.
            for l in (0..layers.len()).rev() {
                let a: ArrayView2<f32> = acts[l].view();
                let gw = g.t().dot(&a);
                let gb = g.sum_axis(Axis(0));
                if l > 0 {
                    let mut ga = g.dot(&layers[l].w);
                    ga.zip_mut_with(&acts[l], |d, &h| {
                        if h <= 0.0 {
                            *d = 0.0
                        }
                    });
                    g = ga;
                }
                let layer = &mut layers[l];
                if first_step {
                    layer.vw.assign(&gw);
                    layer.vb.assign(&gb);
                } else {
                    layer.vw.zip_mut_with(&gw, |v, &d| *v = mu * *v + d);
                    layer.vb.zip_mut_with(&gb, |v, &d| *v = mu * *v + d);
                }
                layer.w.scaled_add(-lr, &layer.vw);
                layer.b.scaled_add(-lr, &layer.vb);
            }
            first_step = false;
        }
        let secs = start.elapsed().as_secs_f64();
        if epoch > 1 {
            rates.push(60_000.0 / secs);
        }
        if epoch == 3 {
            let x = mnist
                .test
                .inputs()
                .view()
                .into_dimensionality::<Ix2>()
                .unwrap();
            let mut h = x.to_owned();
            for (l, layer) in layers.iter().enumerate() {
                h = h.dot(&layer.w.t()) + &layer.b;
                if l + 1 < layers.len() {
                    h.mapv_inplace(|v| v.max(0.0));
                }
            }
            let labels = mnist.test.labels().unwrap();
            let correct = h.rows().into_iter().zip(labels).filter(|(r, l)| {
                let best = r
                    .iter()
                    .enumerate()
                    .fold(0, |b, (i, &v)| if v > r[b] { i } else { b });
                best == **l
            });
            accuracy = correct.count() as f64 / labels.len() as f64;
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\": \"ndarray-baseline{}\", \"workload\": \"{workload}\", \"threads\": \"{}\", \"samples_per_sec\": {:.0}, \"test_accuracy\": {:.4}}}",
        if cfg!(feature = "openblas") {
            "+openblas"
        } else {
            ""
        },
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        rates[1],
        accuracy
    );
}
