//! The members' calendar over real HTTP on loopback: feeds with their validators
//! (ETag, Last-Modified, 304s), what the public and a member's link may see, member
//! links created, revoked and kept across a restart, per-organisation and per-area
//! feeds, and an independent RFC 5545 parser (Python's `icalendar`) reading a feed
//! full of awkward times and text.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body;
use accord_node::config::HttpConfig;
use accord_tests::*;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use tonic::Code;

use crate::{LEEDS_HHP, home_to_all_with_calendar};

mod serving;

/// A node home to every member and secretary of a new alliance, serving the calendar.
struct Calendar {
    alliance: TestAlliance,
    node: TestNode,
    client: Client,
    /// "http://127.0.0.1:PORT"
    base: String,
}

async fn calendar_node(members: usize, secretaries: usize) -> Calendar {
    let (alliance, node, client) = home_to_all_with_calendar(members, secretaries).await;
    let base = node.http.clone().expect("the node serves the calendar");
    Calendar {
        alliance,
        node,
        client,
        base,
    }
}

/// A response, read whole.
#[derive(Debug)]
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    #[track_caller]
    fn etag(&self) -> String {
        self.header(header::ETAG).expect("an ETag").to_owned()
    }
}

/// GET `url` with `headers`, on a fresh connection (nodes restart between requests),
/// without following redirects, within [`RPC_TIMEOUT`].
async fn get_with(url: &str, headers: &[(header::HeaderName, &str)]) -> Got {
    let http = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let mut request = http.get(url);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("body of {url}: {e}"))
        .to_vec();
    Got {
        status,
        headers,
        body,
    }
}

async fn get(url: &str) -> Got {
    get_with(url, &[]).await
}

/// GET `url` and expect `status`; returns the response.
async fn expect_status(url: &str, status: StatusCode) -> Got {
    let got = get(url).await;
    assert_eq!(
        got.status,
        status,
        "GET {url}: {}",
        String::from_utf8_lossy(&got.body)
    );
    got
}

/// Content lines unfolded (RFC 5545 §3.1).
fn unfold(feed: &str) -> String {
    feed.replace("\r\n ", "")
}

/// The author-given uids of a feed's events ("<uid>.<author hex>@accord"), in order.
fn uids(feed: &str) -> Vec<String> {
    unfold(feed)
        .split("\r\n")
        .filter_map(|line| line.strip_prefix("UID:"))
        .map(|uid| {
            let (uid, _author) = uid
                .strip_suffix("@accord")
                .and_then(|u| u.rsplit_once('.'))
                .unwrap_or_else(|| panic!("UID {uid:?} is not <uid>.<author>@accord"));
            uid.to_owned()
        })
        .collect()
}

fn uid_set(feed: &str) -> BTreeSet<String> {
    uids(feed).into_iter().collect()
}

/// An event in Europe/London (the default zone) with a title of its own.
fn event_at(uid: &str, title: &str, start: &str, end: &str) -> pb::Event {
    pb::Event {
        title: title.into(),
        ..event(uid, start, end, "Leeds Civic Hall")
    }
}

async fn publish_event(c: &mut Calendar, author: usize, event: pb::Event) {
    let who = c.alliance.member(author).clone();
    publish(&mut c.client, &who, Body::Event(event))
        .await
        .expect("event published");
}

async fn feed_link(client: &mut Client, label: &str) -> pb::FeedLink {
    client
        .create_feed_link(pb::CreateFeedLinkRequest {
            label: label.into(),
        })
        .await
        .expect("feed link created")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_answer_conditional_requests_until_the_state_changes() {
    let mut c = calendar_node(1, 0).await;
    publish_event(
        &mut c,
        0,
        event_at("rally", "Rally", "2027-03-10T19:00", "2027-03-10T21:00"),
    )
    .await;
    let url = format!("{}/calendar.ics", c.base);

    let first = expect_status(&url, StatusCode::OK).await;
    assert_eq!(
        first.header(header::CONTENT_TYPE),
        Some("text/calendar; charset=utf-8")
    );
    let etag = first.etag();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "a strong, quoted ETag: {etag}"
    );
    let last_modified = first
        .header(header::LAST_MODIFIED)
        .expect("Last-Modified")
        .to_owned();
    let modified = httpdate::parse_http_date(&last_modified).expect("an HTTP date");
    assert_eq!(uids(&first.text()), ["rally"]);

    // The same ETag back: 304, with the validators and no body.
    let same = get_with(&url, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(same.etag(), etag);
    assert_eq!(same.header(header::LAST_MODIFIED), Some(&*last_modified));
    assert!(same.body.is_empty(), "{:?}", same.text());
    let listed = format!("\"other\", {etag}");
    let in_list = get_with(&url, &[(header::IF_NONE_MATCH, &listed)]).await;
    assert_eq!(in_list.status, StatusCode::NOT_MODIFIED);
    let other = get_with(&url, &[(header::IF_NONE_MATCH, "\"other\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, first.body);

    // If-Modified-Since: the Last-Modified itself is not modified; an hour earlier is.
    let since = get_with(&url, &[(header::IF_MODIFIED_SINCE, &last_modified)]).await;
    assert_eq!(since.status, StatusCode::NOT_MODIFIED);
    assert!(since.body.is_empty());
    let earlier = httpdate::fmt_http_date(modified - Duration::from_secs(3600));
    let older = get_with(&url, &[(header::IF_MODIFIED_SINCE, &earlier)]).await;
    assert_eq!(older.status, StatusCode::OK);
    assert_eq!(older.body, first.body);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let both = get_with(
        &url,
        &[
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, &last_modified),
        ],
    )
    .await;
    assert_eq!(both.status, StatusCode::OK);

    // Gzipped on request: its own strong ETag, the same feed inside, 304 on its ETag.
    let gzip = [(header::ACCEPT_ENCODING, "gzip")];
    let zipped = get_with(&url, &gzip).await;
    assert_eq!(zipped.status, StatusCode::OK);
    assert_eq!(zipped.header(header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(zipped.header(header::VARY), Some("accept-encoding"));
    assert_eq!(first.header(header::VARY), Some("accept-encoding"));
    let zipped_etag = zipped.etag();
    assert!(
        zipped_etag.starts_with('"') && zipped_etag != etag,
        "{zipped_etag} vs {etag}"
    );
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&zipped.body[..]),
        &mut unzipped,
    )
    .expect("a gzip body");
    assert_eq!(unzipped, first.body);
    let zipped_same = get_with(
        &url,
        &[gzip[0].clone(), (header::IF_NONE_MATCH, &zipped_etag)],
    )
    .await;
    assert_eq!(zipped_same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(zipped_same.etag(), zipped_etag);
    // The plain representation's ETag does not validate the gzipped one.
    let crossed = get_with(&url, &[gzip[0].clone(), (header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(crossed.status, StatusCode::OK);

    // Unchanged state: byte-identical bodies.
    let again = expect_status(&url, StatusCode::OK).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.etag(), etag);

    // The event moves: the old ETag no longer matches.
    publish_event(
        &mut c,
        0,
        event_at("rally", "Rally", "2027-03-11T19:00", "2027-03-11T21:00"),
    )
    .await;
    let changed = get_with(&url, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.etag(), etag);
    let text = unfold(&changed.text());
    assert!(text.contains("\r\nSEQUENCE:1\r\n"), "{text}");
    assert!(
        text.contains("\r\nDTSTART;TZID=Europe/London:20270311T190000\r\n"),
        "{text}"
    );
    let new_modified = httpdate::parse_http_date(
        changed
            .header(header::LAST_MODIFIED)
            .expect("Last-Modified"),
    )
    .unwrap();
    assert!(new_modified >= modified);
    let now_same = get_with(&url, &[(header::IF_NONE_MATCH, &changed.etag())]).await;
    assert_eq!(now_same.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_a_federation_serve_byte_identical_feeds() {
    let mut fed = TestFederation::build(FederationSpec::new(2, Topology::FullMesh))
        .await
        .unwrap();
    // Both behind one public address, as behind a load balancer: same state, same
    // links, so the same bytes.
    for node in &mut fed.nodes {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        node.config.http = Some(HttpConfig {
            listen: ([127, 0, 0, 1], port).into(),
            public_url: "https://calendar.example.org".into(),
            refresh: Duration::from_secs(3600),
            limits: Default::default(),
        });
    }
    fed.start_all().await.unwrap();
    for i in 0..2 {
        let mut client = fed.client(i).unwrap();
        let home = fed.node(i).home.clone();
        publish(
            &mut client,
            &home,
            Body::Event(event_at(
                &format!("meeting-{i}"),
                &format!("Meeting {i}"),
                "2027-03-10T19:00",
                "2027-03-10T21:00",
            )),
        )
        .await
        .unwrap();
    }
    fed.converge_to(2, Duration::from_secs(30)).await.unwrap();
    let feeds: Vec<Got> = {
        let mut feeds = Vec::new();
        for node in &fed.nodes {
            let listen = node.config.http.as_ref().unwrap().listen;
            feeds.push(
                expect_status(&format!("http://{listen}/calendar.ics"), StatusCode::OK).await,
            );
        }
        feeds
    };
    assert_eq!(
        uid_set(&feeds[0].text()),
        ["meeting-0", "meeting-1"].map(String::from).into()
    );
    assert_eq!(feeds[0].text(), feeds[1].text());
    assert_eq!(feeds[0].etag(), feeds[1].etag());
    assert_eq!(
        feeds[0].header(header::LAST_MODIFIED),
        feeds[1].header(header::LAST_MODIFIED)
    );
    fed.stop_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alliance_only_events_and_clashes_need_a_live_member_link() {
    let mut c = calendar_node(2, 0).await;
    publish_event(
        &mut c,
        0,
        event_at(
            "rally",
            "Public rally",
            "2027-03-10T19:00",
            "2027-03-10T21:00",
        ),
    )
    .await;
    publish_event(
        &mut c,
        0,
        pb::Event {
            visibility: pb::Visibility::Alliance as i32,
            ..event_at(
                "strategy-7f3a",
                "Members' strategy meeting",
                "2027-03-12T19:00",
                "2027-03-12T21:00",
            )
        },
    )
    .await;
    for who in [0, 1] {
        let member = c.alliance.member(who).clone();
        publish(&mut c.client, &member, intention(LEEDS_HHP, S::Intends, ""))
            .await
            .unwrap();
    }
    let author = c.alliance.member(0).public_id();
    let secret = [
        "strategy-7f3a",
        "Members' strategy meeting",
        "Members&#39; strategy meeting",
    ];
    let base = c.base.clone();

    // The public sees the public event only, in the feed, the page and event pages.
    let feed = expect_status(&format!("{base}/calendar.ics"), StatusCode::OK).await;
    assert_eq!(uids(&feed.text()), ["rally"]);
    let page = expect_status(&format!("{base}/"), StatusCode::OK).await;
    assert!(page.text().contains("Public rally"));
    for (what, got) in [("feed", &feed), ("page", &page)] {
        let text = unfold(&got.text());
        for needle in secret {
            assert!(!text.contains(needle), "public {what} shows {needle:?}");
        }
    }
    expect_status(
        &format!("{base}/events/{author}/strategy-7f3a"),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_status(&format!("{base}/events/{author}/rally"), StatusCode::OK).await;
    expect_status(&format!("{base}/clashes"), StatusCode::NOT_FOUND).await;

    // A member's link shows both, and the clash board.
    let jo = feed_link(&mut c.client, "Jo (Leeds)").await;
    let sam = feed_link(&mut c.client, "Sam (Kirkstall)").await;
    assert_eq!(jo.page_url, format!("{base}/m/{}/", jo.token));
    assert_eq!(jo.feed_url, format!("{base}/m/{}/calendar.ics", jo.token));
    assert_eq!(
        jo.webcal_url,
        format!(
            "webcal://{}/m/{}/calendar.ics",
            &base["http://".len()..],
            jo.token
        )
    );
    let member_feed = expect_status(&jo.feed_url, StatusCode::OK).await;
    assert_eq!(uids(&member_feed.text()), ["rally", "strategy-7f3a"]);
    assert_eq!(
        member_feed.header(header::CACHE_CONTROL),
        Some("private, max-age=60")
    );
    let member_page = expect_status(&jo.page_url, StatusCode::OK).await;
    let member_page = member_page.text();
    assert!(member_page.contains("strategy meeting"), "{member_page}");
    let member_event = format!("{base}/m/{}/events/{author}/strategy-7f3a", jo.token);
    expect_status(&member_event, StatusCode::OK).await;
    let clashes_url = format!("{base}/m/{}/clashes", jo.token);
    let board = expect_status(&clashes_url, StatusCode::OK).await.text();
    assert!(
        board.contains(&format!("data-ballot=\"{LEEDS_HHP}\" data-state=\"open\"")),
        "{board}"
    );
    // 19 working days before Thursday 6 May 2027: 4pm on Thursday 8 April.
    assert!(board.contains("16:00, Thursday 8 April 2027"), "{board}");
    // The token is case-insensitive hex; anything else is simply not a link.
    let upper = format!("{base}/m/{}/calendar.ics", jo.token.to_ascii_uppercase());
    expect_status(&upper, StatusCode::OK).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_ne!(jo.token, unknown);
    for path in ["calendar.ics", "", "clashes"] {
        expect_status(&format!("{base}/m/{unknown}/{path}"), StatusCode::NOT_FOUND).await;
        expect_status(
            &format!("{base}/m/not-a-token/{path}"),
            StatusCode::NOT_FOUND,
        )
        .await;
    }

    // Revoked: every address of the link is gone; the other link is not.
    let revoked = c
        .client
        .revoke_feed_link(pb::RevokeFeedLinkRequest {
            link: "Jo (Leeds)".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (revoked.id.as_str(), revoked.label.as_str()),
        (jo.id.as_str(), "Jo (Leeds)")
    );
    assert_ne!(revoked.revoked_ms, 0);
    assert!(
        revoked.token.is_empty(),
        "a revoked link's token is not shown again"
    );
    let jo_urls = [
        jo.feed_url.clone(),
        jo.page_url.clone(),
        clashes_url.clone(),
        member_event.clone(),
        upper.clone(),
    ];
    for url in &jo_urls {
        expect_status(url, StatusCode::NOT_FOUND).await;
    }
    expect_status(&sam.feed_url, StatusCode::OK).await;

    // Both survive a restart: the revoked link stays revoked, the live one live.
    c.node.restart().await.unwrap();
    assert_eq!(c.node.http.as_deref(), Some(base.as_str()));
    for url in &jo_urls {
        expect_status(url, StatusCode::NOT_FOUND).await;
    }
    let after = expect_status(&sam.feed_url, StatusCode::OK).await;
    assert_eq!(uids(&after.text()), ["rally", "strategy-7f3a"]);
    expect_status(&format!("{base}/m/{}/clashes", sam.token), StatusCode::OK).await;
    let mut client = c.node.client().await.unwrap();
    let links = client
        .list_feed_links(pb::ListFeedLinksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links;
    let states: Vec<(&str, bool)> = links
        .iter()
        .map(|l| (l.label.as_str(), l.revoked_ms != 0))
        .collect();
    assert_eq!(states, [("Jo (Leeds)", true), ("Sam (Kirkstall)", false)]);
    assert!(links.iter().all(|l| l.token.is_empty()));

    // Revoking again is refused, and so is an unknown link.
    let again = client
        .revoke_feed_link(pb::RevokeFeedLinkRequest {
            link: jo.id.clone(),
        })
        .await
        .expect_err("already revoked");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again}");
    let missing = client
        .revoke_feed_link(pb::RevokeFeedLinkRequest {
            link: "Nobody".into(),
        })
        .await
        .expect_err("no such link");
    assert_eq!(missing.code(), Code::NotFound, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organisation_and_area_feeds_hold_exactly_their_events() {
    const LEEDS: &str = "E08000035";
    const ANGLESEY: &str = "W06000001";
    let mut c = calendar_node(3, 0).await;
    let party_0 = c.alliance.key(0);
    let in_area = |uid: &str, area: &str| pb::Event {
        area: area.into(),
        ..event_at(
            uid,
            &format!("Event {uid}"),
            "2027-03-10T19:00",
            "2027-03-10T21:00",
        )
    };
    publish_event(&mut c, 0, in_area("a-leeds", LEEDS)).await;
    publish_event(
        &mut c,
        1,
        pb::Event {
            organisers: vec![party_0.clone()],
            ..in_area("b-anglesey", ANGLESEY)
        },
    )
    .await;
    publish_event(&mut c, 2, in_area("c-nowhere", "")).await;
    publish_event(
        &mut c,
        0,
        pb::Event {
            visibility: pb::Visibility::Alliance as i32,
            ..in_area("d-members", LEEDS)
        },
    )
    .await;
    let link = feed_link(&mut c.client, "Jo (Leeds)").await;
    let base = c.base.clone();
    let member = format!("{base}/m/{}", link.token);

    let check = |prefix: &str, path: &str, want: &[&str]| {
        let url = format!("{prefix}{path}");
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        async move {
            let got = expect_status(&url, StatusCode::OK).await;
            assert_eq!(uid_set(&got.text()), want, "{url}");
        }
    };
    check(
        &base,
        "/calendar.ics",
        &["a-leeds", "b-anglesey", "c-nowhere"],
    )
    .await;
    // Organisers include co-organisers.
    check(
        &base,
        "/org/party-0/calendar.ics",
        &["a-leeds", "b-anglesey"],
    )
    .await;
    check(&base, "/org/party-1/calendar.ics", &["b-anglesey"]).await;
    check(&base, "/org/party-2/calendar.ics", &["c-nowhere"]).await;
    check(&base, &format!("/area/{LEEDS}/calendar.ics"), &["a-leeds"]).await;
    check(&base, "/area/w06000001/calendar.ics", &["b-anglesey"]).await;
    check(&base, "/area/E08000001/calendar.ics", &[]).await;
    check(
        &base,
        "/calendar.ics?org=party-0&area=W06000001",
        &["b-anglesey"],
    )
    .await;
    check(&base, "/calendar.ics?org=party-1", &["b-anglesey"]).await;
    check(&base, &format!("/calendar.ics?area={LEEDS}"), &["a-leeds"]).await;
    // A member's link adds alliance-only events to every selection.
    check(
        &member,
        "/calendar.ics",
        &["a-leeds", "b-anglesey", "c-nowhere", "d-members"],
    )
    .await;
    check(
        &member,
        "/org/party-0/calendar.ics",
        &["a-leeds", "b-anglesey", "d-members"],
    )
    .await;
    check(
        &member,
        &format!("/area/{LEEDS}/calendar.ics"),
        &["a-leeds", "d-members"],
    )
    .await;
    check(&member, "/org/party-2/calendar.ics", &["c-nowhere"]).await;
    // The calendar names say what they hold.
    let org_feed = expect_status(
        &format!("{member}/org/party-1/calendar.ics"),
        StatusCode::OK,
    )
    .await;
    assert!(
        unfold(&org_feed.text()).contains("X-WR-CALNAME:Test Alliance — Party 1 (members)\r\n"),
        "{}",
        org_feed.text()
    );

    for prefix in [&base, &member] {
        for path in [
            "/org/nobody/calendar.ics",
            "/calendar.ics?org=nobody",
            "/?org=nobody",
        ] {
            expect_status(&format!("{prefix}{path}"), StatusCode::NOT_FOUND).await;
        }
        for path in [
            "/area/E0800003/calendar.ics",
            "/area/X08000035/calendar.ics",
            "/area/leeds/calendar.ics",
            "/calendar.ics?area=E080000351",
            "/?area=Leeds",
        ] {
            expect_status(&format!("{prefix}{path}"), StatusCode::BAD_REQUEST).await;
        }
    }
}

/// One event as `tests/interop/ical_check.py` parsed it.
fn parsed<'a>(feed: &'a Value, uid: &str, author: &str) -> &'a Value {
    let full = format!("{uid}.{author}@accord");
    feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["uid"] == full.as_str())
        .unwrap_or_else(|| panic!("{full} not in {feed:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_icalendar_reads_times_text_and_updates_exactly() {
    let python = tokio::task::spawn_blocking(|| {
        python::venv(Path::new(env!("CARGO_TARGET_TMPDIR")), &[python::ICALENDAR])
    })
    .await
    .unwrap();
    let mut c = calendar_node(1, 0).await;
    let author = c.alliance.member(0).public_id().to_string();

    // Across the spring-forward gap: 00:30 GMT to 03:00 BST.
    publish_event(
        &mut c,
        0,
        event_at(
            "spring",
            "Count through the night",
            "2026-03-29T00:30",
            "2026-03-29T03:00",
        ),
    )
    .await;
    // In the hour that happens twice: the first (BST) 01:30, to 02:30 GMT.
    publish_event(
        &mut c,
        0,
        pb::Event {
            time_zone: "Europe/London".into(),
            ..event_at(
                "autumn",
                "Late count",
                "2026-10-25T01:30",
                "2026-10-25T02:30",
            )
        },
    )
    .await;
    // 01:30 on 29 March 2026 never happens in London: refused.
    let me = c.alliance.member(0).clone();
    let gap = publish(
        &mut c.client,
        &me,
        Body::Event(event_at(
            "gap",
            "Never",
            "2026-03-29T01:30",
            "2026-03-29T04:00",
        )),
    )
    .await
    .expect_err("a nonexistent local time is refused");
    assert_eq!(gap.code(), Code::InvalidArgument, "{gap}");
    assert!(gap.message().contains("2026-03-29T01:30"), "{gap}");

    // Text that needs escaping, folding (multi-byte characters across the 75-octet
    // boundaries) and care: commas, semicolons, a backslash, line breaks, Welsh with
    // a soft hyphen.
    let title = "Hustings, Q&A; Ynys Môn — Llanfair\u{AD}pwllgwyngyll \\ Neuadd y Dref";
    let description = "Doors 6.30pm, start 7pm; bring a friend.\nAil linell: ŵ ŷ â ê î ô û.\r\nThird line, \
                       with \"quotes\" and a tab\there.\n\nLlanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch, \
                       Ynys Môn; all welcome, croeso i bawb.";
    let venue = "Neuadd y Dref, Bulkeley Square; Llangefni, Ynys Môn LL77 7LR";
    publish_event(
        &mut c,
        0,
        pb::Event {
            description: description.into(),
            venue: venue.into(),
            ..event_at("text", title, "2027-03-10T19:00", "2027-03-10T21:00")
        },
    )
    .await;
    let long_title =
        "Cyfarfod cyhoeddus: ".to_owned() + &"Llanfair\u{AD}pwllgwyngyll ŵŷ, ".repeat(10);
    let long_description = "Môn mam Cymru. ".repeat(120);
    publish_event(
        &mut c,
        0,
        pb::Event {
            description: long_description.clone(),
            ..event_at(
                "long",
                long_title.trim_end(),
                "2027-03-11T19:00",
                "2027-03-11T21:00",
            )
        },
    )
    .await;
    // Cancelled (in 2027, so it is still in the feed), and updated to a new time.
    publish_event(
        &mut c,
        0,
        event_at(
            "called-off",
            "Street stall",
            "2027-06-01T10:00",
            "2027-06-01T12:00",
        ),
    )
    .await;
    publish_event(
        &mut c,
        0,
        pb::Event {
            cancelled: true,
            ..event_at(
                "called-off",
                "Street stall",
                "2027-06-01T10:00",
                "2027-06-01T12:00",
            )
        },
    )
    .await;
    publish_event(
        &mut c,
        0,
        event_at("moved", "Canvass", "2027-04-01T18:00", "2027-04-01T19:00"),
    )
    .await;
    publish_event(
        &mut c,
        0,
        event_at("moved", "Canvass", "2027-04-01T19:30", "2027-04-01T21:00"),
    )
    .await;
    // Outside London: written in UTC.
    publish_event(
        &mut c,
        0,
        pb::Event {
            time_zone: "Europe/Paris".into(),
            ..event_at(
                "paris",
                "Sister parties",
                "2027-03-10T19:00",
                "2027-03-10T21:00",
            )
        },
    )
    .await;

    let feed_url = format!("{}/calendar.ics", c.base);
    let raw = expect_status(&feed_url, StatusCode::OK).await.text();
    assert!(
        raw.split("\r\n").all(|line| line.len() <= 75),
        "a line over 75 octets:\n{raw}"
    );
    assert!(raw.contains("\r\n "), "nothing was folded:\n{raw}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/ical_check.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&feed_url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ical_check.py within 60s")
    .expect("ical_check.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ical_check.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let feed: Value = serde_json::from_str(&stdout).expect("JSON from ical_check.py");
    assert_eq!(feed["version"], "2.0");
    assert_eq!(feed["timezones"], serde_json::json!(["Europe/London"]));
    assert_eq!(feed["events"].as_array().unwrap().len(), 7, "{feed:#}");

    let when = |uid: &str| {
        let e = parsed(&feed, uid, &author);
        (
            e["dtstart"].as_str().unwrap().to_owned(),
            e["dtend"].as_str().unwrap().to_owned(),
            e["tzid"].as_str().map(str::to_owned),
        )
    };
    let london = Some("Europe/London".to_owned());
    assert_eq!(
        when("spring"),
        (
            "2026-03-29T00:30:00Z".into(),
            "2026-03-29T02:00:00Z".into(),
            london.clone()
        )
    );
    assert_eq!(
        when("autumn"),
        (
            "2026-10-25T00:30:00Z".into(),
            "2026-10-25T02:30:00Z".into(),
            london.clone()
        )
    );
    assert_eq!(
        when("moved"),
        (
            "2027-04-01T18:30:00Z".into(),
            "2027-04-01T20:00:00Z".into(),
            london.clone()
        )
    );
    assert_eq!(
        when("text"),
        (
            "2027-03-10T19:00:00Z".into(),
            "2027-03-10T21:00:00Z".into(),
            london
        )
    );
    assert_eq!(
        when("paris"),
        (
            "2027-03-10T18:00:00Z".into(),
            "2027-03-10T20:00:00Z".into(),
            None
        )
    );

    // Text round-trips exactly (a CRLF in the description is one line break).
    let text = parsed(&feed, "text", &author);
    assert_eq!(text["summary"], title);
    assert_eq!(
        text["description"],
        format!(
            "Organised by Party 0\n\n{}",
            description.replace("\r\n", "\n")
        )
    );
    assert_eq!(text["location"], venue);
    let long = parsed(&feed, "long", &author);
    assert_eq!(long["summary"], long_title.trim_end());
    assert_eq!(
        long["description"],
        format!("Organised by Party 0\n\n{long_description}")
    );

    // Status and sequence.
    let state = |uid: &str| {
        let e = parsed(&feed, uid, &author);
        (
            e["status"].as_str().unwrap().to_owned(),
            e["sequence"].as_u64().unwrap(),
        )
    };
    assert_eq!(state("called-off"), ("CANCELLED".into(), 1));
    assert_eq!(
        parsed(&feed, "called-off", &author)["summary"],
        "Cancelled: Street stall"
    );
    assert_eq!(state("moved"), ("CONFIRMED".into(), 1));
    assert_eq!(state("spring"), ("CONFIRMED".into(), 0));
    assert_eq!(parsed(&feed, "spring", &author)["class"], "PUBLIC");
}

/// An entry may be stamped a little ahead of the node's clock (within the charter's
/// skew): the feed still never claims a modification later than now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_modified_is_never_in_the_future() {
    let mut c = calendar_node(1, 0).await;
    let signer = c.alliance.signer(c.alliance.member(0));
    let ahead_ms = now_ms() + 120_000;
    let event = event_at(
        "ahead",
        "Stamped two minutes ahead",
        "2027-05-01T10:00",
        "2027-05-01T11:00",
    );
    let entry = signer.peek_raw(
        ahead_ms,
        pb::EntryKind::Event as i32,
        prost::Message::encode_to_vec(&event),
    );
    submit(&mut c.client, entry).await.expect("within the skew");
    let got = get(&format!("{}/calendar.ics", c.base)).await;
    assert!(got.text().contains("UID:ahead."), "{}", got.text());
    let modified = httpdate::parse_http_date(got.header(header::LAST_MODIFIED).unwrap()).unwrap();
    let now = std::time::SystemTime::now();
    assert!(
        modified <= now,
        "Last-Modified {modified:?} is after now {now:?}"
    );
    let ahead = std::time::UNIX_EPOCH + Duration::from_millis(ahead_ms as u64);
    assert!(modified < ahead - Duration::from_secs(60));
}

/// Regression (issue 8): the clash board's headline counted clashes whose
/// nominations had closed, mixed in with the open ones; ballots were shown by id
/// only; a ballot whose nation is not known was not flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clash_board_counts_open_nominations_and_names_ballots() {
    const CLOSED: &str = "local.glasgow-city.anderston-city-yorkhill.by.2026-01-22";
    const UNKNOWN: &str = "local.atlantis.harbour.2027-05-06";
    let mut c = calendar_node(2, 0).await;
    for ballot in [CLOSED, UNKNOWN, LEEDS_HHP] {
        for who in [0, 1] {
            let member = c.alliance.member(who).clone();
            publish(&mut c.client, &member, intention(ballot, S::Intends, ""))
                .await
                .unwrap();
        }
    }
    let jo = feed_link(&mut c.client, "Jo").await;
    let board = expect_status(
        &format!("{}/m/{}/clashes", c.base, jo.token),
        StatusCode::OK,
    )
    .await
    .text();
    assert!(
        board.contains(
            "2 clashes need attention (and 1 whose nominations have closed, listed below)."
        ),
        "{board}"
    );
    let closed_section = board
        .find("Nominations closed</h2>")
        .expect("closed section");
    assert!(board.find(&format!("data-ballot=\"{CLOSED}\"")).unwrap() > closed_section);
    for open in [UNKNOWN, LEEDS_HHP] {
        assert!(board.find(&format!("data-ballot=\"{open}\"")).unwrap() < closed_section);
    }
    assert!(board.contains(
        "<span class=\"ballot-name\">Glasgow City: Anderston City Yorkhill, local by-election, 22 January 2026</span> <code class=\"ballot-id\">local.glasgow-city.anderston-city-yorkhill.by.2026-01-22</code>"
    ), "{board}");
    assert!(board.contains("Leeds: Headingley Hyde Park, local election, 6 May 2027"));
    // Atlantis is no council: the earliest possible deadline (Scotland's 23 days, 2
    // April 2027), flagged, with the reason in the rule.
    assert_eq!(
        board
            .matches("Nation unknown: earliest possible deadline")
            .count(),
        1
    );
    assert!(board.contains("16:00, Friday 2 April 2027"), "{board}");
    assert!(board.contains("nation unknown, so the earliest of the deadlines for England and Wales, Scotland and Northern Ireland"));
}
