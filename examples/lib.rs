//! The examples of gradus, each run with `cargo run --example NAME` from the repository:
//!
//! * `mnist`: an MLP (the default) or a CNN (`--model cnn`) trained on MNIST, saved,
//!   reloaded with `--eval`; `--help` lists every flag.
//! * `custom_model`: a custom module with a buffer, a custom op, a custom loss and an
//!   optimizer written outside gradus, trained, saved, reloaded and resumed.
//! * `throughput`: the samples/s of the standard workloads (`benches/compare`).
//! * `baseline_ndarray`: W1 written by hand over ndarray, the floor gradus is compared to.
//! * `optimizers` (the `gradus-optimizers` package): the gradient-descent family raced on
//!   MNIST and on two 2-D functions, with charts.
//!
//! This library holds nothing else: the examples live beside it so that building one
//! compiles only what it needs.
