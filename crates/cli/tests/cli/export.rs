//! `accord export --format jsonl`: every entry of a running node, verified by a
//! Python script with `cryptography` and no Accord code (tests/interop/
//! verify_export.py), which also refuses a line whose signature was changed.
//! `export --from-backup` gives the same lines from a backup file.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{Alliance, LEEDS, fails, json, ok, path, start, wait_for};

const VERIFY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/verify_export.py"
);

fn python() -> std::path::PathBuf {
    accord_tests::python::venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        &[accord_tests::python::CRYPTOGRAPHY],
    )
}

#[test]
fn an_export_verifies_with_python_cryptography_and_no_accord_code() {
    let a = Alliance::start();
    a.ok(&[
        "intention",
        "declare",
        "--ballot",
        LEEDS,
        "--status",
        "intends",
    ]);
    a.ok(&[
        "intention",
        "declare",
        "--as",
        "Green Party",
        "--ballot",
        LEEDS,
        "--status",
        "confirmed",
        "--candidate",
        "Jo Green",
    ]);
    let statement = a.json(&[
        "statement",
        "publish",
        "--title",
        "Unity",
        "--text",
        "Together.",
        "--cosigner",
        "Green Party",
        "--json",
    ]);
    let id = statement["id"].as_str().unwrap().to_owned();
    a.ok(&["statement", "endorse", "--as", "Green Party", &id]);
    a.ok(&[
        "event",
        "publish",
        "--uid",
        "hustings",
        "--title",
        "Hustings",
        "--start",
        "2027-04-12T19:00",
        "--end",
        "2027-04-12T21:00",
        "--venue",
        "Civic Hall",
    ]);
    a.ok(&[
        "resolve",
        "--as",
        "Secretariat",
        "--ballot",
        LEEDS,
        "--stands",
        "Green Party",
        "--stand-aside",
        "Red Party",
        "--rationale",
        "Green came second.",
    ]);
    let entries = a.entries();
    assert_eq!(entries, 6);

    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("ledger.jsonl");
    a.ok(&["export", "--format", "jsonl", "--out", path(&export)]);
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, entries);
    let first = &lines[0];
    for field in [
        "id",
        "author",
        "key",
        "seq",
        "prev",
        "kind",
        "body",
        "entry",
        "signature",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    let intention = lines
        .iter()
        .find(|l| l["kind"] == "intention" && l["author"] == "Green Party")
        .expect("Green's intention");
    assert_eq!(intention["body"]["type"], "intention", "{intention}");
    assert_eq!(intention["body"]["candidate"], "Jo Green", "{intention}");
    // Standard output gives the same lines.
    assert_eq!(a.ok(&["export", "--format", "jsonl"]), text);

    let python = python();
    let run = |file: &Path| {
        Command::new(&python)
            .arg(VERIFY)
            .arg(file)
            .output()
            .expect("python runs")
    };
    let out = run(&export);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "verified 6 entries of 3 authors"
    );
    // The script is no rubber stamp: a changed signature, or an entry left out of a
    // log, fails it.
    let mut tampered: Vec<Value> = lines.clone();
    let signature = tampered[2]["signature"].as_str().unwrap().to_owned();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    tampered[2]["signature"] = Value::String(format!("{flipped}{}", &signature[1..]));
    let bad = dir.path().join("tampered.jsonl");
    let write = |lines: &[Value]| {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&bad, text).unwrap();
    };
    write(&tampered);
    let out = run(&bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("tampered.jsonl:3: the signature does not verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gap = lines.clone();
    let second = gap.iter().position(|l| l["seq"] == 2).expect("a seq 2");
    gap.remove(second - 1);
    write(&gap);
    assert!(!run(&bad).status.success());

    // From a backup file: the same lines.
    let backup = dir.path().join("node.backup");
    a.ok(&["backup", "--out", path(&backup)]);
    assert_eq!(
        ok(&[
            "export",
            "--from-backup",
            path(&backup),
            "--format",
            "jsonl"
        ]),
        text
    );

    // Restored into an empty directory beside it, a second node serves the same
    // entries and digests.
    let folder = a.config.parent().unwrap();
    let node_toml = std::fs::read_to_string(folder.join("node.toml")).unwrap();
    let restored_toml = folder.join("restored.toml");
    std::fs::write(
        &restored_toml,
        node_toml.replace("data_dir = \"data\"", "data_dir = \"restored\""),
    )
    .unwrap();
    let said = ok(&["restore", path(&backup), "--config", path(&restored_toml)]);
    assert!(said.contains("entries         6 in 3 logs"), "{said}");
    let (node, address) = start(
        &["node", "--config", path(&restored_toml)],
        "listening on ",
        std::time::Duration::from_secs(30),
    );
    let client = folder.join("restored-client.toml");
    std::fs::write(
        &client,
        format!("node = \"http://{address}\"\ntoken_file = \"token\"\n"),
    )
    .unwrap();
    wait_for(
        "the restored node",
        std::time::Duration::from_secs(30),
        || {
            Command::new(env!("CARGO_BIN_EXE_accord"))
                .args(["status", "--config", path(&client)])
                .output()
                .is_ok_and(|o| o.status.success())
        },
    );
    let original = a.json(&["status", "--json"]);
    let restored = json(&["status", "--json", "--config", path(&client)]);
    for field in ["entries", "entries_digest", "digest", "heads"] {
        assert_eq!(restored[field], original[field], "{field}");
    }
    node.stop("-TERM");
    // Not into a directory that holds a store, nor for another alliance.
    let err = fails(&["restore", path(&backup), "--config", path(&restored_toml)]);
    assert!(err.contains("not empty"), "{err}");
    let other = tempfile::tempdir().unwrap();
    let untar = Command::new("tar")
        .args(["-xzf", super::upgrade::FIXTURE, "-C"])
        .arg(other.path())
        .status()
        .unwrap();
    assert!(untar.success());
    std::fs::remove_dir_all(other.path().join("node/data")).unwrap();
    let err = fails(&[
        "restore",
        path(&backup),
        "--config",
        path(&other.path().join("node/node.toml")),
    ]);
    assert!(err.contains("alliance"), "{err}");
    assert!(!other.path().join("node/data").exists());
}
