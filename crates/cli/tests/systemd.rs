//! deploy/README.md's systemd commands, run for real: in a Docker container that boots
//! systemd as PID 1 (the test machines have none of their own), the lines of its
//! "systemd" section are run one by one as the README gives them (installing this
//! build's `accord` and deploy/accord-node.service, the `accord` user, the folders,
//! `systemctl enable --now`, `journalctl`), then `systemctl reload`, `status`,
//! `stop` and `start`, the backup timer's lines of "Backups", and the container is
//! rebooted. Runs when a Docker daemon answers, and says
//! plainly that it was skipped otherwise. The base image is Debian with systemd,
//! built once by deploy/systemd-image.sh (debootstrap, no registry) and kept.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "support/docker.rs"]
mod docker;
use docker::{daemon_answers, repo_root, run, text};

const ACCORD: &str = env!("CARGO_BIN_EXE_accord");
const BASE_IMAGE: &str = "accord-systemd-base:bookworm";
/// Where the test puts the release files (`accord`, `accord-node.service`) in the
/// container: the README's commands run from that folder, as an operator's would.
const RELEASE: &str = "/root/release";
/// The demo organisation whose folder of `accord demo --compose` is the node's config.
const ORG: &str = "breakthrough-party";
/// Bounds every wait on the container: a boot, a start, a reload, a stop.
const WAIT: Duration = Duration::from_secs(60);

/// The lines of the first code block (indented) in section `heading` of
/// deploy/README.md, in order.
fn readme_block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("deploy/README.md")).unwrap();
    readme_section(&readme, heading)
        .lines()
        .skip_while(|l| !l.starts_with("    "))
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The lines of the code block of section `heading` that holds `marker`.
fn readme_block_with(heading: &str, marker: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("deploy/README.md")).unwrap();
    let section = readme_section(&readme, heading);
    let lines: Vec<&str> = section.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("    ") && l.contains(marker))
        .unwrap_or_else(|| panic!("deploy/README.md {heading}: no code line with {marker:?}"));
    let start = lines[..at]
        .iter()
        .rposition(|l| !l.starts_with("    "))
        .map_or(0, |i| i + 1);
    lines[start..]
        .iter()
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Every systemd command deploy/README.md gives for the node and its backups (code
/// spans and code lines that start with `systemctl` or `journalctl` and name
/// `accord-node` or `accord-backup`), and the walkthrough's `useradd`, `install` and
/// `chown` lines, each as one line.
fn readme_systemd_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("deploy/README.md")).unwrap();
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut code: Vec<String> = readme
        .split('`')
        .skip(1)
        .step_by(2)
        .map(one_line)
        .chain(
            readme
                .lines()
                .filter(|l| l.starts_with("    "))
                .map(one_line),
        )
        .filter(|c| {
            (c.starts_with("systemctl ") || c.starts_with("journalctl "))
                && (c.contains("accord-node") || c.contains("accord-backup"))
        })
        .collect();
    let walkthrough = readme_section(&readme, "## From a fresh server to a node in the alliance");
    code.extend(walkthrough.lines().map(one_line).filter(|l| {
        ["useradd ", "install ", "chown "]
            .iter()
            .any(|p| l.starts_with(p))
    }));
    code
}

fn readme_section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("deploy/README.md has no {heading:?}"));
    let section = &readme[start + heading.len() + 2..];
    &section[..section.find("\n## ").unwrap_or(section.len())]
}

/// A container booting systemd from the base image; removed (with its anonymous
/// volumes) on drop, on every path.
struct Server {
    name: String,
}

impl Server {
    /// Starts the container and waits until systemd has finished booting.
    ///
    /// systemd as PID 1 needs the cgroup hierarchy (mounted from the host, in its
    /// namespace), CAP_SYS_ADMIN (mounts, and the namespaces of the unit's
    /// hardening), and a /run and /tmp of its own. Not `--privileged`: Docker then
    /// asks for every capability, which fails where the host withholds one (here
    /// CAP_SYS_RESOURCE: "unable to apply caps"). `docker stop` and `restart` send
    /// SIGRTMIN+3, systemd's shutdown signal (as PID 1 it ignores SIGTERM).
    fn boot(name: String) -> Self {
        run(Command::new("docker").args([
            "run",
            "-d",
            "--name",
            &name,
            "--cap-add",
            "SYS_ADMIN",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/tmp",
            "--stop-signal",
            "SIGRTMIN+3",
            BASE_IMAGE,
        ]));
        let server = Self { name };
        server.booted();
        server
    }

    /// Waits (bounded) until systemd answers and says its boot is over.
    fn booted(&self) {
        let started = Instant::now();
        let mut said = String::new();
        while started.elapsed() < WAIT {
            // Not from the release folder, which does not exist at the first boot.
            let out = Command::new("docker")
                .args(["exec", &self.name])
                .args(["timeout", "10", "systemctl", "is-system-running", "--wait"])
                .output()
                .expect("docker exec runs");
            said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // "degraded": booted, with a unit of the base system failed (none
            // of this test's).
            if matches!(said.trim(), "running" | "degraded") {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "systemd did not boot in container {} within {WAIT:?}: {said}\n{}",
            self.name,
            String::from_utf8_lossy(
                &Command::new("docker")
                    .args(["logs", &self.name])
                    .output()
                    .unwrap()
                    .stderr
            )
        );
    }

    /// `sh -c LINE` in the container as root, from the release folder.
    fn exec(&self, line: &str) -> Output {
        Command::new("docker")
            .args(["exec", "-w", RELEASE, &self.name, "sh", "-c", line])
            .output()
            .expect("docker exec runs")
    }

    /// `sh -c LINE`, which must succeed: its stdout.
    fn ok(&self, line: &str) -> String {
        let out = self.exec(line);
        assert!(
            out.status.success(),
            "`{line}` failed in the container: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        text(&out)
    }

    /// Appends `text` to the file at `path` in the container (made if missing).
    fn append(&self, path: &str, text: &str) {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c", "cat >> \"$0\"", path])
            .stdin(Stdio::piped())
            .spawn()
            .expect("docker exec runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "appending to {path}");
    }

    fn copy_in(&self, from: &Path, to: &str) {
        run(Command::new("docker")
            .arg("cp")
            .arg(from)
            .arg(format!("{}:{to}", self.name)));
    }

    /// The unit's journal, systemd's messages about it included.
    fn journal(&self) -> String {
        text(&self.exec("journalctl -u accord-node --no-pager -o cat"))
    }

    /// Waits (bounded) until the unit's journal holds `wanted`.
    fn journal_says(&self, wanted: &str) -> String {
        let started = Instant::now();
        loop {
            let journal = self.journal();
            if journal.contains(wanted) {
                return journal;
            }
            assert!(
                started.elapsed() < WAIT,
                "no {wanted:?} in the journal within {WAIT:?}:\n{journal}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn property(&self, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value accord-node"))
    }

    /// `accord status --json` inside the container, through the node's own API.
    fn status(&self) -> serde_json::Value {
        let out = self.ok("accord status --json --config /etc/accord/client.toml");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

#[test]
fn the_readme_systemd_commands_run_a_node_under_systemd_as_pid_1() {
    if !daemon_answers("deploy/README.md's systemd commands were not run") {
        return;
    }
    let lines = readme_block("## systemd");
    assert!(
        lines.iter().any(|l| l.contains("enable --now accord-node")),
        "{lines:?}"
    );
    let image_there = Command::new("docker")
        .args(["image", "inspect", BASE_IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o) == "0");
    if !image_there && !root {
        eprintln!(
            "SKIPPED: no image {BASE_IMAGE}, and building it (debootstrap) needs root: run \
             `sudo deploy/systemd-image.sh` once; deploy/README.md's systemd commands were not run"
        );
        return;
    }
    let started = Instant::now();
    let built = run(&mut Command::new(
        repo_root().join("deploy/systemd-image.sh"),
    ));
    assert_eq!(text(&built).lines().last(), Some(BASE_IMAGE));
    eprintln!("base image ready after {:?}", started.elapsed());

    // The node's config: one organisation's folder of `accord demo --compose`, whose
    // paths are those of a server (relative to /etc/accord, data under
    // /var/lib/accord), its client config pointed at the node from inside.
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(ACCORD)
        .args(["demo", "--compose", "--dir"])
        .arg(dir.path()));
    let folder = dir.path().join("compose").join(ORG);
    let client = std::fs::read_to_string(folder.join("client.toml")).unwrap();
    let client: String = client
        .lines()
        .map(|l| {
            if l.starts_with("node = ") {
                "node = \"https://127.0.0.1:7400\"\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(folder.join("client.toml"), client).unwrap();

    let server = Server::boot(format!("accord-systemd-test-{}", std::process::id()));
    // The release files, as an operator unpacks them, and the config as root wrote
    // it (the README's commands make it the `accord` user's).
    run(Command::new("docker").args(["exec", &server.name, "mkdir", "-p", RELEASE]));
    server.copy_in(Path::new(ACCORD), &format!("{RELEASE}/accord"));
    server.copy_in(
        &repo_root().join("deploy/accord-node.service"),
        &format!("{RELEASE}/accord-node.service"),
    );
    for unit in ["accord-backup.service", "accord-backup.timer"] {
        server.copy_in(
            &repo_root().join("deploy").join(unit),
            &format!("{RELEASE}/{unit}"),
        );
    }
    server.copy_in(&folder, "/etc/accord");
    server.ok("chown -R root:root /etc/accord");
    // systemd's own debug messages show what the node told it (READY=1, STOPPING=1).
    server.ok("systemd-analyze log-level debug");

    // deploy/README.md's "systemd" lines, exactly, in order. Every line run as the
    // README gives it goes into `ran`, to check the README against at the end.
    let mut ran = Vec::new();
    let mut followed = None;
    for line in &lines {
        ran.push(line.clone());
        if line.ends_with(" -f") {
            // Follows the journal for ever: for a few seconds here.
            followed = Some(server.exec(&format!("timeout 3 {line}")));
        } else {
            server.ok(line);
        }
    }
    // `enable --now` returned once the node said READY=1 (Type=notify), not when the
    // process started: it is active and answers at once, and systemd's journal has
    // the notification before the unit counted as started.
    assert_eq!(server.ok("systemctl is-active accord-node"), "active");
    assert_eq!(server.property("StatusText"), "serving on 0.0.0.0:7400");
    let status = server.status();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    let journal = server.journal();
    let ready = journal
        .find("(READY=1, STATUS=serving on 0.0.0.0:7400)")
        .unwrap_or_else(|| panic!("no READY=1 in the journal:\n{journal}"));
    let active = journal
        .find("Changed start -> running")
        .unwrap_or_else(|| panic!("the unit never ran:\n{journal}"));
    assert!(ready < active, "{journal}");
    // `journalctl -f` printed the unit's last lines and was still following when
    // `timeout` ended it (status 124).
    let followed = followed.expect("the README follows the journal");
    assert_eq!(followed.status.code(), Some(124), "{followed:?}");
    assert!(text(&followed).contains("accord"), "{followed:?}");

    // It runs as the `accord` user, and `enable` made it start at boot.
    let pid = server.property("MainPID");
    assert_eq!(server.ok(&format!("stat -c %U /proc/{pid}")), "accord");
    assert_eq!(server.ok("systemctl is-enabled accord-node"), "enabled");
    let line = "systemctl status accord-node";
    assert!(server.ok(line).contains("active (running)"));
    ran.push(line.to_owned());
    let line = "journalctl -u accord-node";
    assert!(server.ok(line).contains("listening on 0.0.0.0:7400"));
    ran.push(line.to_owned());

    // `systemctl reload accord-node` ("Changing peers and tokens without a restart"):
    // SIGHUP through the unit's ExecReload; the peers removed from node.toml are
    // dropped by the same process.
    server.ok(r"sed -i '/^\[\[peers\]\]$/,$d' /etc/accord/node.toml");
    let line = "systemctl reload accord-node";
    server.ok(line);
    ran.push(line.to_owned());
    let journal = server.journal_says("config reloaded: peers and operators applied");
    assert!(
        journal.contains("removed=northern-green-left,pal-secretariat,radical-socialist-alliance"),
        "{journal}"
    );
    assert_eq!(server.property("MainPID"), pid);
    assert_eq!(server.status()["peers"], serde_json::json!([]));

    // `systemctl stop accord-node`: SIGTERM, STOPPING=1, a clean exit well within
    // the unit's TimeoutStopSec (30 s), so systemd never has to SIGKILL it.
    let stopping = Instant::now();
    let line = "systemctl stop accord-node";
    server.ok(line);
    ran.push(line.to_owned());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(20), "stopping took {took:?}");
    assert_eq!(
        server.ok("systemctl is-active accord-node || true"),
        "inactive"
    );
    assert_eq!(server.property("Result"), "success");
    assert_eq!(server.property("ExecMainStatus"), "0");
    let journal = server.journal();
    assert!(
        journal.contains(&format!(
            "Got notification message from PID {pid} (STOPPING=1)"
        )),
        "{journal}"
    );
    assert!(!journal.contains("SIGKILL"), "{journal}");
    // `systemctl start` returns once the node serves again, and it writes its store
    // under the unit's read-only file system (ReadWritePaths=/var/lib/accord).
    let line = "systemctl start accord-node";
    server.ok(line);
    ran.push(line.to_owned());
    server.ok("accord statement publish --config /etc/accord/client.toml \
         --title 'Under systemd' --text 'published on a node systemd runs'");
    let published = server.status();
    assert_eq!(published["entries"], 1, "{published}");

    // Backups on a schedule ("Backups"): what the service's comments say to set up
    // (a client config with an operator token of its own, applied by a reload),
    // then the README's lines; one run of the service writes a backup that verifies.
    let token_sha256 = server.ok("accord token new --out /etc/accord/backup.token");
    let cert_sha256 = server.ok("accord tls show /etc/accord/tls/node.crt");
    server.append(
        "/etc/accord/backup-client.toml",
        &format!(
            "node = \"https://127.0.0.1:7400\"\ncert_sha256 = \"{cert_sha256}\"\n\
             token_file = \"backup.token\"\n"
        ),
    );
    server.append(
        "/etc/accord/node.toml",
        &format!(
            "\n[[operators]]\nname = \"backup\"\ntoken_sha256 = \"{token_sha256}\"\n\
             identities = [\"Breakthrough Party\"]\n"
        ),
    );
    server.ok("chown -R accord:accord /etc/accord && systemctl reload accord-node");
    server.journal_says("operators=2");
    let lines = readme_block_with("## Backups", "accord-backup.timer");
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        server.ok(line);
        ran.push(line.clone());
    }
    assert_eq!(
        server.ok("systemctl is-active accord-backup.timer"),
        "active"
    );
    server.ok("systemctl start accord-backup.service");
    let backups = server.ok("ls /var/backups/accord");
    let backup = backups
        .lines()
        .find(|f| f.starts_with("node-") && f.ends_with("Z.backup"))
        .unwrap_or_else(|| panic!("no backup in /var/backups/accord: {backups}"));
    let verified = server.ok(&format!(
        "stat -c %U /var/backups/accord/{backup} && accord backup verify --json /var/backups/accord/{backup}"
    ));
    assert!(verified.starts_with("accord\n"), "{verified}");
    assert!(
        verified.contains(published["entries_digest"].as_str().unwrap()),
        "{verified}"
    );

    // A reboot of the server: the enabled units start with it, the node on the same
    // store.
    run(Command::new("docker").args(["restart", "-t", "30", &server.name]));
    server.booted();
    assert_eq!(server.ok("systemctl is-active accord-node"), "active");
    assert_eq!(
        server.ok("systemctl is-active accord-backup.timer"),
        "active"
    );
    let rebooted = server.status();
    assert_eq!(rebooted["entries"], 1, "{rebooted}");
    assert_eq!(rebooted["entries_digest"], published["entries_digest"]);

    // Every systemd command deploy/README.md gives for the node is one run here.
    let documented = readme_systemd_commands();
    assert!(documented.len() >= 8, "{documented:?}");
    for command in &documented {
        assert!(
            ran.contains(command),
            "deploy/README.md: `{command}` is not a command this test ran: {ran:?}"
        );
    }
    eprintln!("systemd test done after {:?}", started.elapsed());
}
