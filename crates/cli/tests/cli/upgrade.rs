//! Upgrades: a data directory written by release 0.1.0 (the fixture
//! tests/fixtures/datadir-0.1.0.tar.gz, made by tests/fixtures/make-datadir.sh
//! with that release's binary) opens with this binary, with the same entries and
//! digests, records its format, and takes new entries; a data directory whose
//! recorded format is newer than this release's is refused in one line, before
//! anything in it is touched.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{failure, json, ok, path, start, stderr, wait_for};

pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/datadir-0.1.0.tar.gz"
);

#[test]
fn a_data_directory_of_release_0_1_0_opens_and_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let untar = Command::new("tar")
        .args(["-xzf", FIXTURE, "-C"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let node = dir.path().join("node");
    let config = node.join("node.toml");
    let data = node.join("data");
    let format_file = data.join("accord-data-format");
    assert!(!format_file.exists(), "0.1.0 wrote no format file");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(node.join("expected.json")).unwrap())
            .unwrap();

    let (running, address) = start(
        &["node", "--config", path(&config)],
        "listening on ",
        Duration::from_secs(30),
    );
    let client = node.join("client.toml");
    std::fs::write(
        &client,
        format!("node = \"http://{address}\"\ntoken_file = \"token\"\nas = \"Red Party\"\n"),
    )
    .unwrap();
    wait_for("the node to answer", Duration::from_secs(30), || {
        Command::new(env!("CARGO_BIN_EXE_accord"))
            .args(["status", "--config", path(&client)])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let status = json(&["status", "--json", "--config", path(&client)]);
    for field in ["entries", "entries_digest", "heads"] {
        assert_eq!(status[field], expected[field], "{field}");
    }
    // The rules moved on since 0.1.0 (accord-rules/4 orders authors by causal
    // references, 5 counts recovered logs, 6 defines the state digest over set
    // hashes of the views' items, 7 holds reasons as codes): the state digest is
    // another, labelled with its rules; the entries digest, which no release
    // changes, is the same.
    assert_ne!(status["digest"], expected["digest"]);
    assert_eq!(expected["rules_version"], "accord-rules/3");
    assert_eq!(status["rules_version"], "accord-rules/7");
    assert_eq!(status["entries"], 5);
    assert_eq!(std::fs::read_to_string(&format_file).unwrap(), "1\n");
    // It goes on from where 0.1.0 left off.
    let published = json(&[
        "intention",
        "declare",
        "--config",
        path(&client),
        "--ballot",
        "local.leeds.kirkstall.2027-05-06",
        "--status",
        "considering",
        "--json",
    ]);
    assert_eq!(published["seq"], 4, "{published}");
    running.stop("-TERM");
    let check = ok(&["store", "check", "--config", path(&config)]);
    assert!(check.contains("no damage found"), "{check}");

    // A directory a newer release wrote is refused, in one line, untouched.
    std::fs::write(&format_file, "2\n").unwrap();
    let before = std::fs::read(data.join("db")).unwrap();
    for args in [
        vec!["node", "--config", path(&config)],
        vec!["store", "check", "--config", path(&config)],
    ] {
        let out = failure(&args);
        let err = stderr(&out);
        assert!(err.contains("format 2"), "{err}");
        assert!(err.contains("newer release"), "{err}");
    }
    assert_eq!(std::fs::read(data.join("db")).unwrap(), before);
}
