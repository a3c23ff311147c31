//! Backups on a schedule: deploy/accord-backup.service and .timer pass
//! `systemd-analyze verify`, and the service's command, run as systemd would run it
//! (`%%` unescaped, paths pointed at this test's files), writes a backup that
//! verifies, named by the time.

use std::path::Path;
use std::process::Command;

use super::{Alliance, LEEDS, json, ok, path};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
const ACCORD: &str = env!("CARGO_BIN_EXE_accord");

/// The unit's text with the installed paths replaced by this test's.
fn unit(name: &str, replace: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(Path::new(DEPLOY).join(name)).unwrap();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    text
}

#[test]
fn the_backup_timer_verifies_and_its_service_writes_a_sound_backup() {
    let a = Alliance::start();
    a.ok(&[
        "intention",
        "declare",
        "--ballot",
        LEEDS,
        "--status",
        "intends",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let replace = [
        ("/usr/local/bin/accord", ACCORD),
        ("/etc/accord/backup-client.toml", path(&a.config)),
        ("/var/backups/accord", path(&backups)),
    ];
    let service = unit("accord-backup.service", &replace);
    for (name, text) in [
        ("accord-backup.service", service.clone()),
        ("accord-backup.timer", unit("accord-backup.timer", &[])),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    match Command::new("systemd-analyze")
        .arg("verify")
        .args(["accord-backup.service", "accord-backup.timer"])
        .current_dir(dir.path())
        .output()
    {
        Ok(out) => assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("SKIPPED systemd-analyze verify: not runnable here ({e})"),
    }
    // ExecStart= and ExecStartPost=, as systemd runs them.
    for key in ["ExecStart=", "ExecStartPost="] {
        let line = service
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"))
            .replace("%%", "%");
        let words: Vec<String> = if let Some(script) = line.strip_prefix("/bin/sh -c ") {
            vec![
                "/bin/sh".into(),
                "-c".into(),
                script.trim_matches('\'').to_owned(),
            ]
        } else {
            line.split_whitespace().map(str::to_owned).collect()
        };
        let out = Command::new(&words[0]).args(&words[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{key}{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let written: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let name = written[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("node-20") && name.ends_with("Z.backup"),
        "{name}"
    );
    let verified = ok(&["backup", "verify", path(&written[0])]);
    assert!(verified.contains("sound"), "{verified}");
    assert!(verified.contains("1 in 1 logs"), "{verified}");
    let report = json(&["backup", "verify", "--json", path(&written[0])]);
    assert_eq!(report["sound"], true, "{report}");
    assert_eq!(report["manifest"]["entries"], 1, "{report}");
    assert_eq!(
        report["manifest"]["entries_digest"],
        a.json(&["status", "--json"])["entries_digest"],
        "{report}"
    );
}
