//! `accord feed` through the real binary: a member's calendar link made, fetched,
//! listed, revoked (its feed then answers 404) and refused when revoked twice or when
//! the node serves no calendar. Nodes run as `accord node` processes on loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_tests::process::{Running, http_get};

use super::{json, ok, path, start, wait_for};

/// Like the binary's other tests' `fails`, and nothing on stdout either.
fn fails(args: &[&str]) -> String {
    let output = super::failure(args);
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    super::stderr(&output)
}

/// Starts `accord node --config <config>` and waits (bounded) for its address.
fn start_node(config: &Path) -> (Running, String) {
    start(
        &["node", "--config", path(config)],
        "listening on ",
        Duration::from_secs(30),
    )
}

/// The status of GET `url`.
fn status_of(url: &str) -> u16 {
    http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}")).0
}

/// An alliance of two members in one folder, and a node home to them, with or
/// without the calendar.
struct Alliance {
    dir: tempfile::TempDir,
}

impl Alliance {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("keys")).unwrap();
        let mut keys = Vec::new();
        for name in ["red", "green"] {
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
            "--out",
            path(&d.join("charter.json")),
        ]);
        Self { dir }
    }

    /// Writes `<name>/node.toml` (with `[http]` on a free loopback port if
    /// `calendar`) and `<name>/client.toml`; returns the client config's path, the
    /// node config's path and the calendar's base URL.
    fn node(&self, name: &str, calendar: bool) -> (PathBuf, PathBuf, Option<String>) {
        let d = self.dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        let hash = ok(&["token", "new", "--out", path(&d.join("token"))]);
        let root = self.dir.path();
        let mut node_toml = format!(
            "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\ncharter = {:?}\n\
             identities = [{:?}, {:?}]\n\
             [[operators]]\nname = \"test\"\ntoken_sha256 = \"{}\"\n\
             identities = [\"Red Party\", \"Green Party\"]\n",
            path(&root.join("charter.json")),
            path(&root.join("keys/red.pem")),
            path(&root.join("keys/green.pem")),
            hash.trim()
        );
        let base = calendar.then(|| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            node_toml.push_str(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
            // public_url defaults to http://<listen>.
            format!("http://127.0.0.1:{port}")
        });
        let node = d.join("node.toml");
        std::fs::write(&node, node_toml).unwrap();
        (d.join("client.toml"), node, base)
    }
}

fn write_client(client: &Path, address: &str) {
    std::fs::write(
        client,
        format!("node = \"http://{address}\"\ntoken_file = \"token\"\nas = \"Red Party\"\n"),
    )
    .unwrap();
}

#[test]
fn feed_links_are_made_listed_and_revoked_through_the_cli() {
    let alliance = Alliance::new();
    let (client, node_config, base) = alliance.node("red", true);
    let base = base.expect("a calendar");
    let (node, address) = start_node(&node_config);
    write_client(&client, &address);
    let config = path(&client);
    // The calendar listens a moment after the gRPC address is announced.
    wait_for("the calendar", Duration::from_secs(10), || {
        http_get(&format!("{base}/healthz")).is_ok_and(|(status, _)| status == 200)
    });

    let link = json(&["feed", "link", "Jo (Leeds)", "--json", "--config", config]);
    assert_eq!(link["label"], "Jo (Leeds)");
    assert!(link["revoked"].is_null(), "{link}");
    let id = link["id"].as_str().expect("an id").to_owned();
    assert_eq!(id.len(), 12, "{link}");
    let feed_url = link["feed_url"].as_str().expect("feed_url").to_owned();
    let page_url = link["page_url"].as_str().expect("page_url").to_owned();
    let webcal_url = link["webcal_url"].as_str().expect("webcal_url").to_owned();
    let token = page_url
        .strip_prefix(&format!("{base}/m/"))
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("page_url {page_url} is not {base}/m/<token>/"));
    assert_eq!(token.len(), 32, "{page_url}");
    assert_eq!(feed_url, format!("{page_url}calendar.ics"));
    assert_eq!(
        webcal_url,
        format!("webcal://{}", &feed_url["http://".len()..])
    );

    let (status, body) = http_get(&feed_url).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("BEGIN:VCALENDAR\r\n"), "{body}");
    assert!(body.contains("(members)"), "{body}");
    assert_eq!(status_of(&page_url), 200);

    // The text form gives the same three addresses.
    let text = ok(&["feed", "link", "Sam (Kirkstall)", "--config", config]);
    assert!(text.contains("webcal://"), "{text}");
    assert!(text.contains(&format!("{base}/m/")), "{text}");
    // A label is unique among live links.
    let err = fails(&["feed", "link", "Jo (Leeds)", "--config", config]);
    assert!(err.contains("already"), "{err}");

    let list = json(&["feed", "list", "--json", "--config", config]);
    let jo = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|l| l["label"] == "Jo (Leeds)")
        .unwrap_or_else(|| panic!("Jo missing from {list}"));
    assert_eq!(jo["id"], id.as_str());
    assert!(jo["revoked"].is_null(), "{jo}");
    assert!(jo.get("feed_url").is_none(), "no addresses once made: {jo}");
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    let revoked = ok(&["feed", "revoke", "Jo (Leeds)", "--config", config]);
    assert!(revoked.contains(&id), "{revoked}");
    assert_eq!(status_of(&feed_url), 404);
    assert_eq!(status_of(&page_url), 404);
    let list = json(&["feed", "list", "--json", "--config", config]);
    let states: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["label"].as_str().unwrap().to_owned(),
                !l["revoked"].is_null(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("Jo (Leeds)".to_owned(), true),
            ("Sam (Kirkstall)".to_owned(), false)
        ]
    );
    let table = ok(&["feed", "list", "--config", config]);
    assert!(table.contains("revoked"), "{table}");
    assert!(table.contains("live"), "{table}");

    // Again, by id or label: one line, exit 1.
    let err = fails(&["feed", "revoke", "Jo (Leeds)", "--config", config]);
    assert!(err.contains("already revoked"), "{err}");
    let err = fails(&["feed", "revoke", &id[..6], "--json", "--config", config]);
    assert!(err.contains("already revoked"), "{err}");
    let err = fails(&["feed", "revoke", "Nobody", "--config", config]);
    assert!(err.contains("not found"), "{err}");
    // The label is free again once revoked.
    let again = json(&["feed", "link", "Jo (Leeds)", "--json", "--config", config]);
    assert_ne!(again["id"], id.as_str());
    assert_eq!(status_of(again["feed_url"].as_str().unwrap()), 200);
    assert_eq!(status_of(&feed_url), 404);
    node.stop("-TERM");
}

#[test]
fn feed_link_on_a_node_without_a_calendar_says_so() {
    let alliance = Alliance::new();
    let (client, node_config, base) = alliance.node("plain", false);
    assert!(base.is_none());
    let (node, address) = start_node(&node_config);
    write_client(&client, &address);
    let config = path(&client);
    let err = fails(&["feed", "link", "Jo (Leeds)", "--config", config]);
    assert!(err.contains("serves no calendar"), "{err}");
    assert!(err.contains("[http]"), "{err}");
    for args in [
        &["feed", "list", "--json", "--config", config][..],
        &["feed", "revoke", "Jo (Leeds)", "--config", config],
    ] {
        let err = fails(args);
        assert!(err.contains("serves no calendar"), "{args:?}: {err}");
    }
    node.stop("-TERM");
}

#[test]
fn http_limits_out_of_range_are_refused_in_one_line() {
    let alliance = Alliance::new();
    let (_, node_config, _) = alliance.node("limits", true);
    let toml = std::fs::read_to_string(&node_config).unwrap();
    for (line, message) in [
        (
            "max_requests = 0",
            "[http] max_requests must be between 1 and 100000",
        ),
        (
            "request_timeout_secs = 0",
            "[http] request_timeout_secs must be between 1 and 3600",
        ),
        (
            "header_timeout_secs = 86400",
            "[http] header_timeout_secs must be between 1 and 3600",
        ),
    ] {
        // [http] is the config's last section.
        std::fs::write(&node_config, format!("{toml}{line}\n")).unwrap();
        let err = fails(&["node", "--config", path(&node_config)]);
        assert!(err.contains(message), "{line}: {err}");
    }
}
