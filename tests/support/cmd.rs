//! Running the external tools of the tests (`openssl`): shared by
//! `support/mod.rs` and `support/ocsp.rs`, which include it as `mod cmd;`.
#![allow(dead_code)]

use std::process::Command;

/// The `openssl` binary: `$EMLA_TEST_OPENSSL`, else `openssl` on `PATH`.
pub fn openssl() -> String {
    std::env::var("EMLA_TEST_OPENSSL").unwrap_or_else(|_| "openssl".into())
}

/// Runs `cmd`, panicking with its output when it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_succeeded(&format!("{cmd:?}"), &out);
    out.stdout
}

/// Asserts the run of `what` that gave `out` succeeded, showing its output
/// when it did not.
pub fn assert_succeeded(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
