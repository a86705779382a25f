//! What the example tests share: building an example and finding its binary.

use std::path::PathBuf;
use std::process::Command;

/// Builds the example `name` (with `features`, if any) in the test's profile; its path.
pub fn built(name: &str, features: &[&str]) -> PathBuf {
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build.args(["build", "-q", "-p", "gradus-examples", "--example", name]);
    if !features.is_empty() {
        build.args(["--features", &features.join(",")]);
    }
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building the example");
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps -> target/<profile>
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}
