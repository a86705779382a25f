//! Records the optimisation level gradus itself is compiled at, so that `Trainer::fit` can
//! say, once, when a user's build leaves it unoptimised (about 50x slower).

fn main() {
    let level = std::env::var("OPT_LEVEL").unwrap_or_default();
    println!("cargo:rustc-env=GRADUS_OPT_LEVEL={level}");
    println!("cargo:rerun-if-env-changed=OPT_LEVEL");
}
