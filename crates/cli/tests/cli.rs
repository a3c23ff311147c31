//! The `accord` binary, run as a user would: set-up commands on files, a node started
//! with `accord node`, client commands against it, and the demo.

use accord_tests::process::{Running, http_get};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Ballots: readable names, deadlines, election ids refused.
#[path = "cli/ballots.rs"]
mod ballots;
/// `accord feed`: members' calendar links.
#[path = "cli/feed.rs"]
mod feed;

/// `accord export`, verified by Python's cryptography.
#[path = "cli/export.rs"]
mod export;
/// Backups on a schedule: the systemd timer and service in deploy/.
#[path = "cli/schedule.rs"]
mod schedule;
/// Data directories of older releases, and newer formats refused.
#[path = "cli/upgrade.rs"]
mod upgrade;

#[path = "cli/join.rs"]
mod join;

/// Paged lists and tokens never sent in clear.
#[path = "cli/api.rs"]
mod api;

const ACCORD: &str = env!("CARGO_BIN_EXE_accord");

fn accord(args: &[&str]) -> Output {
    Command::new(ACCORD)
        .args(args)
        .env_remove("ACCORD_CONFIG")
        .output()
        .expect("accord runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs accord and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let output = accord(args);
    assert!(
        output.status.success(),
        "accord {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("accord {args:?}: {e}: {text}"))
}

/// Expects exit code 1 and exactly one line on stderr starting with "error: ".
fn fails(args: &[&str]) -> String {
    stderr(&failure(args))
}

/// Runs accord and checks it failed as [`fails`] says; returns the whole output.
fn failure(args: &[&str]) -> Output {
    let output = accord(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "accord {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    output
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Starts `accord args…`; its stdout lines arrive on the receiver.
fn start_lines(args: &[&str]) -> (Running, mpsc::Receiver<String>) {
    let mut child = Command::new(ACCORD)
        .args(args)
        .env_remove("ACCORD_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("accord starts");
    let out = child.stdout.take().unwrap();
    let running = Running::new(child);
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    (running, receive)
}

/// Starts `accord args…` and waits (bounded) for a stdout line starting with `prefix`;
/// returns the rest of that line.
fn start(args: &[&str], prefix: &str, timeout: Duration) -> (Running, String) {
    let (running, lines) = start_lines(args);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {prefix:?} line from accord {args:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (running, rest.trim().to_owned());
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keygen_writes_a_private_pem_that_key_show_and_openssl_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("org.pem");
    let id = ok(&["keygen", "--out", path(&key)]).trim().to_owned();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(ok(&["key", "show", path(&key)]).trim(), id);

    // Never overwritten by accident.
    let err = fails(&["keygen", "--out", path(&key)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
    let other = ok(&["keygen", "--out", path(&key), "--force"]);
    assert_ne!(other.trim(), id);

    // openssl reads it, and agrees on the public key (when openssl is installed).
    if let Ok(out) = Command::new("openssl")
        .args(["pkey", "-in", path(&key), "-pubout", "-outform", "DER"])
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            hex::encode(&out.stdout[out.stdout.len() - 32..]),
            other.trim()
        );
    }

    let err = fails(&["key", "show", path(&dir.path().join("missing.pem"))]);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn token_file_is_private_and_its_hash_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let hash = ok(&["token", "new", "--out", path(&token)]);
    #[cfg(unix)]
    assert_eq!(mode(&token), 0o600);
    let text = std::fs::read_to_string(&token).unwrap();
    assert_eq!(text.trim().len(), 64);
    assert_eq!(
        hash.trim(),
        hex::encode(Sha256::digest(text.trim().as_bytes()))
    );
    fails(&["token", "new", "--out", path(&token)]);
}

#[test]
fn charter_is_built_from_keys_or_key_files_and_bad_specs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pem");
    let b = dir.path().join("b.pem");
    let a_id = ok(&["keygen", "--out", path(&a)]).trim().to_owned();
    let b_id = ok(&["keygen", "--out", path(&b)]).trim().to_owned();
    let charter = dir.path().join("charter.json");
    let id = ok(&[
        "charter",
        "--name",
        "Test Alliance",
        "--member",
        &format!("Party A={}=PP1", path(&a)),
        "--member",
        &format!("Party B={b_id}"),
        "--secretary",
        &format!(
            "Sec={}",
            ok(&["keygen", "--out", path(&dir.path().join("s.pem"))]).trim()
        ),
        "--out",
        path(&charter),
    ]);
    let shown = json(&["charter", "show", path(&charter), "--json"]);
    assert_eq!(shown["id"], id.trim());
    assert_eq!(shown["name"], "Test Alliance");
    assert_eq!(shown["members"][0]["id"], a_id.as_str());
    assert_eq!(shown["members"][0]["ec_id"], "PP1");
    assert_eq!(shown["members"][1]["name"], "Party B");
    assert_eq!(shown["secretaries"][0]["name"], "Sec");
    assert!(ok(&["charter", "show", path(&charter)]).contains("Party B"));

    let out = dir.path().join("bad.json");
    let err = fails(&[
        "charter",
        "--name",
        "X",
        "--member",
        "no-equals-sign",
        "--out",
        path(&out),
    ]);
    assert!(err.contains("NAME=KEY"), "{err}");
    let err = fails(&[
        "charter",
        "--name",
        "X",
        "--member",
        "A=notakey",
        "--out",
        path(&out),
    ]);
    assert!(err.contains("neither a public key"), "{err}");
    // Validation is the core's: duplicate names are refused with its message.
    let err = fails(&[
        "charter",
        "--name",
        "X",
        "--member",
        &format!("A={a_id}"),
        "--member",
        &format!("a={b_id}"),
        "--out",
        path(&out),
    ]);
    assert!(err.contains("charter names \"a\" more than once"), "{err}");
    assert!(!out.exists());
}

#[test]
fn usage_errors_keep_exit_code_2() {
    let output = accord(&["intention", "declare", "--ballot", "x"]);
    assert_eq!(output.status.code(), Some(2));
    let output = accord(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn unreachable_node_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("token"), "abc\n").unwrap();
    let config = dir.path().join("client.toml");
    std::fs::write(
        &config,
        format!("node = \"http://127.0.0.1:{port}\"\ntoken_file = \"token\"\n"),
    )
    .unwrap();
    let err = fails(&["status", "--config", path(&config)]);
    assert!(err.contains("cannot connect"), "{err}");
}

/// An alliance of two members and a secretary on one node, started with `accord node`.
struct Alliance {
    _dir: tempfile::TempDir,
    config: PathBuf,
    node: Option<Running>,
}

impl Alliance {
    fn start() -> Self {
        Self::start_with(false)
    }

    /// With `tls`, the node serves TLS with a fresh certificate and the client pins it.
    fn start_with(tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("keys")).unwrap();
        let mut keys = Vec::new();
        for name in ["red", "green", "sec", "blue"] {
            let file = d.join("keys").join(format!("{name}.pem"));
            keys.push(ok(&["keygen", "--out", path(&file)]).trim().to_owned());
        }
        ok(&[
            "charter",
            "--name",
            "Test Alliance",
            "--member",
            &format!("Red Party={}", keys[0]),
            "--member",
            &format!("Green Party={}", keys[1]),
            "--member",
            &format!("Blue Party={}", keys[3]),
            "--secretary",
            &format!("Secretariat={}", keys[2]),
            "--out",
            path(&d.join("charter.json")),
        ]);
        let hash = ok(&["token", "new", "--out", path(&d.join("token"))]);
        let mut node_toml = format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\ncharter = \"charter.json\"\n\
             identities = [\"keys/red.pem\", \"keys/green.pem\", \"keys/sec.pem\"]\n\
             [[operators]]\nname = \"test\"\ntoken_sha256 = \"{}\"\n\
             identities = [\"Red Party\", \"Green Party\", \"Secretariat\"]\n",
            hash.trim()
        );
        let mut client_extra = String::new();
        if tls {
            let fingerprint = ok(&[
                "tls",
                "new",
                "--cert",
                path(&d.join("node.crt")),
                "--key",
                path(&d.join("node.key")),
                "--name",
                "127.0.0.1",
            ]);
            assert_eq!(ok(&["tls", "show", path(&d.join("node.crt"))]), fingerprint);
            node_toml.push_str("[tls]\ncert = \"node.crt\"\nkey = \"node.key\"\n");
            client_extra = format!("cert_sha256 = \"{}\"\n", fingerprint.trim());
        }
        std::fs::write(d.join("node.toml"), node_toml).unwrap();
        let (node, address) = start(
            &["node", "--config", path(&d.join("node.toml"))],
            "listening on ",
            Duration::from_secs(30),
        );
        let config = d.join("client.toml");
        std::fs::write(
            &config,
            format!(
                "node = \"{}://{address}\"\ntoken_file = \"token\"\nas = \"Red Party\"\n{client_extra}",
                if tls { "https" } else { "http" }
            ),
        )
        .unwrap();
        Self {
            _dir: dir,
            config,
            node: Some(node),
        }
    }

    /// `accord <args> --config <client.toml>`.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--config", path(&self.config)]);
        all
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.args(args))
    }

    fn json(&self, args: &[&str]) -> Value {
        json(&self.args(args))
    }

    fn entries(&self) -> u64 {
        self.json(&["status", "--json"])["entries"]
            .as_u64()
            .unwrap()
    }
}

const LEEDS: &str = "local.leeds.headingley-hyde-park.2027-05-06";

#[test]
fn node_serves_publishing_and_queries_end_to_end() {
    let mut alliance = Alliance::start();
    let a = &alliance;

    let status = a.json(&["status", "--json"]);
    assert_eq!(status["alliance_name"], "Test Alliance");
    assert_eq!(status["entries"], 0);
    assert_eq!(status["digest"].as_str().unwrap().len(), 64);
    // The config may also come before the command, or from ACCORD_CONFIG.
    let before: Value =
        serde_json::from_str(&ok(&["--config", path(&a.config), "status", "--json"])).unwrap();
    assert_eq!(before["alliance"], status["alliance"]);
    let output = Command::new(ACCORD)
        .args(["status", "--json"])
        .env("ACCORD_CONFIG", &a.config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // A node address without a scheme means plain http.
    let bare = a._dir.path().join("bare.toml");
    let text = std::fs::read_to_string(&a.config)
        .unwrap()
        .replace("http://", "");
    std::fs::write(&bare, text).unwrap();
    ok(&["status", "--config", path(&bare)]);

    // `clashes watch --json` prints the current list, then each new one, a line each.
    let (watch, updates) = start_lines(&a.args(&["clashes", "watch", "--json"]));
    let first = updates
        .recv_timeout(Duration::from_secs(30))
        .expect("first list");
    assert_eq!(first, "[]");

    // Two members intend to stand on one ballot: an open clash.
    a.ok(&[
        "intention",
        "declare",
        "--ballot",
        LEEDS,
        "--status",
        "intends",
    ]);
    let published = a.json(&[
        "intention",
        "declare",
        "--as",
        "green party",
        "--ballot",
        LEEDS,
        "--status",
        "intends",
        "--candidate",
        "Jo Example",
        "--area",
        "E05011404",
        "--json",
    ]);
    assert_eq!(published["author"], "Green Party");
    assert_eq!(published["seq"], 1);
    let clashes = a.json(&["clashes", "--json"]);
    let clashes = clashes.as_array().unwrap();
    assert_eq!(clashes.len(), 1, "{clashes:?}");
    assert_eq!(clashes[0]["ballot"], LEEDS);
    assert_eq!(clashes[0]["state"], "open");
    let mut parties: Vec<&str> = clashes[0]["parties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["organisation"].as_str().unwrap())
        .collect();
    parties.sort();
    assert_eq!(parties, ["Green Party", "Red Party"]);
    assert!(
        clashes[0]["nominations_close"]
            .as_str()
            .unwrap()
            .starts_with("2027-04-")
    );
    assert!(a.ok(&["clashes"]).contains("open"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let update: Value = serde_json::from_str(&updates.recv_timeout(left).expect("an update"))
            .expect("one JSON document per line");
        if update.as_array().unwrap().len() == 1 {
            assert_eq!(update[0]["state"], "open");
            break;
        }
    }
    watch.stop("-INT");

    let intentions = a.json(&["intentions", "--org", "Green Party", "--json"]);
    assert_eq!(intentions.as_array().unwrap().len(), 1);
    assert_eq!(intentions[0]["candidate"], "Jo Example");
    assert_eq!(intentions[0]["status"], "intends");

    // A bad ballot id: one line naming the code and the node's reason, nothing stored.
    let before = a.entries();
    let status_before = a.json(&["status", "--json"]);
    let err = fails(&a.args(&[
        "intention",
        "declare",
        "--ballot",
        "local.leeds.2027-02-30",
        "--status",
        "intends",
    ]));
    assert!(
        err.starts_with("error: refused (invalid argument): "),
        "{err}"
    );
    assert!(err.contains("2027-02-30"), "{err}");
    assert_eq!(a.entries(), before);
    assert_eq!(
        a.json(&["status", "--json"])["heads"],
        status_before["heads"]
    );

    // A member cannot resolve; the secretary can, and the stand-aside honours it.
    let err = fails(&a.args(&[
        "resolve",
        "--ballot",
        LEEDS,
        "--stands",
        "Red Party",
        "--stand-aside",
        "Green Party",
        "--rationale",
        "x",
    ]));
    assert!(err.contains("(permission denied)"), "{err}");
    a.ok(&[
        "resolve",
        "--as",
        "Secretariat",
        "--ballot",
        LEEDS,
        "--stands",
        "Red Party",
        "--stand-aside",
        "Green Party",
        "--rationale",
        "Red came second last time",
    ]);
    assert_eq!(a.json(&["clashes", "--json"])[0]["state"], "pending");
    a.ok(&[
        "intention",
        "declare",
        "--as",
        "Green Party",
        "--ballot",
        LEEDS,
        "--status",
        "stood-aside",
    ]);
    assert_eq!(a.json(&["clashes", "--json"])[0]["state"], "resolved");
    assert_eq!(
        a.json(&["clashes", "--state", "open", "--json"]),
        serde_json::json!([])
    );
    let resolutions = a.json(&["resolutions", "--json"]);
    assert_eq!(resolutions[0]["stands"][0]["name"], "Red Party");
    assert_eq!(resolutions[0]["stand_aside"][0]["name"], "Green Party");
    assert_eq!(resolutions[0]["state"], "resolved");

    // A statement co-signed by Green becomes joint once Green endorses it.
    let statement = a.json(&[
        "statement",
        "publish",
        "--title",
        "Unity",
        "--text",
        "We stand together.",
        "--cosigner",
        "Green Party",
        "--json",
    ]);
    let id = statement["id"].as_str().unwrap().to_owned();
    assert_eq!(a.json(&["statements", "--json"])[0]["joint"], false);
    a.ok(&["statement", "endorse", &id[..10], "--as", "Green Party"]);
    let statements = a.json(&["statements", "--json"]);
    assert_eq!(statements[0]["id"], id.as_str());
    assert_eq!(statements[0]["joint"], true);
    assert_eq!(statements[0]["endorsed_by"][0]["name"], "Green Party");

    // Two events at one venue at overlapping times clash; a cancelled one stops clashing.
    for (who, uid, start, end) in [
        ("Red Party", "rally", "2027-04-12T19:00", "2027-04-12T21:00"),
        (
            "Green Party",
            "meeting",
            "2027-04-12T20:00",
            "2027-04-12T22:00",
        ),
    ] {
        a.ok(&[
            "event",
            "publish",
            "--as",
            who,
            "--uid",
            uid,
            "--title",
            uid,
            "--start",
            start,
            "--end",
            end,
            "--venue",
            "Town Hall",
            "--time-zone",
            "Europe/London",
        ]);
    }
    let events = a.json(&["events", "--json"]);
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert_eq!(events[0]["start_utc"], "2027-04-12T18:00:00Z");
    let event_clashes = a.json(&["event-clashes", "--json"]);
    assert_eq!(event_clashes.as_array().unwrap().len(), 1);
    assert_eq!(event_clashes[0]["reason"], "venue");
    a.ok(&["event", "cancel", "--as", "Green Party", "--uid", "meeting"]);
    assert_eq!(a.json(&["event-clashes", "--json"]), serde_json::json!([]));
    assert_eq!(a.json(&["events", "--json"]).as_array().unwrap().len(), 1);
    let all = a.json(&["events", "--include-cancelled", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 2);

    // An all-day event (issue 8): dates, the last inclusive (default the first); it
    // clashes by dates with the rally at the same venue that day.
    a.ok(&[
        "event",
        "publish",
        "--as",
        "Red Party",
        "--uid",
        "fair",
        "--title",
        "Fair",
        "--start",
        "2027-04-12",
        "--all-day",
        "--venue",
        "town hall",
    ]);
    let fair = a
        .json(&["events", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uid"] == "fair")
        .cloned()
        .expect("the fair is listed");
    assert_eq!(fair["all_day"], true);
    assert_eq!(
        (fair["start"].as_str(), fair["end"].as_str()),
        (Some("2027-04-12"), Some("2027-04-12"))
    );
    assert_eq!(fair["start_utc"], "2027-04-11T23:00:00Z");
    let table = a.ok(&["events"]);
    assert!(table.contains("all day"), "{table}");
    assert_eq!(
        a.json(&["event-clashes", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let entries = a.entries();
    let err = fails(&a.args(&[
        "event",
        "publish",
        "--as",
        "Red Party",
        "--uid",
        "bad",
        "--title",
        "Bad",
        "--start",
        "2027-04-12T10:00",
        "--all-day",
    ]));
    assert!(
        err.contains("is not a date of the form YYYY-MM-DD"),
        "{err}"
    );
    assert_eq!(a.entries(), entries);

    // The log shows each entry, with its signature checked by the client.
    let log = a.json(&["log", "--author", "Green Party", "--json"]);
    let kinds: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["intention", "intention", "endorsement", "event", "event"]
    );
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| e["signature_ok"] == true)
    );
    assert_eq!(log[1]["seq"], 2);

    // An entry signed elsewhere (Blue Party is a member but not at home on this node)
    // is accepted through submit.
    let charter = json(&[
        "charter",
        "show",
        path(&a._dir.path().join("charter.json")),
        "--json",
    ]);
    let alliance_id: accord_core::AllianceId = charter["id"].as_str().unwrap().parse().unwrap();
    let blue = accord_core::Identity::from_pem(
        &std::fs::read_to_string(a._dir.path().join("keys/blue.pem")).unwrap(),
    )
    .unwrap();
    let (kind, body) = accord_core::body::encode(
        &accord_core::pb::publish_request::Body::Intention(accord_core::pb::Intention {
            ballot: "local.leeds.little-london-and-woodhouse.2027-05-06".into(),
            status: accord_core::pb::IntentionStatus::Considering as i32,
            ..Default::default()
        }),
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let signed = accord_core::entry::sign(&blue, alliance_id, None, now_ms, kind as i32, body);
    let file = a._dir.path().join("blue-1.bin");
    std::fs::write(&file, prost::Message::encode_to_vec(&signed)).unwrap();
    let submitted = a.json(&["submit", path(&file), "--json"]);
    assert_eq!(submitted["seq"], 1);
    assert_eq!(submitted["author_id"], blue.public_id().to_string());
    let log = a.json(&["log", "--author", "Blue Party", "--json"]);
    assert_eq!(log[0]["kind"], "intention");
    assert_eq!(log[0]["id"], submitted["id"]);
    // Publishing as Blue Party is refused: this node does not hold its key.
    let err = fails(&a.args(&[
        "intention",
        "declare",
        "--as",
        "Blue Party",
        "--ballot",
        LEEDS,
        "--status",
        "intends",
    ]));
    assert!(err.starts_with("error: refused ("), "{err}");

    // Submitting bytes that are not an entry is refused, and nothing is stored.
    let before = a.entries();
    let garbage = a._dir.path().join("garbage.bin");
    std::fs::write(&garbage, [0x0a, 0x03, 1, 2, 3]).unwrap();
    let err = fails(&a.args(&["submit", path(&garbage)]));
    assert!(err.contains("refused (invalid argument)"), "{err}");
    assert_eq!(a.entries(), before);

    alliance.node.take().unwrap().stop("-TERM");
}

#[test]
fn tls_node_is_reached_through_its_pinned_certificate() {
    let mut alliance = Alliance::start_with(true);
    let a = &alliance;
    let d = a._dir.path();
    #[cfg(unix)]
    assert_eq!(mode(&d.join("node.key")), 0o600);
    // openssl agrees on the fingerprint (when installed).
    if let Ok(out) = Command::new("openssl")
        .args([
            "x509",
            "-in",
            path(&d.join("node.crt")),
            "-noout",
            "-fingerprint",
            "-sha256",
        ])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .replace(':', "");
        assert!(
            text.contains(ok(&["tls", "show", path(&d.join("node.crt"))]).trim()),
            "{text}"
        );
    }
    a.ok(&[
        "intention",
        "declare",
        "--ballot",
        LEEDS,
        "--status",
        "intends",
    ]);
    assert_eq!(a.entries(), 1);

    // A wrong pin is refused in one line.
    let config = std::fs::read_to_string(&a.config).unwrap();
    let start = config.find("cert_sha256 = \"").unwrap() + "cert_sha256 = \"".len();
    let mut wrong = config.clone();
    wrong.replace_range(start..start + 64, &"0".repeat(64));
    let wrong_config = d.join("wrong.toml");
    std::fs::write(&wrong_config, wrong).unwrap();
    let err = fails(&["status", "--config", path(&wrong_config)]);
    let fingerprint = ok(&["tls", "show", path(&d.join("node.crt"))]);
    assert!(
        err.contains(&format!(
            "the node presented TLS certificate {}, which is not cert_sha256 in the client config",
            fingerprint.trim()
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // And https without a pin is a config error.
    let unpinned = d.join("unpinned.toml");
    std::fs::write(&unpinned, &config[..config.find("cert_sha256").unwrap()]).unwrap();
    let err = fails(&["status", "--config", path(&unpinned)]);
    assert!(err.contains("cert_sha256"), "{err}");
    fails(&[
        "tls",
        "new",
        "--cert",
        path(&d.join("node.crt")),
        "--key",
        path(&d.join("x.key")),
    ]);

    alliance.node.take().unwrap().stop("-TERM");
}

/// Runs `accord args…` and waits for it to end, at most `timeout` (else it is killed
/// and the test fails).
fn finished_within(args: &[&str], timeout: Duration) -> Output {
    let child = Command::new(ACCORD)
        .args(args)
        .env_remove("ACCORD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("accord starts");
    let mut running = Running::new(child);
    let deadline = Instant::now() + timeout;
    while running.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "accord {args:?} still running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    use std::io::Read;
    running
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    running
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut err)
        .unwrap();
    Output {
        status: running.child.wait().unwrap(),
        stdout: out,
        stderr: err,
    }
}

/// Runs `accord args…` with a client config and parses its JSON output.
fn json_at(config: &str, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", "--config", config]);
    json(&all)
}

/// Waits (bounded) until every node reports the same digest and entry count; returns
/// them.
fn converged(configs: &[String], timeout: Duration) -> (Value, Value) {
    let mut last = (Value::Null, Value::Null);
    wait_for("every node to hold the same ledger", timeout, || {
        let statuses: Vec<Value> = configs.iter().map(|c| json_at(c, &["status"])).collect();
        last = (
            statuses[0]["digest"].clone(),
            statuses[0]["entries"].clone(),
        );
        statuses
            .iter()
            .all(|s| s["digest"] == last.0 && s["entries"] == last.1)
    });
    last
}

/// Starts `accord demo` on `demo` (ports chosen by the system) and waits until it
/// says it is ready.
fn start_demo(demo: &Path, timeout: Duration) -> Running {
    start(
        &["demo", "--dir", path(demo), "--listen", "127.0.0.1:0"],
        "Press Ctrl-C",
        timeout,
    )
    .0
}

/// The client configs of the demo's organisations whose role is `role` ("member" or
/// "secretary"), in the manifest's order.
fn configs_with_role<'a>(manifest: &Value, configs: &'a [String], role: &str) -> Vec<&'a String> {
    configs
        .iter()
        .enumerate()
        .filter(|(i, _)| manifest["organisations"][*i]["role"] == role)
        .map(|(_, c)| c)
        .collect()
}

fn demo_manifest(demo: &Path) -> (Value, Vec<String>) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(demo.join("demo.json")).unwrap()).unwrap();
    let configs = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["client_config"].as_str().unwrap().to_owned())
        .collect();
    (manifest, configs)
}

#[test]
fn demo_runs_a_federation_of_four_nodes_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("pal");
    let began = Instant::now();
    let running = start_demo(&demo, Duration::from_secs(120));
    eprintln!("demo ready in {:?}", began.elapsed());
    // demo.json is written before the summary is printed.
    let (manifest, configs) = demo_manifest(&demo);
    assert_eq!(
        manifest["alliance"]["name"],
        "Progressive Alliance of the Left"
    );
    assert_eq!(manifest["alliance"]["id"].as_str().unwrap().len(), 64);
    let nodes = manifest["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{manifest}");
    let organisations = manifest["organisations"].as_array().unwrap();
    assert_eq!(organisations.len(), 4);
    for (node, org) in nodes.iter().zip(organisations) {
        assert!(
            node["grpc"]
                .as_str()
                .unwrap()
                .starts_with("https://127.0.0.1:"),
            "{node}"
        );
        assert_eq!(node["cert_sha256"].as_str().unwrap().len(), 64);
        for file in ["client_config", "node_config", "token_file", "data_dir"] {
            assert!(Path::new(node[file].as_str().unwrap()).exists(), "{file}");
        }
        // Each organisation is at home on its own node.
        assert_eq!(org["node"], node["name"]);
        assert_eq!(node["organisation"], org["name"]);
        assert_eq!(org["id"].as_str().unwrap().len(), 64);
        assert!(Path::new(org["key_file"].as_str().unwrap()).exists());
        #[cfg(unix)]
        {
            assert_eq!(mode(Path::new(node["token_file"].as_str().unwrap())), 0o600);
            assert_eq!(mode(Path::new(org["key_file"].as_str().unwrap())), 0o600);
            // Regression (issue 8): the data folders (members' links among the data)
            // were readable by anyone.
            assert_eq!(mode(Path::new(node["data_dir"].as_str().unwrap())), 0o700);
        }
    }
    // Regression (issue 8): demo.json holds members' links and was world-readable.
    #[cfg(unix)]
    {
        assert_eq!(mode(&demo.join("demo.json")), 0o600);
        assert_eq!(mode(&demo.join("keys")), 0o700);
        assert_eq!(mode(&demo.join("nodes")), 0o700);
    }
    let mut distinct = configs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "one client config per node: {configs:?}");
    assert_eq!(
        organisations
            .iter()
            .filter(|o| o["role"] == "secretary")
            .count(),
        1
    );

    // Every node holds the same ledger and is connected to its three peers.
    let (digest, entries) = converged(&configs, Duration::from_secs(10));
    assert!(entries.as_u64().unwrap() > 20, "{entries}");
    wait_for(
        "every node's three peers to be connected",
        Duration::from_secs(30),
        || {
            configs.iter().all(|c| {
                let peers = json_at(c, &["status"])["peers"].clone();
                let peers = peers.as_array().unwrap();
                peers.len() == 3 && peers.iter().all(|p| p["connected"] == true)
            })
        },
    );
    for (config, node) in configs.iter().zip(nodes) {
        let status = json_at(config, &["status"]);
        assert_eq!(status["alliance"], manifest["alliance"]["id"]);
        assert_eq!(status["digest"], digest);
        assert_eq!(status["entries"], entries);
        assert_eq!(status["heads"].as_object().unwrap().len(), 4);
        let home: Vec<&Value> = status["organisations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["home"] == true)
            .map(|o| &o["name"])
            .collect();
        assert_eq!(home, [&node["organisation"]], "{config}");
        let table = ok(&["status", "--config", config]);
        assert!(table.contains("PEER"), "{table}");
        assert!(table.contains("peers     3, 3 connected"), "{table}");
        assert!(table.contains("frozen    none"), "{table}");
        let connected = table
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("connected"))
            .count();
        assert_eq!(connected, 3, "{table}");
    }

    // Every node serves the members' calendar from its own replica: public events in
    // the public feed and page, alliance-only ones only through the member's link.
    for node in nodes {
        let calendar = &node["calendar"];
        let get = |key: &str| {
            let url = calendar[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key}: {node}"));
            assert!(url.starts_with(node["http"].as_str().unwrap()), "{url}");
            let (status, body) = http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(status, 200, "GET {url}: {body}");
            body
        };
        let feed = get("feed");
        assert!(feed.starts_with("BEGIN:VCALENDAR\r\n"), "{feed}");
        assert!(feed.contains("UID:canvass-briefing-headingley."), "{feed}");
        // The sample all-day event is written with dates.
        assert!(feed.contains("DTSTART;VALUE=DATE:"), "{feed}");
        assert!(!feed.contains("members-meeting-hyde-park"), "{feed}");
        let member_feed = get("member_feed");
        assert!(
            member_feed.contains("UID:members-meeting-hyde-park."),
            "{member_feed}"
        );
        assert!(get("page").contains("Canvass briefing"));
        let member_page = get("member_page");
        assert!(member_page.contains("Hyde Park members"), "{member_page}");
    }

    // A second demo on the same folder stops at once, leaving the running one's files
    // alone.
    let client_tomls: Vec<Vec<u8>> = configs.iter().map(|c| std::fs::read(c).unwrap()).collect();
    let second = finished_within(
        &["demo", "--dir", path(&demo), "--listen", "127.0.0.1:0"],
        Duration::from_secs(20),
    );
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("another `accord demo`"), "{err}");
    for (config, before) in configs.iter().zip(&client_tomls) {
        assert_eq!(&std::fs::read(config).unwrap(), before, "{config}");
    }
    assert!(demo.join("demo.json").exists());

    // Every node derives the same clashes.
    let clashes = json_at(&configs[0], &["clashes"]);
    for config in &configs[1..] {
        assert_eq!(json_at(config, &["clashes"]), clashes, "{config}");
    }
    let clashes = clashes.as_array().unwrap();
    assert!(clashes.len() >= 2, "{clashes:?}");
    let states: Vec<&str> = clashes
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"resolved"), "{states:?}");
    assert!(states.contains(&"open"), "{states:?}");
    assert!(states.contains(&"potential"), "{states:?}");
    for config in &configs {
        let event_clashes = json_at(config, &["event-clashes"]);
        assert!(!event_clashes.as_array().unwrap().is_empty(), "{config}");
    }
    let events = json_at(&configs[3], &["events"]);
    assert!(events.as_array().unwrap().len() >= 7);
    let statements = json_at(&configs[2], &["statements"]);
    assert!(
        statements
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["joint"] == true)
    );

    // Northern Green Left publishes through its own node (its client config says `as`);
    // the secretariat's node sees the new clash in Ashley.
    let green_left = &configs[1];
    assert_eq!(nodes[1]["organisation"], "Northern Green Left");
    let ashley = "local.bristol.ashley.2027-05-06";
    let published = json(&[
        "intention",
        "declare",
        "--config",
        green_left,
        "--ballot",
        ashley,
        "--status",
        "intends",
        "--json",
    ]);
    assert_eq!(published["author"], organisations[1]["name"], "{published}");
    let began = Instant::now();
    wait_for(
        "the Ashley clash on the secretariat's node",
        Duration::from_secs(15),
        || {
            json_at(&configs[3], &["clashes"])
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["ballot"] == ashley)
        },
    );
    eprintln!("a publish reached another node in {:?}", began.elapsed());
    let (digest, entries) = converged(&configs, Duration::from_secs(15));
    running.stop("-INT");

    // A second start, with no --listen, reuses the folder: the same keys, certificates
    // and ledgers, and no second copy of the sample data.
    let began = Instant::now();
    let (running, _) = start(
        &["demo", "--dir", path(&demo)],
        "Press Ctrl-C",
        Duration::from_secs(60),
    );
    eprintln!("demo restarted in {:?}", began.elapsed());
    assert!(ok(&["charter", "show", path(&demo.join("charter.json"))]).contains("PAL Secretariat"));
    let (again, configs) = demo_manifest(&demo);
    assert_eq!(again["alliance"], manifest["alliance"]);
    assert_eq!(again["organisations"], manifest["organisations"]);
    for (before, after) in nodes.iter().zip(again["nodes"].as_array().unwrap()) {
        assert_eq!(before["cert_sha256"], after["cert_sha256"]);
        assert_eq!(before["client_config"], after["client_config"]);
    }
    for (before, after) in nodes.iter().zip(again["nodes"].as_array().unwrap()) {
        // The ports were free again, so they are reused.
        assert_eq!(before["grpc"], after["grpc"]);
    }
    for config in &configs {
        let status = json_at(config, &["status"]);
        assert_eq!(status["digest"], digest, "{config}");
        assert_eq!(status["entries"], entries, "{config}");
    }
    running.stop("-INT");

    // A third start finds one old port taken: every node gets a new port, and every
    // config names the new addresses, so the nodes federate again.
    let taken = nodes[2]["grpc"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .to_owned();
    let _holder = std::net::TcpListener::bind(&taken).expect("the old port is free");
    let running = start_demo(&demo, Duration::from_secs(60));
    let (third, configs) = demo_manifest(&demo);
    let third_nodes = third["nodes"].as_array().unwrap();
    assert!(
        third_nodes
            .iter()
            .all(|n| !n["grpc"].as_str().unwrap().ends_with(&taken)),
        "{third}"
    );
    wait_for(
        "every node's three peers to be connected at the new addresses",
        Duration::from_secs(30),
        || {
            configs.iter().all(|c| {
                let peers = json_at(c, &["status"])["peers"].clone();
                let peers = peers.as_array().unwrap();
                peers.len() == 3
                    && peers.iter().all(|p| {
                        p["connected"] == true
                            && third_nodes.iter().any(|n| n["grpc"] == p["address"])
                    })
            })
        },
    );
    let (digest_now, entries_now) = converged(&configs, Duration::from_secs(10));
    assert_eq!(digest_now, digest);
    assert_eq!(entries_now, entries);
    running.stop("-TERM");
}

/// Issue 11: the governance commands against the demo, as a user runs them: a
/// proposal prints an object with its `id`, a refusal is one line, and once a
/// majority approves, every node's roster holds the new organisation.
#[test]
fn governance_commands_admit_an_organisation_to_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("pal");
    let _running = start_demo(&demo, Duration::from_secs(120));
    let (manifest, configs) = demo_manifest(&demo);
    let members = configs_with_role(&manifest, &configs, "member");
    let secretary = configs_with_role(&manifest, &configs, "secretary")[0];
    let key_file = dir.path().join("fifth.pem");
    let key = ok(&["keygen", "--out", path(&key_file)]).trim().to_owned();

    let roster = json_at(members[0], &["roster"]);
    assert_eq!(roster["version"], 0);
    assert_eq!(roster["quorum"], "majority");
    let proposal = json_at(
        members[0],
        &[
            "propose",
            "admit",
            "--name",
            "Fifth Party",
            "--key",
            &key,
            "--ec-id",
            "PP500",
        ],
    );
    let id = proposal["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64, "{proposal}");
    let listed = json_at(members[0], &["proposals", "--open"]);
    assert_eq!(listed[0]["id"], proposal["id"], "{listed}");
    assert_eq!(listed[0]["change"], "admit Fifth Party as member");

    // The secretary may not vote; a second approval by the proposer is refused.
    wait_for(
        "the proposal to reach the secretary's node",
        Duration::from_secs(30),
        || {
            json_at(secretary, &["proposals"])
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    );
    let refused = fails(&["approve", &id, "--config", secretary]);
    assert!(
        refused.contains("refused (permission denied)")
            && refused.contains("may not publish approval"),
        "{refused}"
    );
    let again = fails(&["approve", &id[..12], "--config", members[0]]);
    assert!(again.contains("refused (already exists)"), "{again}");

    // Three members: one approval more is a majority.
    wait_for(
        "the proposal to reach the second member",
        Duration::from_secs(30),
        || {
            json_at(members[1], &["proposals"])
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    );
    let approval = json_at(members[1], &["approve", &id[..16]]);
    assert_eq!(approval["id"].as_str().unwrap().len(), 64);
    wait_for(
        "every roster to hold the fifth organisation",
        Duration::from_secs(30),
        || {
            configs.iter().all(|c| {
                let roster = json_at(c, &["roster"]);
                roster["version"] == 1
                    && roster["organisations"].as_array().unwrap().iter().any(|o| {
                        o["name"] == "Fifth Party"
                            && o["status"] == "active"
                            && o["ec_id"] == "PP500"
                    })
            })
        },
    );
    let table = ok(&["proposals", "--config", members[0]]);
    assert!(table.contains("passed"), "{table}");
    converged(&configs, Duration::from_secs(30));

    // Status names it with its role in the roster, and the calendar knows it at
    // once (no restart): its page of the feed is there, an unknown name is not.
    let status = json_at(members[0], &["status"]);
    let fifth = status["organisations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Fifth Party")
        .cloned()
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(fifth["role"], "member", "{fifth}");
    let secretary_row = status["organisations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["role"] == "secretary")
        .count();
    assert_eq!(secretary_row, 1, "{status}");
    let feed = manifest["nodes"][0]["calendar"]["feed"].as_str().unwrap();
    let (code, body) = http_get(&format!("{feed}?org=fifth-party")).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("BEGIN:VCALENDAR"), "{body}");
    let (code, _) = http_get(&format!("{feed}?org=sixth-party")).unwrap();
    assert_eq!(code, 404);
}
