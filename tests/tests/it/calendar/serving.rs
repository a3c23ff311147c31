//! Issue 8, the calendar's HTTP half: all-day events, the site's 404 for paths that
//! are not UTF-8, gzipped pages, a feed cache that made-up selections cannot flush,
//! a connection that sends half a request, and Last-Modified moving when an older
//! entry arrives late after a partition.

use std::io::{Read, Write};
use std::time::Instant;

use super::*;

/// The `feed_cache` counters of a node's `/healthz`.
async fn cache_stats(base: &str) -> Value {
    let health: Value = serde_json::from_slice(&get(&format!("{base}/healthz")).await.body)
        .expect("healthz is JSON");
    health["feed_cache"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_day_events_are_dates_in_feeds_and_all_day_on_pages() {
    let mut c = calendar_node(1, 0).await;
    let base = c.base.clone();
    let mut fair = event_at("fair", "Summer fair", "2027-07-03", "2027-07-04");
    fair.all_day = true;
    publish_event(&mut c, 0, fair).await;

    let feed = unfold(
        &expect_status(&format!("{base}/calendar.ics"), StatusCode::OK)
            .await
            .text(),
    );
    assert!(
        feed.contains("\r\nDTSTART;VALUE=DATE:20270703\r\n"),
        "{feed}"
    );
    // DTEND is exclusive (RFC 5545 §3.6.1): the day after the last.
    assert!(feed.contains("\r\nDTEND;VALUE=DATE:20270705\r\n"), "{feed}");
    let page = expect_status(&format!("{base}/"), StatusCode::OK)
        .await
        .text();
    assert!(page.contains(">all day</span>"), "{page}");
    assert!(!page.contains("00:00"), "{page}");

    // The API gives the dates back as written.
    let events = c
        .client
        .list_events(pb::ListEventsRequest::default())
        .await
        .expect("events listed")
        .into_inner()
        .events;
    let e = events[0].event.clone().expect("an event");
    assert!(e.all_day);
    assert_eq!(
        (e.start.as_str(), e.end.as_str()),
        ("2027-07-03", "2027-07-04")
    );

    // Times where dates are due, or a last day before the first: refused, nothing stored.
    let who = c.alliance.member(0).clone();
    for (start, end, message) in [
        (
            "2027-07-03T10:00",
            "",
            "start \"2027-07-03T10:00\" is not a date of the form YYYY-MM-DD",
        ),
        (
            "2027-07-04",
            "2027-07-03",
            "all-day event ends (2027-07-03) before it starts (2027-07-04)",
        ),
    ] {
        let mut bad = event_at("bad", "Bad", start, end);
        bad.all_day = true;
        let status = publish(&mut c.client, &who, Body::Event(bad))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(message), "{}", status.message());
    }
    let after = c
        .client
        .list_events(pb::ListEventsRequest::default())
        .await
        .expect("events listed")
        .into_inner()
        .events;
    assert_eq!(after.len(), 1);
    c.node.stop().await.unwrap();
}

/// Regression (issue 8): a path whose escapes are not UTF-8 got axum's plain-text 400
/// ("Invalid URL") instead of the site's 404 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_with_invalid_utf8_get_the_sites_404_page() {
    let mut c = calendar_node(1, 0).await;
    let base = c.base.clone();
    let link = feed_link(&mut c.client, "Jo").await;
    for path in [
        "/org/%FF/calendar.ics".to_owned(),
        "/area/%FF/calendar.ics".to_owned(),
        "/events/%C3%28/x".to_owned(),
        "/events/ab/%FF".to_owned(),
        "/m/%FF/".to_owned(),
        format!("/m/{}/org/%FF/calendar.ics", link.token),
        "/%FF".to_owned(),
    ] {
        let got = expect_status(&format!("{base}{path}"), StatusCode::NOT_FOUND).await;
        assert_eq!(
            got.header(header::CONTENT_TYPE),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let page = got.text();
        assert!(
            page.contains("There is nothing at this address."),
            "{path}: {page}"
        );
        assert!(page.starts_with("<!DOCTYPE html>"), "{path}: {page}");
    }
    c.node.stop().await.unwrap();
}

/// Regression (issue 8): pages were sent uncompressed whatever the request accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_gzipped_when_asked() {
    let mut c = calendar_node(1, 0).await;
    let base = c.base.clone();
    publish_event(
        &mut c,
        0,
        event_at("rally", "Rally", "2027-03-10T19:00", "2027-03-10T21:00"),
    )
    .await;
    let plain = expect_status(&format!("{base}/"), StatusCode::OK).await;
    assert_eq!(plain.header(header::CONTENT_ENCODING), None);
    assert_eq!(plain.header(header::VARY), Some("accept-encoding"));
    for path in ["/", "/no-such-page"] {
        let zipped = get_with(
            &format!("{base}{path}"),
            &[(header::ACCEPT_ENCODING, "gzip, deflate")],
        )
        .await;
        assert_eq!(
            zipped.header(header::CONTENT_ENCODING),
            Some("gzip"),
            "{path}"
        );
        assert_eq!(
            zipped.header(header::VARY),
            Some("accept-encoding"),
            "{path}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&zipped.body[..])
            .read_to_string(&mut text)
            .expect("a gzip body");
        if path == "/" {
            assert_eq!(text, plain.text());
            assert!(zipped.body.len() * 2 < text.len(), "gzip shrinks a page");
        } else {
            assert_eq!(zipped.status, StatusCode::NOT_FOUND);
            assert!(text.contains("There is nothing at this address."));
        }
    }
    c.node.stop().await.unwrap();
}

/// Regression (issue 8): every selection entered the feed cache, which was cleared
/// past 4,096 entries, so anonymous requests for made-up GSS codes flushed every
/// member's cached feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_areas_do_not_flush_members_cached_feeds() {
    let mut c = calendar_node(1, 0).await;
    let base = c.base.clone();
    let mut canvass = event_at("canvass", "Canvass", "2027-03-10T10:00", "2027-03-10T12:00");
    canvass.area = "E05011399".into();
    publish_event(&mut c, 0, canvass).await;
    let link = feed_link(&mut c.client, "Jo").await;
    expect_status(&link.feed_url, StatusCode::OK).await;
    // An area an event names is a selection that exists: cached.
    expect_status(
        &format!("{base}/area/E05011399/calendar.ics"),
        StatusCode::OK,
    )
    .await;
    let before = cache_stats(&base).await;
    assert_eq!(before["entries"], 2, "{before}");

    let http = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..625u32 {
                let code = format!("E{:08}", 90_000_000 + t * 1000 + i);
                let url = format!("{base}/area/{code}/calendar.ics");
                let response = http.get(&url).send().await.expect("GET");
                assert_eq!(response.status(), StatusCode::OK, "{url}");
                response.bytes().await.expect("body");
            }
        }));
    }
    for task in tasks {
        task.await.expect("requests");
    }
    let after = cache_stats(&base).await;
    assert_eq!(
        after["entries"], 2,
        "made-up areas entered the cache: {after}"
    );
    // The member's feed is still served from the cache: one more hit, no miss.
    expect_status(&link.feed_url, StatusCode::OK).await;
    let last = cache_stats(&base).await;
    assert_eq!(last["hits"], after["hits"].as_u64().unwrap() + 1, "{last}");
    assert_eq!(last["misses"], after["misses"], "{last}");

    // A revoked link's feeds leave the cache.
    c.client
        .revoke_feed_link(pb::RevokeFeedLinkRequest {
            link: link.id.clone(),
        })
        .await
        .expect("revoked");
    expect_status(&link.feed_url, StatusCode::NOT_FOUND).await;
    let revoked = cache_stats(&base).await;
    assert_eq!(revoked["entries"], 1, "{revoked}");
    c.node.stop().await.unwrap();
}

/// Regression (issue 8): a client that sent half a request held its connection (and
/// a task) for ever; now it has `header_timeout_secs` to finish its headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_cut_off_after_the_header_timeout() {
    let mut alliance = TestAlliance::new(1, 0);
    let everyone: Vec<_> = alliance.everyone().into_iter().cloned().collect();
    let refs: Vec<_> = everyone.iter().collect();
    let config = alliance.node_config_with_calendar(&refs, &[]);
    // [http] is the config's last section.
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("header_timeout_secs = 1\nrequest_timeout_secs = 5\nmax_requests = 8\n");
    std::fs::write(&config, toml).unwrap();
    let mut node = TestNode::start(&config).await.expect("node starts");
    let base = node.http.clone().expect("a calendar");
    let addr = base.trim_start_matches("http://").to_owned();

    let began = Instant::now();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /calendar.ics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection (perhaps after a 408); a read timeout here
    // (10 s) would mean it is still held.
    let read = tokio::task::spawn_blocking(move || stream.read_to_end(&mut answer).map(|_| answer))
        .await
        .unwrap();
    let answer = read.expect("the server closed the connection before the read timeout");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "held for {took:?}");
    // The server still answers whole requests.
    expect_status(&format!("{base}/calendar.ics"), StatusCode::OK).await;
    node.stop().await.unwrap();
}

/// Regression (issue 8): an older entry that arrived late (after a partition healed)
/// changed a feed's bytes but not its Last-Modified, so a client sending only
/// If-Modified-Since got 304 for a feed it had not seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_entry_moves_last_modified() {
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::FullMesh).proxied())
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    fed.nodes[0].config.http = Some(HttpConfig {
        listen: ([127, 0, 0, 1], port).into(),
        public_url: format!("http://127.0.0.1:{port}"),
        refresh: Duration::from_secs(3600),
        limits: Default::default(),
    });
    fed.start_all().await.unwrap();
    let feed_url = format!("http://127.0.0.1:{port}/calendar.ics");
    fed.isolate_and_wait(1, Duration::from_secs(30))
        .await
        .unwrap();

    // Node 1, cut off, publishes first; node 0 a second later (entry timestamps and
    // HTTP dates are whole seconds).
    let mut client1 = fed.client(1).unwrap();
    let home1 = fed.node(1).home.clone();
    publish(
        &mut client1,
        &home1,
        Body::Event(event_at(
            "late",
            "Late",
            "2027-03-10T19:00",
            "2027-03-10T21:00",
        )),
    )
    .await
    .unwrap();
    let published = chrono::Utc::now().timestamp();
    let deadline = Instant::now() + Duration::from_secs(5);
    while chrono::Utc::now().timestamp() <= published {
        assert!(Instant::now() < deadline, "the clock did not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client0 = fed.client(0).unwrap();
    let home0 = fed.node(0).home.clone();
    publish(
        &mut client0,
        &home0,
        Body::Event(event_at(
            "early",
            "Early",
            "2027-03-11T19:00",
            "2027-03-11T21:00",
        )),
    )
    .await
    .unwrap();

    let seen = expect_status(&feed_url, StatusCode::OK).await;
    assert_eq!(uid_set(&seen.text()), ["early".to_owned()].into());
    let since = seen
        .header(header::LAST_MODIFIED)
        .expect("a date")
        .to_owned();
    let conditional = get_with(&feed_url, &[(header::IF_MODIFIED_SINCE, &since)]).await;
    assert_eq!(conditional.status, StatusCode::NOT_MODIFIED);

    // The partition heals; node 1's older entry reaches node 0.
    fed.heal_all();
    fed.converge_to(2, Duration::from_secs(30)).await.unwrap();
    let got = get_with(&feed_url, &[(header::IF_MODIFIED_SINCE, &since)]).await;
    assert_eq!(
        got.status,
        StatusCode::OK,
        "a client with only If-Modified-Since must get the changed feed"
    );
    assert_eq!(
        uid_set(&got.text()),
        ["early".to_owned(), "late".to_owned()].into()
    );
    let moved = got
        .header(header::LAST_MODIFIED)
        .expect("a date")
        .to_owned();
    let parse = |d: &str| httpdate::parse_http_date(d).expect("an HTTP date");
    assert!(parse(&moved) >= parse(&since));
    // Never in the future, and it settles: within a few seconds the date a client
    // holds answers 304.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get(&feed_url).await;
        let date = got
            .header(header::LAST_MODIFIED)
            .expect("a date")
            .to_owned();
        assert!(
            parse(&date) <= std::time::SystemTime::now(),
            "{date} is in the future"
        );
        let again = get_with(&feed_url, &[(header::IF_MODIFIED_SINCE, &date)]).await;
        if again.status == StatusCode::NOT_MODIFIED {
            assert!(
                parse(&date) > parse(&since),
                "{date} did not move past {since}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never settled on a date");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fed.stop_all().await.unwrap();
}
