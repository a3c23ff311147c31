//! The calendar benchmark: `cargo bench -p accord-cli --bench calendar` (needs `wrk`,
//! Debian's package of that name).
//!
//! One node with the calendar, in this process, holding N public events (default
//! 500, `ACCORD_BENCH_EVENTS`). wrk, a standard HTTP load tool, runs against it on
//! loopback for `ACCORD_BENCH_SECONDS` (default 5) each:
//! 1. the limit: a minimal axum handler (a constant 2-byte body) served by the same
//!    runtime, which is what this machine can do for any HTTP response at all;
//! 2. conditional requests for the full feed with a matching If-None-Match, which the
//!    node answers 304;
//! 3. full feeds (200, every event);
//! 4. full feeds to clients that accept gzip.
//!
//! Targets (issue 4): 304s ≥ 10,000/s and full feeds ≥ 2,000/s on a 2-core machine.
//! wrk shares the two cores with the node, so each rate is also given as a ratio to
//! the limit measured in the same run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use accord_core::pb;
use accord_core::pb::publish_request::Body;
use accord_tests::{TestAlliance, TestNode};

const TARGET_304: f64 = 10_000.0;
const TARGET_FULL: f64 = 2_000.0;

fn env_size(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a count"))
        })
        .unwrap_or(default)
}

/// One wrk run: requests per second, and the requests that were not 2xx/3xx or failed.
struct Load {
    rate: f64,
    bad: u64,
    bytes_per_request: f64,
}

fn wrk(url: &str, headers: &[&str], seconds: u64) -> Load {
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency"]);
    for h in headers {
        command.args(["-H", h]);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk runs (install Debian's wrk package)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    let number_after = |label: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.replace(',', "").parse().ok())
    };
    let rate = number_after("Requests/sec:").expect("wrk prints Requests/sec");
    let bad = number_after("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    let errors: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(1.0);
    let transfer = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split(',').nth(1))
        .map(|s| parse_size(s.trim().trim_end_matches(" read")))
        .unwrap_or(0.0);
    Load {
        rate,
        bad: bad + errors,
        bytes_per_request: transfer / requests.max(1.0),
    }
}

/// "1.23GB" → bytes.
fn parse_size(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().unwrap_or(0.0);
    n * match unit {
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    }
}

/// One request by hand: the status code and the headers, lowercased.
fn head(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = text.split("\r\n\r\n").next().unwrap_or("").to_lowercase();
    (status, headers)
}

fn header<'a>(headers: &'a str, name: &str) -> &'a str {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or("")
}

fn main() {
    let events = env_size("ACCORD_BENCH_EVENTS", 500);
    let seconds = env_size("ACCORD_BENCH_SECONDS", 5);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("this benchmark needs wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut alliance = TestAlliance::new(3, 0);
        let members: Vec<_> = (0..3).map(|i| alliance.member(i).clone()).collect();
        let config = alliance.node_config_with_calendar(&members.iter().collect::<Vec<_>>(), &[]);
        let node = TestNode::start(&config).await.expect("node starts");
        let base = node.http.clone().expect("calendar configured");
        let http_addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let mut client = node.client().await.unwrap();
        let started = std::time::Instant::now();
        for i in 0..events {
            let author = &members[(i % 3) as usize];
            let day = chrono::NaiveDate::from_ymd_opt(2027, 1, 4).unwrap()
                + chrono::Days::new(i / 4);
            let hour = 10 + (i % 4) * 2;
            let co: Vec<Vec<u8>> = if i % 5 == 0 {
                vec![members[((i + 1) % 3) as usize].public_id().to_vec()]
            } else {
                Vec::new()
            };
            accord_tests::publish(
                &mut client,
                author,
                Body::Event(pb::Event {
                    uid: format!("bench-event-{i}"),
                    title: format!("Canvassing session {i}, Headingley & Hyde Park"),
                    description: "Meet at the community centre; leaflets, maps and tea \
                                  provided. Bring a charged phone for the canvassing app.\n\
                                  Step-free access."
                        .into(),
                    start: format!("{day}T{hour:02}:00"),
                    end: format!("{day}T{:02}:30", hour + 1),
                    time_zone: "Europe/London".into(),
                    venue: "Headingley Community Centre, North Lane, Leeds LS6 3HU".into(),
                    area: if i % 2 == 0 { "E05011399".into() } else { String::new() },
                    organisers: co,
                    visibility: pb::Visibility::Public as i32,
                    cancelled: false,
                    all_day: false,
                }),
            )
            .await
            .expect("publish");
        }
        eprintln!(
            "published {events} events in {:.1}s",
            started.elapsed().as_secs_f64()
        );

        // The limit: the cheapest response this runtime can serve.
        let limit_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limit_addr = limit_listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
            axum::serve(limit_listener, app).await
        });

        let feed_path = "/calendar.ics";
        let (status, headers) = head(http_addr, feed_path, &[]);
        assert_eq!(status, 200, "{headers}");
        let etag = header(&headers, "etag").to_owned();
        let length: f64 = header(&headers, "content-length").parse().unwrap_or(0.0);
        let if_none_match = format!("If-None-Match: {etag}");
        let (status, _) = head(http_addr, feed_path, &[&if_none_match]);
        assert_eq!(status, 304, "a matching If-None-Match is answered 304");
        let (status, gz_headers) = head(http_addr, feed_path, &["Accept-Encoding: gzip"]);
        assert_eq!(status, 200);
        let gzip = header(&gz_headers, "content-encoding") == "gzip";

        let load = tokio::task::spawn_blocking(move || {
            let feed = format!("{base}{feed_path}");
            let limit = wrk(&format!("http://{limit_addr}/"), &[], seconds);
            let not_modified = wrk(&feed, &[&if_none_match], seconds);
            let full = wrk(&feed, &[], seconds);
            let full_gzip = wrk(&feed, &["Accept-Encoding: gzip"], seconds);
            (limit, not_modified, full, full_gzip)
        })
        .await
        .unwrap();
        let (limit, not_modified, full, full_gzip) = load;
        for (name, l) in [
            ("limit", &limit),
            ("304", &not_modified),
            ("full", &full),
            ("full gzip", &full_gzip),
        ] {
            assert_eq!(l.bad, 0, "{name}: {} bad responses", l.bad);
        }
        println!(
            "calendar benchmark: {events} events, feed {:.0} KB (gzip {}), wrk -t2 -c32 -d{seconds}s on loopback",
            length / 1024.0,
            if gzip { "served" } else { "not served" }
        );
        println!(
            "| measure | requests/s | ÷ limit (same run) | target | ÷ target |\n|---|---|---|---|---|"
        );
        println!(
            "| limit: minimal axum handler | {:.0} | 1.00 | | |",
            limit.rate
        );
        println!(
            "| 304 (If-None-Match) | {:.0} | {:.2} | {TARGET_304:.0} | {:.2} |",
            not_modified.rate,
            not_modified.rate / limit.rate,
            not_modified.rate / TARGET_304
        );
        println!(
            "| full feed, {events} events ({:.0} KB each) | {:.0} | {:.2} | {TARGET_FULL:.0} | {:.2} |",
            full.bytes_per_request / 1024.0,
            full.rate,
            full.rate / limit.rate,
            full.rate / TARGET_FULL
        );
        println!(
            "| full feed, gzip ({:.0} KB each) | {:.0} | {:.2} | {TARGET_FULL:.0} | {:.2} |",
            full_gzip.bytes_per_request / 1024.0,
            full_gzip.rate,
            full_gzip.rate / limit.rate,
            full_gzip.rate / TARGET_FULL
        );
        drop(node);
    });
}
