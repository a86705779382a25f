//! The optimizer race: `cargo run --example optimizers` trains one network from the same
//! weights with every member of the gradient-descent family, on MNIST and on two 2-D
//! functions, and draws the charts of docs/gradient-descent.md. The code is the example's
//! (`main.rs` and its modules); this library holds nothing else.
