//! Matmul forward + backward at MLP sizes, through the tape: `linear` (x W^T + b, the fused
//! layer op) and plain `matmul`, 784 -> 128 at batch 64 and 256.
//!
//! Run: `cargo bench -p gradus --bench matmul`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gradus::autograd::{ParamStore, value_and_grad};
use gradus::layers::Init;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn bench_matmul(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut params = ParamStore::<f32>::new();
    let w = params
        .insert("w", Init::PYTORCH_LINEAR.array(&[128, 784], &mut rng))
        .unwrap();
    let b = params
        .insert("b", Init::Zeros.array(&[128], &mut rng))
        .unwrap();
    let wt = params
        .insert("wt", Init::PYTORCH_LINEAR.array(&[784, 128], &mut rng))
        .unwrap();
    let mut group = c.benchmark_group("matmul_fwd_bwd_784x128");
    for batch in [64usize, 256] {
        let x = Init::Uniform {
            low: 0.0,
            high: 1.0,
        }
        .array::<f32>(&[batch, 784], &mut rng);
        group.bench_with_input(BenchmarkId::new("linear", batch), &x, |bench, x| {
            bench.iter(|| {
                let (_, grads) = value_and_grad(|tape| {
                    let y = tape
                        .constant(x.clone())
                        .linear(tape.param(&params, w), Some(tape.param(&params, b)));
                    y.sum()
                });
                black_box(grads)
            })
        });
        group.bench_with_input(BenchmarkId::new("matmul", batch), &x, |bench, x| {
            bench.iter(|| {
                let (_, grads) = value_and_grad(|tape| {
                    tape.constant(x.clone())
                        .matmul(tape.param(&params, wt))
                        .sum()
                });
                black_box(grads)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matmul);
criterion_main!(benches);
