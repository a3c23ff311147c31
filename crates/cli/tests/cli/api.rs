//! What keeps the API usable and safe from the command line: lists longer than a
//! page are followed to the end, and a bearer token never crosses the network in
//! clear (a node without TLS listens on loopback only; the CLI will not send a
//! token over plain HTTP to another machine).

use std::time::Duration;

use super::{Alliance, fails, ok, path, start};

/// More statements than one page holds (100 by default): `accord statements` follows
/// the pages and prints every one in one JSON document.
#[test]
fn lists_longer_than_a_page_are_followed_to_the_end() {
    let a = Alliance::start();
    let n = 105;
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let a = &a;
            scope.spawn(move || {
                for i in (worker..n).step_by(4) {
                    a.ok(&[
                        "statement",
                        "publish",
                        "--title",
                        &format!("Statement {i:03}"),
                        "--text",
                        "Text.",
                    ]);
                }
            });
        }
    });
    let statements = a.json(&["statements", "--json"]);
    let mut titles: Vec<String> = statements
        .as_array()
        .expect("one JSON array")
        .iter()
        .map(|s| s["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    let expected: Vec<String> = (0..n).map(|i| format!("Statement {i:03}")).collect();
    assert_eq!(titles, expected);
    let table = a.ok(&["statements"]);
    assert_eq!(table.lines().count(), n + 1, "a header and every statement");
}

/// Writes a charter, a key and a token into `dir`; returns the token's SHA-256.
fn node_files(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let key = ok(&["keygen", "--out", path(&dir.join("keys/red.pem"))]);
    ok(&[
        "charter",
        "--name",
        "Test Alliance",
        "--member",
        &format!("Red Party={}", key.trim()),
        "--out",
        path(&dir.join("charter.json")),
    ]);
    ok(&["token", "new", "--out", path(&dir.join("token"))])
        .trim()
        .to_owned()
}

/// Without [tls], tokens would cross the network in clear: the node refuses to
/// listen anywhere but loopback, with one line naming the address and the fix.
#[test]
fn a_node_without_tls_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hash = node_files(d);
    let config = |listen: &str| {
        format!(
            "data_dir = \"data\"\nlisten = \"{listen}\"\ncharter = \"charter.json\"\n\
             identities = [\"keys/red.pem\"]\n[[operators]]\nname = \"op\"\n\
             token_sha256 = \"{hash}\"\nidentities = [\"Red Party\"]\n"
        )
    };
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:7400"] {
        std::fs::write(d.join("node.toml"), config(listen)).unwrap();
        let err = fails(&["node", "--config", path(&d.join("node.toml"))]);
        assert!(
            err.contains(&format!("listen = \"{listen}\" is not a loopback address")),
            "{err}"
        );
        assert!(err.contains("add [tls]"), "{err}");
        assert!(!d.join("data").exists(), "nothing made for {listen}");
    }
    // On loopback it starts.
    std::fs::write(d.join("node.toml"), config("127.0.0.1:0")).unwrap();
    let (_node, address) = start(
        &["node", "--config", path(&d.join("node.toml"))],
        "listening on ",
        Duration::from_secs(30),
    );
    assert!(address.starts_with("127.0.0.1:"), "{address}");
}

/// The CLI sends its token over plain http:// only to this machine; anything else
/// is a one-line error before any connection is made.
#[test]
fn the_cli_never_sends_a_token_in_clear_to_another_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("token"), "secret\n").unwrap();
    for node in [
        "http://192.0.2.1:7400",
        "http://node.example.org:7400",
        "192.0.2.1:7400",
        "http://[2001:db8::1]:7400",
    ] {
        let config = d.join("client.toml");
        std::fs::write(
            &config,
            format!("node = \"{node}\"\ntoken_file = \"token\"\n"),
        )
        .unwrap();
        let err = fails(&["status", "--config", path(&config)]);
        assert!(
            err.contains("refusing to send the token in clear"),
            "{node}: {err}"
        );
        assert!(err.contains("https://"), "{node}: {err}");
    }
    // Loopback names are allowed (and here unreachable).
    for node in ["http://localhost:9", "http://[::1]:9", "http://127.0.0.2:9"] {
        let config = d.join("client.toml");
        std::fs::write(
            &config,
            format!("node = \"{node}\"\ntoken_file = \"token\"\n"),
        )
        .unwrap();
        let err = fails(&["status", "--config", path(&config)]);
        assert!(err.contains("cannot connect"), "{node}: {err}");
    }
}
