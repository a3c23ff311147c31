//! What the Docker tests (`compose.rs`, `systemd.rs`) share: the repository's root,
//! commands that must succeed, and whether a Docker daemon answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A command's standard output, trimmed.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether a Docker daemon answers `docker info`; if not, prints SKIPPED with
/// `unrun` (what was not tested), and the test returns.
pub fn daemon_answers(unrun: &str) -> bool {
    let daemon = Command::new("docker").arg("info").output();
    let answers = daemon.is_ok_and(|o| o.status.success());
    if !answers {
        eprintln!("SKIPPED: no Docker daemon answers `docker info`; {unrun}");
    }
    answers
}
