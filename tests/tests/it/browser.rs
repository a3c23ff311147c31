//! The calendar pages in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver) at phone width, reading what a member sees, following
//! links and submitting the filter form as a person would, without JavaScript of
//! the page's own (it has none). Screenshots go to `target/screenshots/`.
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver`
//! (`tests/setup` installs them); the test fails, rather than skips, without them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body;
use accord_tests::*;
use anyhow::{Context, anyhow, bail, ensure};
use chrono::{Days, NaiveDate, Utc};
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{LEEDS_HHP, home_to_all_with_calendar};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// A phone's viewport in CSS pixels (iPhone 12 to 15).
const PHONE: (u32, u32) = (390, 844);
/// The longest wait for one element, URL or page load.
const WAIT: Duration = Duration::from_secs(20);
/// The longest the whole browser session may take.
const SESSION: Duration = Duration::from_secs(180);
/// The tallest full-page screenshot taken.
const MAX_SHOT_HEIGHT: u32 = 6000;

/// One event as the pages identify it (`data-event-uid`).
struct Shown {
    uid: String,
    title: String,
}

/// What the test published, for the browser to look for.
struct Published {
    public: Shown,
    members_only: Shown,
    cancelled: Shown,
    joint: Shown,
    in_area: Shown,
    /// The day (Europe/London) `public` is on.
    public_day: NaiveDate,
    venue: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reads_the_calendar_on_a_phone() {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: run tests/setup, which installs Debian's {package}"
        );
    }
    let (a, node, mut c) = home_to_all_with_calendar(3, 0).await;
    let published = publish_calendar(&a, &mut c).await;
    let link = c
        .create_feed_link(pb::CreateFeedLinkRequest {
            label: "Jo Bloggs (Party 0)".into(),
        })
        .await
        .expect("create a member link")
        .into_inner();
    let base = node.http.clone().expect("the node serves the calendar");

    let started = std::time::Instant::now();
    let mut driver = Driver::start().expect("chromedriver starts");
    let outcome = tokio::time::timeout(SESSION, async {
        let browser = driver.connect().await?;
        let checked = read_as_member(&browser, &base, &link, &published).await;
        // Close the session (and so Chromium) whatever the checks found.
        let closed = browser.close().await.context("closing the browser");
        checked.and(closed)
    })
    .await
    .unwrap_or_else(|_| Err(anyhow!("the browser session took longer than {SESSION:?}")));
    let leftovers = driver.stop();
    outcome.unwrap_or_else(|e| panic!("{e:#}\nchromedriver's log:\n{}", driver.log_tail()));
    assert!(
        leftovers.is_empty(),
        "chromedriver or Chromium still running: {leftovers:?}"
    );
    println!("browser session: {:.1?}", started.elapsed());
}

/// Events on days from ten days ahead (so the test does not age), and a clash on a
/// 2027 ballot, published by Party 0..2.
async fn publish_calendar(a: &TestAlliance, c: &mut Client) -> Published {
    let today = Utc::now().date_naive();
    let day = |n: u64| today.checked_add_days(Days::new(n)).expect("a date");
    let (d1, d2, d3) = (day(10), day(11), day(20));
    let at = |d: NaiveDate, hm: &str| format!("{}T{hm}", d.format("%Y-%m-%d"));
    let shown = |i: usize, e: &pb::Event| Shown {
        uid: format!("{}.{}@accord", e.uid, a.member(i).public_id()),
        title: e.title.clone(),
    };
    let venue = "Leeds Civic Hall, Millennium Square".to_owned();

    let mut hustings = event("hustings", &at(d1, "19:00"), &at(d1, "21:00"), &venue);
    hustings.title = "Hustings: who speaks for Leeds?".into();
    hustings.description = "Candidates of every ally answer questions.\n\nStep-free access.".into();
    let mut strategy = event("strategy", &at(d1, "17:30"), &at(d1, "18:30"), "Back room");
    strategy.title = "Campaign strategy (allies only)".into();
    strategy.visibility = pb::Visibility::Alliance as i32;
    let mut canvass = event(
        "canvass",
        &at(d2, "10:00"),
        &at(d2, "12:00"),
        "Hyde Park Corner",
    );
    canvass.title = "Doorstep canvass".into();
    canvass.cancelled = true;
    let mut surgery = event(
        "surgery",
        &at(d2, "14:00"),
        &at(d2, "15:30"),
        "Kirkstall Library",
    );
    surgery.title = "Advice surgery".into();
    surgery.area = "E05011234".into();
    let mut rally = event(
        "rally",
        &at(d3, "18:00"),
        &at(d3, "20:00"),
        "Woodhouse Moor",
    );
    rally.title = "Joint rally for a fair vote".into();
    rally.organisers = vec![a.key(1), a.key(2)];

    let published = Published {
        public: shown(0, &hustings),
        members_only: shown(0, &strategy),
        cancelled: shown(1, &canvass),
        joint: shown(1, &rally),
        in_area: shown(2, &surgery),
        public_day: d1,
        venue,
    };
    for (who, e) in [
        (0, hustings),
        (0, strategy),
        (1, canvass),
        (1, rally),
        (2, surgery),
    ] {
        publish(c, a.member(who), Body::Event(e))
            .await
            .expect("publish an event");
    }
    for who in [0, 1] {
        publish(c, a.member(who), intention(LEEDS_HHP, S::Intends, ""))
            .await
            .expect("publish an intention");
    }
    published
}

/// Everything the browser checks, page by page.
async fn read_as_member(
    b: &Browser,
    base: &str,
    link: &pb::FeedLink,
    p: &Published,
) -> anyhow::Result<()> {
    let dpr = b
        .execute("return window.devicePixelRatio;", vec![])
        .await?
        .as_f64()
        .context("devicePixelRatio")?;

    // 1. The public page: public events only, no badge, fits a phone, nothing fetched.
    open(b, &format!("{base}/")).await?;
    for e in [&p.public, &p.cancelled, &p.joint, &p.in_area] {
        ensure!(
            count(b, &article(e)).await? == 1,
            "public page lacks {}",
            e.title
        );
    }
    ensure!(
        count(b, &article(&p.members_only)).await? == 0,
        "the public page shows the alliance-only event"
    );
    ensure!(
        count(b, ".members-badge").await? == 0,
        "the public page carries the members badge"
    );
    fits_phone(b, "public page").await?;
    fetched_nothing_elsewhere(b, base, "public page").await?;

    // 2. The member's page.
    let member_page = &link.page_url;
    ensure!(
        member_page.starts_with(&format!("{base}/m/")),
        "member page {member_page}"
    );
    open(b, member_page).await?;
    let badge = b.find(Locator::Css(".members-badge")).await?;
    ensure!(badge.is_displayed().await?, "members badge hidden");
    ensure!(
        badge.text().await? == "Members",
        "badge says {:?}",
        badge.text().await?
    );
    let secret = one(b, &article(&p.members_only)).await?;
    has_class(&secret, "members-only").await?;
    tag(&secret, ".tag-members", "Members only").await?;
    let cancelled = one(b, &article(&p.cancelled)).await?;
    has_class(&cancelled, "cancelled").await?;
    tag(&cancelled, ".tag-cancelled", "Cancelled").await?;
    let day = p.public_day.format("%Y-%m-%d").to_string();
    let in_day = format!("section[data-day=\"{day}\"] {}", article(&p.public));
    ensure!(
        count(b, &in_day).await? == 1,
        "{} is not under {day}",
        p.public.title
    );
    ensure!(
        count(
            b,
            &format!("section[data-day=\"{day}\"] {}", article(&p.members_only))
        )
        .await?
            == 1,
        "{} is not under {day}",
        p.members_only.title
    );
    let organisers = one(b, &format!("{} .organisers", article(&p.joint)))
        .await?
        .text()
        .await?;
    ensure!(
        organisers == format!("Organised by {} and {}", member_name(1), member_name(2)),
        "joint event: {organisers:?}"
    );
    let area = one(b, &article(&p.in_area)).await?.text().await?;
    ensure!(area.contains("E05011234"), "area event: {area:?}");
    fits_phone(b, "member page").await?;
    fetched_nothing_elsewhere(b, base, "member page").await?;
    screenshot(b, "member-page", dpr).await?;

    // 3. Filters, by the form alone: Party 2's events are its own and the joint one.
    b.find(Locator::Css("#filter-org"))
        .await?
        .select_by_value("party-2")
        .await?;
    b.find(Locator::Css("#filters button[type=submit]"))
        .await?
        .click()
        .await?;
    let url = wait_for_url(b, |u| u.contains("?org=party-2")).await?;
    ensure!(
        url.starts_with(member_page.as_str()),
        "the filter left the member's page: {url}"
    );
    loaded(b).await?;
    for e in [&p.joint, &p.in_area] {
        ensure!(
            count(b, &article(e)).await? == 1,
            "filtered page lacks {}",
            e.title
        );
    }
    for e in [&p.public, &p.members_only, &p.cancelled] {
        ensure!(
            count(b, &article(e)).await? == 0,
            "filtered page still shows {}",
            e.title
        );
    }
    ensure!(
        count(b, "#feed-selected").await? == 1,
        "no feed for the selection"
    );
    fits_phone(b, "filtered page").await?;

    // 4. An event's title leads to its page.
    open(b, member_page).await?;
    b.find(Locator::Css(&format!("{} h3 a", article(&p.public))))
        .await?
        .click()
        .await?;
    wait_for_url(b, |u| u.contains("/events/")).await?;
    let detail = b
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("article.event-detail"))
        .await?;
    let title = detail.find(Locator::Css("h1")).await?.text().await?;
    ensure!(title == p.public.title, "detail page title {title:?}");
    let text = detail.text().await?;
    ensure!(
        text.contains(&p.venue),
        "detail page lacks the venue: {text:?}"
    );
    ensure!(
        text.contains("Step-free access."),
        "detail page lacks the description: {text:?}"
    );
    fits_phone(b, "event page").await?;

    // 5. The clash board.
    open(b, &format!("{member_page}clashes")).await?;
    let clash = one(b, &format!("article[data-ballot=\"{LEEDS_HHP}\"]")).await?;
    let state = clash.attr("data-state").await?;
    ensure!(state.as_deref() == Some("open"), "clash state {state:?}");
    let close = clash
        .find(Locator::Css(".nominations-close time"))
        .await?
        .attr("datetime")
        .await?;
    // 19 working days before Thursday 6 May 2027: Thursday 8 April, 4pm BST.
    ensure!(
        close.as_deref() == Some("2027-04-08T16:00:00+01:00"),
        "close of nominations {close:?}"
    );
    let shown = clash.text().await?;
    ensure!(
        shown.contains("16:00, Thursday 8 April 2027")
            && shown.contains(&member_name(0))
            && shown.contains(&member_name(1)),
        "clash board: {shown:?}"
    );
    fits_phone(b, "clash board").await?;
    fetched_nothing_elsewhere(b, base, "clash board").await?;
    screenshot(b, "clash-board", dpr).await?;
    Ok(())
}

/// The selector of an event's article in a list.
fn article(e: &Shown) -> String {
    format!("article.event[data-event-uid=\"{}\"]", e.uid)
}

/// Goes to `url` and waits for its `<main>`.
async fn open(b: &Browser, url: &str) -> anyhow::Result<()> {
    b.goto(url)
        .await
        .with_context(|| format!("loading {url}"))?;
    loaded(b).await.with_context(|| format!("loading {url}"))
}

async fn loaded(b: &Browser) -> anyhow::Result<()> {
    b.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("main#main"))
        .await?;
    Ok(())
}

/// Waits until the address satisfies `ok`; returns it.
async fn wait_for_url(b: &Browser, ok: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let url = b.current_url().await?.to_string();
        if ok(&url) {
            return Ok(url);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("still at {url} after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(b: &Browser, css: &str) -> anyhow::Result<usize> {
    Ok(b.find_all(Locator::Css(css)).await?.len())
}

/// The one element matching `css`.
async fn one(b: &Browser, css: &str) -> anyhow::Result<Element> {
    let mut all = b.find_all(Locator::Css(css)).await?;
    ensure!(all.len() == 1, "{} elements match {css}", all.len());
    Ok(all.remove(0))
}

async fn has_class(e: &Element, class: &str) -> anyhow::Result<()> {
    let classes = e.attr("class").await?.unwrap_or_default();
    ensure!(
        classes.split_whitespace().any(|c| c == class),
        "class {classes:?} lacks {class}"
    );
    Ok(())
}

/// `e` shows a tag `css` reading `text`.
async fn tag(e: &Element, css: &str, text: &str) -> anyhow::Result<()> {
    let tag = e.find(Locator::Css(css)).await?;
    ensure!(tag.is_displayed().await?, "{css} hidden");
    let shown = tag.text().await?;
    ensure!(shown == text, "{css} reads {shown:?}, not {text:?}");
    Ok(())
}

/// The page scrolls only down at phone width.
async fn fits_phone(b: &Browser, page: &str) -> anyhow::Result<()> {
    let sizes = b
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await?;
    let (scroll, inner) = (sizes[0].as_u64(), sizes[1].as_u64());
    ensure!(
        inner == Some(u64::from(PHONE.0)),
        "{page}: the viewport is {inner:?} wide, not {} (a page wider than the phone \
         makes a mobile browser zoom out)",
        PHONE.0
    );
    ensure!(
        scroll <= inner,
        "{page}: scrolls sideways ({scroll:?} > {inner:?})"
    );
    Ok(())
}

/// The page loaded nothing (or nothing from another origin than `base`).
async fn fetched_nothing_elsewhere(b: &Browser, base: &str, page: &str) -> anyhow::Result<()> {
    let names = b
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await?;
    let names: Vec<String> = serde_json::from_value(names)?;
    let elsewhere: Vec<&String> = names
        .iter()
        .filter(|n| !n.starts_with(&format!("{base}/")))
        .collect();
    ensure!(elsewhere.is_empty(), "{page} fetched {elsewhere:?}");
    Ok(())
}

/// Saves the whole page at phone width as `target/screenshots/<name>.png`: the
/// emulated phone is made as tall as the page (at most [`MAX_SHOT_HEIGHT`]) for
/// the shot, then put back.
async fn screenshot(b: &Browser, name: &str, dpr: f64) -> anyhow::Result<PathBuf> {
    let height = b
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await?
        .as_u64()
        .context("scrollHeight")? as u32;
    let height = height.clamp(PHONE.1, MAX_SHOT_HEIGHT);
    phone(b, height, dpr).await?;
    let png = b.screenshot().await;
    phone(b, PHONE.1, dpr).await?;
    let png = png?;
    let (width, shot_height) = png_size(&png).context("the screenshot is not a PNG")?;
    let want = (f64::from(PHONE.0) * dpr).round() as u32;
    ensure!(
        width == want,
        "{name}.png is {width} pixels wide, not {want}"
    );
    ensure!(
        shot_height >= (f64::from(PHONE.1) * dpr) as u32 && png.len() > 10_000,
        "{name}.png is {width}×{shot_height}, {} bytes",
        png.len()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .context("target folder")?
        .join("screenshots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png)?;
    println!("screenshot: {} ({width}×{shot_height})", path.display());
    Ok(path)
}

/// Emulates the phone [`PHONE`] wide and `height` tall.
async fn phone(b: &Browser, height: u32, dpr: f64) -> anyhow::Result<()> {
    b.issue_cmd(Cdp {
        cmd: "Emulation.setDeviceMetricsOverride",
        params: json!({
            "width": PHONE.0,
            "height": height,
            "deviceScaleFactor": dpr,
            "mobile": true,
        }),
    })
    .await?;
    Ok(())
}

/// A Chrome DevTools Protocol command, through chromedriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Width and height from a PNG's signature and IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    Some((be(16), be(20)))
}

/// chromedriver on a loopback port, in a process group of its own that Chromium
/// joins, with a fresh Chromium profile. Dropping it kills the group.
struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
    log: PathBuf,
    stopped: bool,
}

impl Driver {
    fn start() -> anyhow::Result<Self> {
        let profile = tempfile::Builder::new()
            .prefix("accord-chromium-")
            .tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = profile.path().join("chromedriver.log");
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {CHROMEDRIVER}"))?
        };
        Ok(Self {
            child,
            port,
            profile,
            log,
            stopped: false,
        })
    }

    /// Waits (bounded) until chromedriver is ready, then opens a Chromium session.
    async fn connect(&mut self) -> anyhow::Result<Browser> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chromedriver exited: {status}");
            }
            if self.ready().await {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "chromedriver not ready on port {} after {WAIT:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", self.profile.path().display()),
            format!("--window-size={},{}", PHONE.0, PHONE.1),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {
                "pageLoad": WAIT.as_millis() as u64,
                "script": WAIT.as_millis() as u64,
                "implicit": 0,
            },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                // Headless Chromium keeps windows at least 500 pixels wide: the
                // phone's viewport is emulated (as DevTools' device mode does).
                "mobileEmulation": {
                    "deviceMetrics": {
                        "width": PHONE.0,
                        "height": PHONE.1,
                        "pixelRatio": 1.0,
                        "mobile": true,
                        "touch": true,
                    },
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .context("opening a Chromium session")
    }

    /// chromedriver answers `GET /status` with `"ready": true`.
    async fn ready(&self) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream
                .write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await?;
            // chromedriver keeps the connection open: read until the answer says.
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let n = stream.read(&mut chunk).await?;
                answer.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&answer);
                if n == 0 || text.contains("\"ready\":") {
                    return Ok::<_, std::io::Error>(text.contains("\"ready\":true"));
                }
            }
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), attempt).await,
            Ok(Ok(true))
        )
    }

    /// Kills chromedriver's process group and waits (bounded) for it and every
    /// process using the profile to go; returns those still there.
    fn stop(&mut self) -> Vec<String> {
        self.kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut left = self.using_profile();
            if matches!(self.child.try_wait(), Ok(None)) {
                left.push(format!("chromedriver (pid {})", self.child.id()));
            }
            if left.is_empty() || std::time::Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if !self.stopped {
            self.stopped = true;
            kill_group(self.child.id());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Processes whose command line names this driver's profile folder: Chromium's
    /// and chromedriver's own (its log is there).
    fn using_profile(&self) -> Vec<String> {
        let profile = self.profile.path().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                cmdline
                    .contains(&profile)
                    .then(|| format!("pid {pid}: {}", cmdline.trim()))
            })
            .collect()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to the process group `pgid` (chromedriver's, which Chromium joins), by
/// the `kill` command, so the test needs no unsafe code.
fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
