//! Tests that need what a machine may lack (a browser, podman, root): skipped visibly on a
//! developer's machine, failed in CI, which must have everything (`.ci/run` installs it).

/// Whether a test that needs something this machine may lack can run: with `missing` (what is
/// missing, and how to get it) it cannot, which fails the test in CI (`CI` set) and is reported
/// as a visible skip elsewhere.
pub fn can_run(test: &str, missing: Option<String>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must be able to run {test}: {missing}"
    );
    report_skip(&format!("{test}: {missing}"));
    false
}

/// Says that a test skips part of its work, where it is seen: libtest captures `eprintln!`
/// (a passing test would just read "ok"), but not a direct write to the process's stderr.
pub fn report_skip(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED (not in CI): {what}");
}
