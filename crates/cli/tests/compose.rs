//! The container image and the compose alliance (deploy/Dockerfile, deploy/image.sh,
//! deploy/compose.yaml), run for real when a Docker daemon answers; otherwise the test
//! says plainly that it was skipped. It builds the image from this build's `accord`
//! binary, writes the files with `accord demo --compose`, starts four containers,
//! publishes through the CLI against them, `docker kill`s one, cuts another off the
//! network and reconnects it, and checks that every node then holds every
//! acknowledged entry under one digest; `down` and `up` again keep the data.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/docker.rs"]
mod docker;
use docker::{daemon_answers, repo_root, run, text};

const ACCORD: &str = env!("CARGO_BIN_EXE_accord");
const SLUGS: [&str; 4] = [
    "breakthrough-party",
    "northern-green-left",
    "radical-socialist-alliance",
    "pal-secretariat",
];

/// The compose command this machine has: the plugin or the standalone tool.
fn compose_command() -> Option<Vec<&'static str>> {
    let works = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec!["docker", "compose"], vec!["docker-compose"]]
        .into_iter()
        .find(|c| works(c))
}

/// One compose project of the test: torn down (with its volumes) and its image
/// removed on drop.
struct Alliance {
    compose: Vec<&'static str>,
    project: String,
    image: String,
    dir: tempfile::TempDir,
}

impl Alliance {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("--env-file")
            .arg(self.dir.path().join("compose/.env"))
            .arg("-f")
            .arg(repo_root().join("deploy/compose.yaml"))
            .args(["-p", &self.project])
            .args(args)
            .env("ACCORD_IMAGE", &self.image);
        cmd
    }

    fn container(&self, slug: &str) -> String {
        text(&run(&mut self.compose(&["ps", "-q", slug])))
    }

    fn client(&self, slug: &str) -> PathBuf {
        self.dir
            .path()
            .join("compose")
            .join(slug)
            .join("client.toml")
    }

    /// `accord status --json` of one node, if it answers.
    fn status(&self, slug: &str) -> Option<serde_json::Value> {
        let out = Command::new(ACCORD)
            .args(["status", "--json", "--config"])
            .arg(self.client(slug))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Publishes a statement through the CLI against `slug`'s container: its id.
    fn publish(&self, slug: &str, title: &str) -> String {
        let out = run(Command::new(ACCORD)
            .args(["statement", "publish", "--json", "--config"])
            .arg(self.client(slug))
            .args(["--title", title, "--text", "published through a container"]));
        let ack: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ack["id"].as_str().expect("an id").to_owned()
    }

    /// Waits (at most `limit`) until every node answers with `entries` entries, one
    /// entries digest, and every peer connected: that digest.
    fn converged(&self, entries: u64, limit: Duration) -> String {
        let started = Instant::now();
        let mut last = Vec::new();
        while started.elapsed() < limit {
            last = SLUGS.iter().map(|s| self.status(s)).collect();
            let agreed = last.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    s["entries"] == entries
                        && s["entries_digest"] == last[0].as_ref().unwrap()["entries_digest"]
                })
            });
            if agreed {
                return last[0].as_ref().unwrap()["entries_digest"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let seen: Vec<String> = last
            .iter()
            .map(|s| match s {
                Some(s) => format!("{} {}", s["entries"], s["entries_digest"]),
                None => "no answer".to_owned(),
            })
            .collect();
        panic!("the nodes did not converge on {entries} entries within {limit:?}: {seen:?}");
    }
}

impl Drop for Alliance {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "5"]).output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn a_compose_alliance_survives_a_killed_and_a_cut_off_container_and_keeps_its_data() {
    if !daemon_answers("the compose alliance was not tested") {
        return;
    }
    let Some(compose) = compose_command() else {
        eprintln!("SKIPPED: neither `docker compose` nor `docker-compose` works here");
        return;
    };
    let id = std::process::id();
    let alliance = Alliance {
        compose,
        project: format!("accordtest{id}"),
        image: format!("accord-test:{id}"),
        dir: tempfile::tempdir().unwrap(),
    };

    // The image: small, non-root, with a healthcheck and labels.
    let built = run(Command::new(repo_root().join("deploy/image.sh"))
        .arg(ACCORD)
        .arg(&alliance.image));
    assert_eq!(text(&built).lines().last(), Some(alliance.image.as_str()));
    let inspect = text(&run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Size}} {{.Config.User}} {{json .Config.Healthcheck.Test}} {{index .Config.Labels \"org.opencontainers.image.title\"}}",
        &alliance.image,
    ])));
    let fields: Vec<&str> = inspect.splitn(4, ' ').collect();
    let size: u64 = fields[0].parse().unwrap();
    assert!(size < 60_000_000, "image of {size} bytes");
    assert_eq!(fields[1], "10001:10001");
    assert!(fields[2].contains("healthcheck"), "{inspect}");
    assert_eq!(fields[3], "accord");
    let version = run(Command::new("docker").args(["run", "--rm", &alliance.image, "--version"]));
    assert!(text(&version).starts_with("accord "), "{}", text(&version));

    run(Command::new(ACCORD)
        .args(["demo", "--compose", "--dir"])
        .arg(alliance.dir.path()));
    walkthrough_docker_run(&alliance, id);
    run(&mut alliance.compose(&["up", "-d"]));
    alliance.converged(0, Duration::from_secs(60));
    // Docker's own HEALTHCHECK (`accord healthcheck` inside the container) passes.
    let first = alliance.container(SLUGS[0]);
    let started = Instant::now();
    let mut health = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        health = text(&run(Command::new("docker").args([
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &first,
        ])));
        if health == "healthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(health, "healthy");

    let mut acked = Vec::new();
    for (i, slug) in SLUGS.iter().enumerate() {
        acked.push(alliance.publish(slug, &format!("first {i}")));
    }
    alliance.converged(acked.len() as u64, Duration::from_secs(30));

    // One container killed, another cut off from the alliance's network.
    let killed = alliance.container(SLUGS[2]);
    run(Command::new("docker").args(["kill", &killed]));
    let cut = alliance.container(SLUGS[1]);
    let network = format!("{}_alliance", alliance.project);
    run(Command::new("docker").args(["network", "disconnect", &network, &cut]));
    for i in 0..3 {
        acked.push(alliance.publish(SLUGS[0], &format!("while apart {i}")));
        acked.push(alliance.publish(SLUGS[3], &format!("secretariat while apart {i}")));
    }
    // Restart policy or not, the killed node runs again; the cut-off one rejoins.
    let _ = Command::new("docker").args(["start", &killed]).output();
    run(Command::new("docker").args(["network", "connect", &network, &cut]));
    let digest = alliance.converged(acked.len() as u64, Duration::from_secs(60));

    // Every acknowledged id is held by every node.
    for slug in SLUGS {
        let out = run(Command::new(ACCORD)
            .args(["statements", "--json", "--config"])
            .arg(alliance.client(slug)));
        let listed = String::from_utf8_lossy(&out.stdout);
        for id in &acked {
            assert!(listed.contains(id.as_str()), "{slug} lacks {id}");
        }
    }

    // down and up again: the volumes keep the ledgers.
    run(&mut alliance.compose(&["down", "--timeout", "10"]));
    run(&mut alliance.compose(&["up", "-d"]));
    let again = alliance.converged(acked.len() as u64, Duration::from_secs(60));
    assert_eq!(again, digest);
}

/// Removes a container and its volume on drop.
struct Single {
    name: String,
    volume: String,
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

/// Runs deploy/README.md's walkthrough line `docker run -d --name accord …` as
/// written, but for the names this test owns (container, volume, image, the host
/// port and the organisation's folder): one organisation's node alone, reached by
/// its `client.toml` on the host, then removed.
fn walkthrough_docker_run(alliance: &Alliance, id: u32) {
    let readme = std::fs::read_to_string(repo_root().join("deploy/README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("docker run -d --name accord "))
        .expect("deploy/README.md's walkthrough has its `docker run` line");
    let slug = SLUGS[0];
    let env = std::fs::read_to_string(alliance.dir.path().join("compose/.env")).unwrap();
    let port = env
        .lines()
        .find_map(|l| l.strip_prefix("ACCORD_PORT_1="))
        .expect("ACCORD_PORT_1 in .env")
        .trim()
        .to_owned();
    let single = Single {
        name: format!("accord-walkthrough-{id}"),
        volume: format!("accord-walkthrough-data-{id}"),
    };
    let folder = alliance.dir.path().join("compose").join(slug);
    let mut args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    for (from, to) in [
        ("accord".to_owned(), single.name.clone()),
        ("7400:7400".to_owned(), format!("127.0.0.1:{port}:7400")),
        (
            "accord-data:/var/lib/accord".to_owned(),
            format!("{}:/var/lib/accord", single.volume),
        ),
        (
            "/etc/accord/delta:/etc/accord:ro".to_owned(),
            format!("{}:/etc/accord:ro", folder.display()),
        ),
        ("accord:0.1.0".to_owned(), alliance.image.clone()),
    ] {
        let at = args
            .iter()
            .position(|a| *a == from)
            .unwrap_or_else(|| panic!("{from:?} is not in the walkthrough's line: {line}"));
        args[at] = to;
    }
    assert_eq!(&args[..2], ["docker", "run"]);
    run(Command::new("docker").args(&args[1..]));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = alliance.status(slug) {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the walkthrough's container never answered: {}",
            text(&run(Command::new("docker").args(["logs", &single.name])))
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(status["entries"], 0, "{status}");
    let user = text(&run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
        &single.name,
    ])));
    assert_eq!(user, "10001:10001 true");
    drop(single);
}
