//! Python for interop tests: clients and parsers from another ecosystem, from PyPI.
//!
//! [`venv`] returns a `python3` that can import every module asked for: the system's
//! if it already can, else one virtual environment under the caller's target folder
//! (`env!("CARGO_TARGET_TMPDIR")`, which only test code sees), made once and shared
//! by every test that needs Python, with the missing packages installed into it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A module to import and the pip requirement that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub module: &'static str,
    pub requirement: &'static str,
}

/// Python's gRPC, on gRPC C-core.
pub const GRPCIO: Package = Package {
    module: "grpc",
    requirement: "grpcio>=1.60",
};

/// Server reflection for grpcio (the v1alpha client, as grpcurl and Postman use).
pub const GRPCIO_REFLECTION: Package = Package {
    module: "grpc_reflection",
    requirement: "grpcio-reflection>=1.60",
};

/// The RFC 5545 parser most Python calendar tools use.
pub const ICALENDAR: Package = Package {
    module: "icalendar",
    requirement: "icalendar>=6",
};

/// Ed25519 (and more) for Python, on OpenSSL: verifies exports with no Accord code.
pub const CRYPTOGRAPHY: Package = Package {
    module: "cryptography",
    requirement: "cryptography>=42",
};

/// Prometheus's own Python client: its text-format and OpenMetrics parsers.
pub const PROMETHEUS_CLIENT: Package = Package {
    module: "prometheus_client",
    requirement: "prometheus-client>=0.20",
};

/// YAML, to read Prometheus alert rules where `promtool` is missing.
pub const PYYAML: Package = Package {
    module: "yaml",
    requirement: "PyYAML>=6",
};

/// Tests of one binary run on many threads: one of them makes the environment.
static MAKING: Mutex<()> = Mutex::new(());

/// A `python3` that can import every module of `packages`. Panics (with the reason)
/// if there is no `python3`, or PyPI cannot be reached when something is missing.
pub fn venv(target_tmp: &Path, packages: &[Package]) -> PathBuf {
    let system = PathBuf::from("python3");
    if imports_all(&system, packages) {
        return system;
    }
    let _making = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    let dir = target_tmp.join("python-venv");
    let python = dir.join("bin/python3");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 -m venv");
        assert!(made.success(), "cannot make a virtual environment");
    }
    let missing: Vec<&str> = packages
        .iter()
        .filter(|p| !imports_all(&python, &[**p]))
        .map(|p| p.requirement)
        .collect();
    if !missing.is_empty() {
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(&missing)
            .status()
            .expect("pip install");
        assert!(installed.success(), "cannot install {missing:?} from PyPI");
    }
    python
}

fn imports_all(python: &Path, packages: &[Package]) -> bool {
    let modules: Vec<&str> = packages.iter().map(|p| p.module).collect();
    Command::new(python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success())
}
