//! Processes that tests start: stopped when the test ends, also on panic.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running child process (an `accord` binary): killed and reaped when dropped.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
}

impl Running {
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    /// Sends `signal` (as `kill` takes it: "-TERM", "-INT") and waits, at most ten
    /// seconds, for a clean exit; panics otherwise.
    pub fn stop(mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                assert!(status.success(), "the process stopped with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
