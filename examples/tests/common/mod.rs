//! What the example tests share: building an example and finding its binary, running it,
//! and reading the JSON line the throughput runner prints.

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

/// Runs `cmd`, requires it to succeed (the failure shows its output), and returns its
/// standard output.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The value of `name` in a JSON line the throughput runner prints, as text (quotes
/// removed).
pub fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!("\"{name}\": "))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 4;
    line[start..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .trim_matches('"')
}
