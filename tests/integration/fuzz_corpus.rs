//! Replays the fuzz targets' kept inputs on every `cargo test`, on the stable toolchain: the seeds
//! (`fuzz/seeds/TARGET/`) and every input that once found a bug (`fuzz/regressions/TARGET/`),
//! through the same `wxgate::fuzzing` entry points and invariants the fuzzers use.

use std::path::Path;

/// Every kept input of `target`; panics if it has no seeds (the layout moved).
fn kept_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            inputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(!inputs.is_empty(), "no kept inputs for {target}");
    inputs
}

fn replay(target: &str, run: fn(&[u8])) {
    for (name, input) in kept_inputs(target) {
        if std::panic::catch_unwind(|| run(&input)).is_err() {
            panic!("{name} breaks an invariant of {target}");
        }
    }
}

/// Catches a regression of a bug the token fuzzer found: claims with invalid UTF-8 in a member
/// the gateway does not read were accepted (`fuzz/regressions/token/`).
#[test]
fn token_inputs_keep_their_invariants() {
    replay("token", wxgate::fuzzing::token);
}

#[test]
fn path_inputs_keep_their_invariants() {
    replay("path", wxgate::fuzzing::path);
}

#[test]
fn login_body_inputs_keep_their_invariants() {
    replay("login_body", wxgate::fuzzing::login_body);
}

#[test]
fn decrypt_inputs_keep_their_invariants() {
    replay("decrypt_input", wxgate::fuzzing::decrypt_input);
}
