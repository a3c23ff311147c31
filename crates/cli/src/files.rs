//! Writing secret files (keys, tokens) and other small files the commands produce.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes `contents` to a new file readable only by its owner (mode 0600). Refuses to
/// replace an existing file unless `force`.
pub fn write_secret(path: &Path, contents: &[u8], force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "{} already exists (use --force to overwrite it)",
            path.display()
        );
    }
    make_parent(path, 0o700)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        // The mode above only applies to a new file; an overwritten one is tightened.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    }
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a non-secret file, refusing to replace one unless `force`.
pub fn write_new(path: &Path, contents: &[u8], force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "{} already exists (use --force to overwrite it)",
            path.display()
        );
    }
    make_parent(path, 0o755)?;
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Creates the folders above `path` that are missing (those it creates get `mode`:
/// 0700 above a secret), so `--out /etc/accord/keys/org.pem` works on a fresh server.
fn make_parent(path: &Path, mode: u32) -> Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
        .create(parent)
        .with_context(|| format!("cannot create the folder {}", parent.display()))
}

pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
