//! RFC 5545 feeds, written by hand so that they are deterministic: the same events,
//! options and clock give the same bytes. DTSTAMP and LAST-MODIFIED come from the
//! event's last change, never from "now"; UIDs are stable ([`crate::event_uid`]);
//! "now" only decides which events are in the feed and its Last-Modified.
//!
//! Times in Europe/London are written as the author's local time with
//! `TZID=Europe/London`, and every feed carries its VTIMEZONE (the EU rules in force
//! since 1996); times in any other zone are written in UTC. Core takes the first of
//! an ambiguous local time and refuses a nonexistent one, which is what RFC 5545
//! §3.3.5 prescribes for readers of TZID times, so both sides agree on the instant.
//!
//! All-day events are written as DATE values (no zone), DTEND the day after the
//! last day.
//!
//! Every content line ends in CRLF and is folded at 75 octets (§3.1) on a character
//! boundary, never inside an escape sequence.

use std::fmt::Write as _;
use std::time::Duration;

use accord_core::body::Visibility;
use accord_core::state::EventView;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::{Audience, Directory, Paths, Selection, event_uid};

/// The product identifier of every feed.
const PRODID: &str = "-//Accord//Accord calendar//EN";
/// The only zone written with TZID (and a VTIMEZONE); others are written in UTC.
const LONDON: Tz = chrono_tz::Europe::London;
/// Longest physical line in octets, CRLF not counted (RFC 5545 §3.1).
const MAX_LINE_OCTETS: usize = 75;

/// One rendered feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub bytes: Vec<u8>,
    /// Strong validator: "\"<first 32 hex of SHA-256 of bytes>\"" (with the quotes).
    pub etag: String,
    /// For the Last-Modified header (second precision is the server's business).
    /// None when nothing to date it by.
    pub last_modified: Option<DateTime<Utc>>,
    /// When this rendering goes stale by time alone: the earliest end_utc of an
    /// included cancelled event (after it, that event drops out). None if never.
    pub stale_at: Option<DateTime<Utc>>,
    /// Number of VEVENTs in the feed.
    pub events: usize,
}

/// What a feed is of, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions<'a> {
    pub alliance_name: &'a str,
    pub directory: &'a Directory,
    pub paths: &'a Paths,
    pub selection: &'a Selection,
    /// Refresh interval advertised in REFRESH-INTERVAL and X-PUBLISHED-TTL.
    pub refresh: Duration,
}

/// Renders the feed of `options.selection` at `now`.
///
/// `events` as `State::events()` returns them (sorted by start; cancelled included):
/// the feed keeps their order. Pure: same inputs, same bytes.
pub fn render(events: &[EventView], options: &FeedOptions<'_>, now: DateTime<Utc>) -> Feed {
    let selection = options.selection;
    let included: Vec<&EventView> = events
        .iter()
        .filter(|ev| selection.includes(ev, now))
        .collect();

    let mut w = Writer::default();
    w.raw("BEGIN", "VCALENDAR");
    w.raw("VERSION", "2.0");
    w.raw("PRODID", PRODID);
    w.raw("CALSCALE", "GREGORIAN");
    w.raw("METHOD", "PUBLISH");
    w.text("X-WR-CALNAME", &calendar_name(options));
    w.text("X-WR-CALDESC", &calendar_description(options));
    w.raw("X-WR-TIMEZONE", LONDON.name());
    let refresh = duration(options.refresh);
    w.raw("REFRESH-INTERVAL;VALUE=DURATION", &refresh);
    w.raw("X-PUBLISHED-TTL", &refresh);
    // Always, even when no event uses it: X-WR-TIMEZONE names it, and a calendar
    // needs at least one component (RFC 5545 §3.6) when it has no events.
    write_london(&mut w);
    for ev in &included {
        write_event(&mut w, ev, options);
    }
    w.raw("END", "VCALENDAR");

    let bytes = w.out;
    let digest = Sha256::digest(&bytes);
    Feed {
        etag: format!("\"{}\"", &hex::encode(digest)[..32]),
        bytes,
        last_modified: last_modified(events, selection.audience, now),
        stale_at: included
            .iter()
            .filter(|ev| ev.event.cancelled)
            .map(|ev| ev.event.end_utc)
            .min(),
        events: included.len(),
    }
}

/// The feed's Last-Modified: the last change of any event the audience could see
/// (not only those in the selection, so a filter never hides a change), or the end
/// of a cancelled event that has since dropped out. The public is dated by public
/// changes only, so alliance-only activity does not show in its headers.
fn last_modified(
    events: &[EventView],
    audience: Audience,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let changed = events.iter().filter_map(|ev| match audience {
        Audience::Public => ev.last_public_change_ms,
        Audience::Members => Some(ev.last_modified_ms),
    });
    let dropped = events.iter().filter_map(|ev| {
        let seen = match audience {
            Audience::Public => ev.last_public_change_ms.is_some(),
            Audience::Members => true,
        };
        (seen && ev.event.cancelled && ev.event.end_utc <= now).then_some(ev.event.end_utc)
    });
    changed.map(from_ms).chain(dropped).max()
}

/// "Alliance — Org — E14000530 (members)".
fn calendar_name(options: &FeedOptions<'_>) -> String {
    let selection = options.selection;
    let mut name = options.alliance_name.to_owned();
    if let Some(org) = &selection.organisation {
        name.push_str(" — ");
        name.push_str(&options.directory.name(org));
    }
    if let Some(area) = &selection.area {
        name.push_str(" — ");
        name.push_str(area);
    }
    if selection.audience == Audience::Members {
        name.push_str(" (members)");
    }
    name
}

fn calendar_description(options: &FeedOptions<'_>) -> String {
    let selection = options.selection;
    let mut text = match selection.audience {
        Audience::Public => "Public events of ",
        Audience::Members => "Public and alliance-only events of ",
    }
    .to_owned();
    text.push_str(options.alliance_name);
    if let Some(org) = &selection.organisation {
        text.push_str(", organised by ");
        text.push_str(&options.directory.name(org));
    }
    if let Some(area) = &selection.area {
        text.push_str(", in area ");
        text.push_str(area);
    }
    text.push('.');
    if selection.audience == Audience::Members {
        text.push_str(" This feed's address is personal to a member: do not share it.");
    }
    text
}

/// Europe/London as the EU has had it since 1996: BST from 01:00 UTC on the last
/// Sunday in March to 01:00 UTC on the last Sunday in October.
fn write_london(w: &mut Writer) {
    w.raw("BEGIN", "VTIMEZONE");
    w.raw("TZID", LONDON.name());
    w.raw("X-LIC-LOCATION", LONDON.name());
    w.raw("BEGIN", "DAYLIGHT");
    w.raw("TZOFFSETFROM", "+0000");
    w.raw("TZOFFSETTO", "+0100");
    w.raw("TZNAME", "BST");
    w.raw("DTSTART", "19700329T010000");
    w.raw("RRULE", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU");
    w.raw("END", "DAYLIGHT");
    w.raw("BEGIN", "STANDARD");
    w.raw("TZOFFSETFROM", "+0100");
    w.raw("TZOFFSETTO", "+0000");
    w.raw("TZNAME", "GMT");
    w.raw("DTSTART", "19701025T020000");
    w.raw("RRULE", "FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU");
    w.raw("END", "STANDARD");
    w.raw("END", "VTIMEZONE");
}

fn write_event(w: &mut Writer, ev: &EventView, options: &FeedOptions<'_>) {
    let e = &ev.event;
    let dir = options.directory;
    w.raw("BEGIN", "VEVENT");
    w.raw("UID", &event_uid(ev));
    let modified = utc_stamp(from_ms(ev.last_modified_ms));
    w.raw("DTSTAMP", &modified);
    w.raw("CREATED", &utc_stamp(from_ms(ev.first_published_ms)));
    w.raw("LAST-MODIFIED", &modified);
    w.raw("SEQUENCE", &ev.sequence.to_string());
    if e.all_day {
        // DATE values; DTEND is the day after the last (RFC 5545 §3.6.1).
        w.raw("DTSTART;VALUE=DATE", &e.start.format("%Y%m%d").to_string());
        w.raw("DTEND;VALUE=DATE", &e.end.format("%Y%m%d").to_string());
    } else {
        write_time(w, "DTSTART", e.time_zone, e.start, e.start_utc);
        write_time(w, "DTEND", e.time_zone, e.end, e.end_utc);
    }
    if e.cancelled {
        // Some calendar apps show STATUS:CANCELLED events like any other: say it in
        // the title too, so nobody turns up.
        w.text("SUMMARY", &format!("Cancelled: {}", e.title));
    } else {
        w.text("SUMMARY", &e.title);
    }
    let names: Vec<String> = ev.organisers.iter().map(|k| dir.name(k)).collect();
    let mut description = format!("Organised by {}", join_names(&names));
    if !e.description.trim().is_empty() {
        description.push_str("\n\n");
        description.push_str(&e.description);
    }
    w.text("DESCRIPTION", &description);
    if !e.venue.trim().is_empty() {
        w.text("LOCATION", &e.venue);
    }
    w.raw(
        "URL",
        &format!("{}{}", options.paths.base, options.paths.event(ev)),
    );
    w.raw(
        "STATUS",
        if e.cancelled {
            "CANCELLED"
        } else {
            "CONFIRMED"
        },
    );
    w.raw(
        "CLASS",
        match e.visibility {
            Visibility::Public => "PUBLIC",
            Visibility::Alliance => "PRIVATE",
        },
    );
    w.raw(
        &format!("ORGANIZER;CN={}", param_value(&dir.name(&ev.author))),
        &format!("urn:accord:organisation:{}", ev.author),
    );
    let categories: Vec<String> = names.iter().map(|n| escape_text(n)).collect();
    w.raw("CATEGORIES", &categories.join(","));
    if let Some(area) = &e.area {
        w.text("X-ACCORD-AREA", area);
    }
    w.raw("END", "VEVENT");
}

/// DTSTART or DTEND: the local time with TZID in Europe/London, UTC elsewhere.
fn write_time(w: &mut Writer, name: &str, zone: Tz, local: NaiveDateTime, utc: DateTime<Utc>) {
    if zone == LONDON {
        w.raw(
            &format!("{name};TZID={}", LONDON.name()),
            &local.format("%Y%m%dT%H%M%S").to_string(),
        );
    } else {
        w.raw(name, &utc_stamp(utc));
    }
}

/// "A", "A and B", "A, B and C".
fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A UTC DATE-TIME in the Z form, to the second.
fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Entry timestamps as times, clamped to the years iCalendar can write (0001–9999).
fn from_ms(ms: i64) -> DateTime<Utc> {
    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    const MIN_MS: i64 = -62_135_596_800_000;
    const MAX_MS: i64 = 253_402_300_799_000;
    DateTime::from_timestamp_millis(ms.clamp(MIN_MS, MAX_MS)).unwrap_or_default()
}

/// A DURATION value (RFC 5545 §3.3.6) in whole seconds: "PT15M", "PT1H", "P1D",
/// "P1DT1H0M30S". Weeks are written as days.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let mut out = String::from("P");
    if days > 0 {
        let _ = write!(out, "{days}D");
    }
    if rest > 0 || days == 0 {
        out.push('T');
        // dur-hour = 1*DIGIT "H" [dur-minute]; dur-minute = 1*DIGIT "M" [dur-second]:
        // a minute between hours and seconds is written even when it is zero.
        if h > 0 {
            let _ = write!(out, "{h}H");
        }
        if m > 0 || (h > 0 && s > 0) {
            let _ = write!(out, "{m}M");
        }
        if s > 0 || rest == 0 {
            let _ = write!(out, "{s}S");
        }
    }
    out
}

/// Escapes a TEXT value (RFC 5545 §3.3.11): backslash, semicolon and comma get a
/// backslash; a line break (CRLF, CR or LF) becomes `\n`. Other ASCII control
/// characters, which TEXT cannot hold, are dropped; a tab stays.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\t' => out.push('\t'),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value (RFC 5545 §3.2): quoted when it holds `:`, `;` or `,`. A
/// parameter value cannot hold a double quote (it becomes an apostrophe) or a
/// control character (dropped).
fn param_value(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| !c.is_ascii_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .collect();
    if clean.contains([':', ';', ',']) {
        format!("\"{clean}\"")
    } else {
        clean
    }
}

/// Content lines, folded and CRLF-terminated.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// A property whose value is already in its value type's form. ASCII control
    /// characters (except tab) are dropped so that no value can end the line.
    fn raw(&mut self, name: &str, value: &str) {
        let mut line = String::with_capacity(name.len() + 1 + value.len());
        line.push_str(name);
        line.push(':');
        line.extend(
            value
                .chars()
                .filter(|&c| c == '\t' || !c.is_ascii_control()),
        );
        fold_into(&mut self.out, &line);
    }

    /// A TEXT property.
    fn text(&mut self, name: &str, value: &str) {
        self.raw(name, &escape_text(value));
    }
}

/// Appends `line` folded (RFC 5545 §3.1): no physical line longer than 75 octets
/// without its CRLF, continuation lines starting with one space. Lines break only
/// between characters, and never between a backslash and the character it escapes
/// (unfolding would not care, but some readers do).
fn fold_into(out: &mut Vec<u8>, line: &str) {
    let mut width = 0;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let mut len = c.len_utf8();
        if c == '\\' {
            len += rest[len..].chars().next().map_or(0, char::len_utf8);
        }
        if width + len > MAX_LINE_OCTETS {
            out.extend_from_slice(b"\r\n ");
            width = 1;
        }
        out.extend_from_slice(&rest.as_bytes()[..len]);
        width += len;
        rest = &rest[len..];
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use accord_core::body::{Body, Event, encode};
    use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
    use accord_core::entry::{self, Logs, SignatureChecked};
    use accord_core::pb;
    use accord_core::pb::publish_request::Body as B;
    use accord_core::{Charter, EntryId, Identity, PublicId, State};
    use expect_test::expect;
    use proptest::prelude::*;

    use super::*;

    const A: usize = 0;
    const B_: usize = 1;
    const C: usize = 2;
    const SEC: usize = 3;

    /// A small alliance: three members (one with a name full of characters that
    /// need escaping or quoting) and a secretary.
    struct Fixture {
        charter: Charter,
        ids: Vec<Identity>,
        directory: Directory,
        paths: Paths,
    }

    impl Fixture {
        fn new() -> Self {
            let ids: Vec<Identity> = (0..4u8).map(|n| Identity::from_seed([n + 1; 32])).collect();
            let member = |i: usize, name: &str| CharterMember {
                name: name.into(),
                key: ids[i].public_id(),
                ec_id: None,
            };
            let doc = CharterDoc {
                accord_charter: 1,
                name: "Test Alliance".into(),
                members: vec![
                    member(A, "Alpha Party"),
                    member(B_, "Plaid Ynys Môn"),
                    member(C, "Left \"Unity\": Wales, Co-op"),
                ],
                secretaries: vec![CharterSecretary {
                    name: "Secretariat".into(),
                    key: ids[SEC].public_id(),
                }],
                rules: Rules::default(),
            };
            let charter = Charter::from_bytes(doc.to_file_bytes()).unwrap();
            Self {
                directory: Directory::from_charter(&charter),
                charter,
                ids,
                paths: Paths {
                    base: "https://calendar.example.org".into(),
                    token: None,
                },
            }
        }

        fn key(&self, who: usize) -> PublicId {
            self.ids[who].public_id()
        }

        fn options<'a>(&'a self, selection: &'a Selection) -> FeedOptions<'a> {
            FeedOptions {
                alliance_name: "Test Alliance",
                directory: &self.directory,
                paths: &self.paths,
                selection,
                refresh: Duration::from_secs(3600),
            }
        }

        /// The feed of `selection` at `now`.
        fn render(&self, events: &[EventView], selection: &Selection, now: &str) -> Feed {
            render(events, &self.options(selection), at(now))
        }
    }

    fn members() -> Selection {
        Selection {
            audience: Audience::Members,
            organisation: None,
            area: None,
        }
    }

    fn at(utc: &str) -> DateTime<Utc> {
        utc.parse().unwrap()
    }

    fn ms(utc: &str) -> i64 {
        at(utc).timestamp_millis()
    }

    /// A public event in Europe/London.
    fn pb_event(uid: &str, start: &str, end: &str) -> pb::Event {
        pb::Event {
            uid: uid.into(),
            title: format!("Event {uid}"),
            description: String::new(),
            start: start.into(),
            end: end.into(),
            time_zone: String::new(),
            venue: String::new(),
            area: String::new(),
            organisers: vec![],
            visibility: pb::Visibility::Public as i32,
            cancelled: false,
            all_day: false,
        }
    }

    /// The event as core checks and converts it.
    fn decode(event: pb::Event) -> Event {
        let (kind, bytes) = encode(&B::Event(event));
        match Body::decode(kind as i32, &bytes).unwrap() {
            Body::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    /// The view of an event published once at `published` and last changed at
    /// `modified` (a public event's last change is public).
    fn view(author: PublicId, event: pb::Event, published: &str, modified: &str) -> EventView {
        let event = decode(event);
        let mut organisers = vec![author];
        organisers.extend(event.organisers.iter().filter(|o| **o != author));
        EventView {
            author,
            organisers,
            sequence: u32::from(published != modified),
            first_published_ms: ms(published),
            last_modified_ms: ms(modified),
            last_public_change_ms: (event.visibility == Visibility::Public).then_some(ms(modified)),
            event,
            entry: EntryId::from_bytes([7; 32]),
        }
    }

    fn text(feed: &Feed) -> String {
        String::from_utf8(feed.bytes.clone()).unwrap()
    }

    /// The content lines of a feed, unfolded.
    fn lines(feed: &Feed) -> Vec<String> {
        let text = unfold(&text(feed));
        let body = text.strip_suffix("\r\n").expect("the feed ends in CRLF");
        body.split("\r\n").map(str::to_owned).collect()
    }

    fn has_line(feed: &Feed, line: &str) -> bool {
        lines(feed).iter().any(|l| l == line)
    }

    fn unfold(text: &str) -> String {
        text.replace("\r\n ", "")
    }

    fn unescape(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n' | 'N') => out.push('\n'),
                    Some(c) => out.push(c),
                    None => panic!("dangling backslash in {text:?}"),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Every physical line ends in CRLF (no bare CR or LF) and is at most 75 octets.
    fn assert_well_formed(bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("feeds are UTF-8");
        assert!(text.ends_with("\r\n"));
        for line in text[..text.len() - 2].split("\r\n") {
            assert!(!line.contains(['\r', '\n']), "bare CR or LF in {line:?}");
            assert!(
                line.len() <= MAX_LINE_OCTETS,
                "{} octets: {line:?}",
                line.len()
            );
        }
    }

    #[test]
    fn text_escaping() {
        let check = |input: &str, expected: &str| assert_eq!(escape_text(input), expected);
        check("plain", "plain");
        check("a, b; c", "a\\, b\\; c");
        check("back\\slash", "back\\\\slash");
        check("one\ntwo\r\nthree\rfour", "one\\ntwo\\nthree\\nfour");
        check("\r\n\r\n", "\\n\\n");
        check("colon: \"quotes\" stay", "colon: \"quotes\" stay");
        check("tab\tstays, bell\u{7} goes", "tab\tstays\\, bell goes");
        check("Ynys Môn 🗳️", "Ynys Môn 🗳️");
    }

    #[test]
    fn parameter_values() {
        let check = |input: &str, expected: &str| assert_eq!(param_value(input), expected);
        check("Alpha Party", "Alpha Party");
        check("Plaid Ynys Môn", "Plaid Ynys Môn");
        check("Left: Wales", "\"Left: Wales\"");
        check("A; B", "\"A; B\"");
        check("A, B", "\"A, B\"");
        check("The \"Real\" Party", "The 'Real' Party");
        check("New\nline", "Newline");
    }

    #[test]
    fn durations() {
        let check = |secs: u64, expected: &str| {
            assert_eq!(duration(Duration::from_secs(secs)), expected, "{secs}s");
        };
        check(0, "PT0S");
        check(30, "PT30S");
        check(15 * 60, "PT15M");
        check(3600, "PT1H");
        check(3600 + 30, "PT1H0M30S");
        check(3600 + 90, "PT1H1M30S");
        check(5400, "PT1H30M");
        check(86_400, "P1D");
        check(7 * 86_400, "P7D");
        check(86_400 + 3600, "P1DT1H");
        check(86_400 + 30, "P1DT30S");
        assert_eq!(duration(Duration::from_millis(90_500)), "PT1M30S");
    }

    #[test]
    fn folding_never_splits_a_character_or_an_escape() {
        let fold = |line: &str| {
            let mut out = Vec::new();
            fold_into(&mut out, line);
            assert_well_formed(&out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(fold("SUMMARY:short"), "SUMMARY:short\r\n");
        let exact = format!("SUMMARY:{}", "x".repeat(75 - 8));
        assert_eq!(fold(&exact), format!("{exact}\r\n"));
        // 74 octets, then "ô" (2 octets) would end at 76: it moves to the next line.
        let line = format!("SUMMARY:{}ôn", "y".repeat(74 - 8));
        assert_eq!(
            fold(&line),
            format!("SUMMARY:{}\r\n ôn\r\n", "y".repeat(74 - 8))
        );
        // An emoji (4 octets) straddling 75 moves whole.
        let line = format!("SUMMARY:{}🗳x", "z".repeat(73 - 8));
        assert_eq!(
            fold(&line),
            format!("SUMMARY:{}\r\n 🗳x\r\n", "z".repeat(73 - 8))
        );
        // A backslash at octet 75 stays with what it escapes.
        let line = format!("SUMMARY:{}\\,x", "w".repeat(74 - 8));
        assert_eq!(
            fold(&line),
            format!("SUMMARY:{}\r\n \\,x\r\n", "w".repeat(74 - 8))
        );
        // Continuation lines hold 74 octets after their space.
        let long = format!("DESCRIPTION:{}", "Llanfair\u{AD}pwllgwyngyll ".repeat(20));
        let folded = fold(&long);
        assert_eq!(unfold(&folded), format!("{long}\r\n"));
        let physical: Vec<&str> = folded.split("\r\n").collect();
        assert!(physical.len() > 5);
        assert!(
            physical[1..physical.len() - 1]
                .iter()
                .all(|l| l.starts_with(' '))
        );
    }

    proptest! {
        /// Any text, after any property name, folds into lines of at most 75 octets
        /// of valid UTF-8, and unfolding and unescaping gives it back (with line
        /// breaks as LF and the control characters TEXT cannot hold dropped).
        #[test]
        fn any_text_round_trips(pad in 0usize..80, value in any::<String>()) {
            let name = format!("X-{}", "P".repeat(pad));
            let mut out = Vec::new();
            fold_into(&mut out, &format!("{name}:{}", escape_text(&value)));
            assert_well_formed(&out);
            let unfolded = unfold(std::str::from_utf8(&out).unwrap());
            let line = unfolded.strip_suffix("\r\n").unwrap();
            prop_assert!(!line.contains("\r\n"));
            let escaped = line.strip_prefix(&format!("{name}:")).unwrap();
            let expected: String = value
                .replace("\r\n", "\n")
                .replace('\r', "\n")
                .chars()
                .filter(|&c| c == '\n' || c == '\t' || !c.is_ascii_control())
                .collect();
            prop_assert_eq!(unescape(escaped), expected);
        }

        /// Same with text built from the awkward characters, so that escapes and
        /// multibyte characters often meet the fold.
        #[test]
        fn awkward_text_round_trips(
            pad in 0usize..80,
            parts in proptest::collection::vec(
                prop::sample::select(vec!["\\", ";", ",", "\n", "\r\n", "ô", "🗳️", "a", "\u{AD}", "w"]),
                0..200,
            ),
        ) {
            let value = parts.concat();
            let name = format!("X-{}", "P".repeat(pad));
            let mut out = Vec::new();
            fold_into(&mut out, &format!("{name}:{}", escape_text(&value)));
            assert_well_formed(&out);
            let unfolded = unfold(std::str::from_utf8(&out).unwrap());
            let escaped = unfolded
                .strip_suffix("\r\n")
                .and_then(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap();
            prop_assert_eq!(unescape(escaped), value.replace("\r\n", "\n"));
        }
    }

    #[test]
    fn snapshot_of_a_small_feed() {
        let fx = Fixture::new();
        let mut event = pb_event("hustings-1", "2026-06-04T19:00", "2026-06-04T21:00");
        event.title = "Hustings: Ynys Môn".into();
        event.description = "Doors 18:30; bring ID, please.\nStep-free access".into();
        event.venue = "Neuadd y Dref, Llangefni".into();
        event.area = "W07000112".into();
        event.organisers = vec![fx.key(B_).to_vec(), fx.key(C).to_vec()];
        let events = [view(
            fx.key(A),
            event,
            "2026-05-01T09:00:00Z",
            "2026-05-02T10:30:15.250Z",
        )];
        let feed = fx.render(&events, &Selection::public(), "2026-06-01T00:00:00Z");
        // The snapshot shows LF; the bytes end every line in CRLF (no bare CR or LF).
        assert_well_formed(&feed.bytes);
        assert_eq!(feed.events, 1);
        assert_eq!(feed.last_modified, Some(at("2026-05-02T10:30:15.250Z")));
        assert_eq!(feed.stale_at, None);
        expect![[r#"
            BEGIN:VCALENDAR
            VERSION:2.0
            PRODID:-//Accord//Accord calendar//EN
            CALSCALE:GREGORIAN
            METHOD:PUBLISH
            X-WR-CALNAME:Test Alliance
            X-WR-CALDESC:Public events of Test Alliance.
            X-WR-TIMEZONE:Europe/London
            REFRESH-INTERVAL;VALUE=DURATION:PT1H
            X-PUBLISHED-TTL:PT1H
            BEGIN:VTIMEZONE
            TZID:Europe/London
            X-LIC-LOCATION:Europe/London
            BEGIN:DAYLIGHT
            TZOFFSETFROM:+0000
            TZOFFSETTO:+0100
            TZNAME:BST
            DTSTART:19700329T010000
            RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
            END:DAYLIGHT
            BEGIN:STANDARD
            TZOFFSETFROM:+0100
            TZOFFSETTO:+0000
            TZNAME:GMT
            DTSTART:19701025T020000
            RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
            END:STANDARD
            END:VTIMEZONE
            BEGIN:VEVENT
            UID:hustings-1.8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f
             6f5c@accord
            DTSTAMP:20260502T103015Z
            CREATED:20260501T090000Z
            LAST-MODIFIED:20260502T103015Z
            SEQUENCE:1
            DTSTART;TZID=Europe/London:20260604T190000
            DTEND;TZID=Europe/London:20260604T210000
            SUMMARY:Hustings: Ynys Môn
            DESCRIPTION:Organised by Alpha Party\, Plaid Ynys Môn and Left "Unity": Wa
             les\, Co-op\n\nDoors 18:30\; bring ID\, please.\nStep-free access
            LOCATION:Neuadd y Dref\, Llangefni
            URL:https://calendar.example.org/events/8a88e3dd7409f195fd52db2d3cba5d72ca6
             709bf1d94121bf3748801b40f6f5c/hustings-1
            STATUS:CONFIRMED
            CLASS:PUBLIC
            ORGANIZER;CN=Alpha Party:urn:accord:organisation:8a88e3dd7409f195fd52db2d3c
             ba5d72ca6709bf1d94121bf3748801b40f6f5c
            CATEGORIES:Alpha Party,Plaid Ynys Môn,Left "Unity": Wales\, Co-op
            X-ACCORD-AREA:W07000112
            END:VEVENT
            END:VCALENDAR
        "#]]
        .assert_eq(&text(&feed).replace("\r\n", "\n"));
    }

    /// Publishes the next event entry of `who`, signed and checked as a node would.
    fn publish(fx: &Fixture, state: &mut State, who: usize, event: pb::Event, when: &str) {
        let (kind, bytes) = encode(&B::Event(event));
        let head = state.head(&fx.key(who));
        let signed = entry::sign(
            &fx.ids[who],
            fx.charter.id(),
            head.as_ref(),
            ms(when),
            kind as i32,
            bytes,
        );
        let decoded = entry::decode(signed, 1 << 20).unwrap();
        let checked = SignatureChecked::single(&decoded).unwrap();
        let verified = decoded
            .accept(&fx.charter, state, ms(when), checked)
            .unwrap();
        state.apply(&verified);
    }

    #[test]
    fn london_times_keep_their_zone_across_the_clock_changes() {
        let fx = Fixture::new();
        // The night the clocks go forward, and the hour that happens twice.
        let spring = view(
            fx.key(A),
            pb_event("spring", "2026-03-29T00:30", "2026-03-29T03:00"),
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        let autumn = view(
            fx.key(A),
            pb_event("autumn", "2026-10-25T01:30", "2026-10-25T02:30"),
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        // Core's instants, which readers of the TZID times below arrive at too
        // (RFC 5545 §3.3.5: the first of an ambiguous time).
        assert_eq!(spring.event.start_utc, at("2026-03-29T00:30:00Z"));
        assert_eq!(spring.event.end_utc, at("2026-03-29T02:00:00Z"));
        assert_eq!(autumn.event.start_utc, at("2026-10-25T00:30:00Z"));
        assert_eq!(autumn.event.end_utc, at("2026-10-25T02:30:00Z"));

        let feed = fx.render(
            &[spring, autumn],
            &Selection::public(),
            "2026-01-02T00:00:00Z",
        );
        assert_well_formed(&feed.bytes);
        assert_eq!(feed.events, 2);
        for line in [
            "DTSTART;TZID=Europe/London:20260329T003000",
            "DTEND;TZID=Europe/London:20260329T030000",
            "DTSTART;TZID=Europe/London:20261025T013000",
            "DTEND;TZID=Europe/London:20261025T023000",
            "TZID:Europe/London",
            "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
            "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
        ] {
            assert!(has_line(&feed, line), "no {line}");
        }
        let lines = lines(&feed);
        let timezone = lines.iter().position(|l| l == "BEGIN:VTIMEZONE").unwrap();
        let first_event = lines.iter().position(|l| l == "BEGIN:VEVENT").unwrap();
        assert!(timezone < first_event);
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VTIMEZONE").count(), 1);
    }

    #[test]
    fn other_zones_are_written_in_utc() {
        let fx = Fixture::new();
        let mut event = pb_event("nyc", "2026-06-01T19:00", "2026-06-01T21:00");
        event.time_zone = "America/New_York".into();
        let events = [view(
            fx.key(A),
            event,
            "2026-05-01T00:00:00Z",
            "2026-05-01T00:00:00Z",
        )];
        let feed = fx.render(&events, &Selection::public(), "2026-05-02T00:00:00Z");
        assert!(has_line(&feed, "DTSTART:20260601T230000Z"));
        assert!(has_line(&feed, "DTEND:20260602T010000Z"));
        assert!(!text(&feed).contains("TZID="));
        // The calendar still says which zone to show it in.
        assert!(has_line(&feed, "X-WR-TIMEZONE:Europe/London"));
    }

    #[test]
    fn all_day_events_are_dates_with_an_exclusive_end() {
        let fx = Fixture::new();
        let mut one = pb_event("one-day", "2027-05-01", "");
        one.all_day = true;
        let mut weekend = pb_event("weekend", "2027-05-01", "2027-05-02");
        weekend.all_day = true;
        // A zone other than London: dates stay dates, never UTC times.
        weekend.time_zone = "America/New_York".into();
        let events = [
            view(
                fx.key(A),
                one,
                "2027-04-01T00:00:00Z",
                "2027-04-01T00:00:00Z",
            ),
            view(
                fx.key(A),
                weekend,
                "2027-04-01T00:00:00Z",
                "2027-04-01T00:00:00Z",
            ),
        ];
        assert_eq!(events[0].event.start_utc, at("2027-04-30T23:00:00Z"));
        assert_eq!(events[0].event.end_utc, at("2027-05-01T23:00:00Z"));
        let feed = fx.render(&events, &Selection::public(), "2027-04-02T00:00:00Z");
        assert_well_formed(&feed.bytes);
        assert_eq!(feed.events, 2);
        let lines = lines(&feed);
        let dates: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("DTSTART;") || l.starts_with("DTEND"))
            .collect();
        assert_eq!(
            dates,
            [
                "DTSTART;VALUE=DATE:20270501",
                "DTEND;VALUE=DATE:20270502",
                "DTSTART;VALUE=DATE:20270501",
                "DTEND;VALUE=DATE:20270503",
            ]
        );
    }

    #[test]
    fn an_empty_feed_has_no_date_and_still_a_component() {
        let fx = Fixture::new();
        let feed = fx.render(&[], &Selection::public(), "2026-05-02T00:00:00Z");
        assert_well_formed(&feed.bytes);
        assert_eq!(feed.events, 0);
        assert_eq!(feed.last_modified, None);
        assert_eq!(feed.stale_at, None);
        assert!(has_line(&feed, "BEGIN:VTIMEZONE"));
        assert!(text(&feed).ends_with("END:VTIMEZONE\r\nEND:VCALENDAR\r\n"));
    }

    #[test]
    fn cancelled_events_stay_until_they_end() {
        let fx = Fixture::new();
        let mut rally = pb_event("rally", "2026-06-10T18:00", "2026-06-10T20:00");
        rally.cancelled = true;
        let events = [
            view(
                fx.key(A),
                rally,
                "2026-05-01T00:00:00Z",
                "2026-06-01T00:00:00Z",
            ),
            view(
                fx.key(B_),
                pb_event("canvass", "2026-06-20T10:00", "2026-06-20T12:00"),
                "2026-05-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
            ),
        ];
        let end = at("2026-06-10T19:00:00Z");
        assert_eq!(events[0].event.end_utc, end);

        let before = fx.render(&events, &Selection::public(), "2026-06-05T00:00:00Z");
        assert_eq!(before.events, 2);
        assert!(has_line(&before, "STATUS:CANCELLED"));
        assert!(has_line(&before, "SUMMARY:Cancelled: Event rally"));
        assert!(has_line(&before, "SEQUENCE:1"));
        assert_eq!(before.stale_at, Some(end));
        assert_eq!(before.last_modified, Some(at("2026-06-01T00:00:00Z")));
        // Still there a second before its end.
        let just_before = fx.render(&events, &Selection::public(), "2026-06-10T18:59:59Z");
        assert_eq!(just_before.bytes, before.bytes);

        let after = fx.render(&events, &Selection::public(), "2026-06-10T19:00:00Z");
        assert_eq!(after.events, 1);
        assert!(!text(&after).contains("rally"));
        assert!(!text(&after).contains("CANCELLED"));
        assert_eq!(after.stale_at, None);
        // It dropped out at its end: If-Modified-Since before then must not get 304.
        assert_eq!(after.last_modified, Some(end));
        assert_ne!(after.etag, before.etag);
    }

    #[test]
    fn the_public_sees_only_public_events() {
        let fx = Fixture::new();
        let mut secret = pb_event("strategy", "2026-06-02T18:00", "2026-06-02T19:00");
        secret.visibility = pb::Visibility::Alliance as i32;
        let events = [
            view(
                fx.key(C),
                pb_event("stall", "2026-06-01T10:00", "2026-06-01T12:00"),
                "2026-05-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
            ),
            view(
                fx.key(B_),
                secret,
                "2026-05-01T00:00:00Z",
                "2026-05-20T00:00:00Z",
            ),
        ];
        let public = fx.render(&events, &Selection::public(), "2026-05-25T00:00:00Z");
        assert_eq!(public.events, 1);
        assert!(!text(&public).contains("strategy"));
        assert!(!text(&public).contains("CLASS:PRIVATE"));
        assert!(has_line(&public, "CLASS:PUBLIC"));
        assert!(has_line(
            &public,
            &format!(
                "ORGANIZER;CN=\"Left 'Unity': Wales, Co-op\":urn:accord:organisation:{}",
                fx.key(C)
            )
        ));
        // Dated by the public event only.
        assert_eq!(public.last_modified, Some(at("2026-05-01T00:00:00Z")));

        let paths = Paths {
            base: fx.paths.base.clone(),
            token: Some("tok3n".into()),
        };
        let selection = members();
        let options = FeedOptions {
            paths: &paths,
            ..fx.options(&selection)
        };
        let feed = render(&events, &options, at("2026-05-25T00:00:00Z"));
        assert_eq!(feed.events, 2);
        assert!(has_line(&feed, "CLASS:PRIVATE"));
        assert!(has_line(&feed, "X-WR-CALNAME:Test Alliance (members)"));
        assert!(has_line(
            &feed,
            &format!(
                "URL:https://calendar.example.org/m/tok3n/events/{}/strategy",
                fx.key(B_)
            )
        ));
        assert_eq!(feed.last_modified, Some(at("2026-05-20T00:00:00Z")));
    }

    #[test]
    fn filtered_feeds_are_named_after_their_filter_and_dated_by_everything() {
        let fx = Fixture::new();
        let mut in_area = pb_event("hustings", "2026-06-01T19:00", "2026-06-01T21:00");
        in_area.area = "W07000112".into();
        in_area.organisers = vec![fx.key(A).to_vec()];
        let events = [
            view(
                fx.key(B_),
                in_area,
                "2026-05-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
            ),
            view(
                fx.key(A),
                pb_event("elsewhere", "2026-06-02T19:00", "2026-06-02T21:00"),
                "2026-05-03T00:00:00Z",
                "2026-05-03T00:00:00Z",
            ),
        ];
        let selection = Selection {
            audience: Audience::Members,
            organisation: Some(fx.key(A)),
            area: Some("W07000112".into()),
        };
        let feed = fx.render(&events, &selection, "2026-05-25T00:00:00Z");
        assert_eq!(feed.events, 1);
        assert!(has_line(
            &feed,
            "X-WR-CALNAME:Test Alliance — Alpha Party — W07000112 (members)"
        ));
        assert!(has_line(&feed, "X-ACCORD-AREA:W07000112"));
        assert!(has_line(
            &feed,
            "DESCRIPTION:Organised by Plaid Ynys Môn and Alpha Party"
        ));
        // The event outside the filter dates the feed too.
        assert_eq!(feed.last_modified, Some(at("2026-05-03T00:00:00Z")));
        assert!(!text(&feed).contains("elsewhere"));
    }

    #[test]
    fn alliance_only_changes_do_not_date_the_public_feed() {
        let fx = Fixture::new();
        let mut state = State::new(fx.charter.clone());
        let stall = pb_event("stall", "2026-06-01T10:00", "2026-06-01T12:00");
        let mut secret = pb_event("strategy", "2026-06-02T18:00", "2026-06-02T19:00");
        secret.visibility = pb::Visibility::Alliance as i32;
        publish(&fx, &mut state, A, stall.clone(), "2026-05-01T00:00:00Z");
        publish(&fx, &mut state, B_, secret.clone(), "2026-05-02T00:00:00Z");
        let now = "2026-05-25T00:00:00Z";
        let public = fx.render(&state.events(), &Selection::public(), now);
        let member = fx.render(&state.events(), &members(), now);
        assert_eq!(public.last_modified, Some(at("2026-05-01T00:00:00Z")));
        assert_eq!(member.last_modified, Some(at("2026-05-02T00:00:00Z")));

        // The alliance-only event changes, and is then cancelled and over: nothing
        // the public can see moves.
        secret.title = "Strategy meeting (moved)".into();
        publish(&fx, &mut state, B_, secret.clone(), "2026-05-03T00:00:00Z");
        secret.cancelled = true;
        publish(&fx, &mut state, B_, secret, "2026-05-04T00:00:00Z");
        let later = "2026-06-03T00:00:00Z";
        let public_after = fx.render(&state.events(), &Selection::public(), later);
        assert_eq!(public_after.last_modified, public.last_modified);
        assert_eq!(public_after.etag, public.etag);
        let member_after = fx.render(&state.events(), &members(), later);
        assert_eq!(
            member_after.last_modified,
            Some(at("2026-06-02T18:00:00Z")),
            "the cancelled event's end, when it dropped out of the members' feed"
        );

        // A public event made alliance-only leaves the public feed: that is a change.
        let mut hidden = stall;
        hidden.visibility = pb::Visibility::Alliance as i32;
        publish(&fx, &mut state, A, hidden, "2026-05-05T00:00:00Z");
        let public_hidden = fx.render(&state.events(), &Selection::public(), now);
        assert_eq!(public_hidden.events, 0);
        assert_eq!(
            public_hidden.last_modified,
            Some(at("2026-05-05T00:00:00Z"))
        );
    }

    #[test]
    fn same_inputs_same_bytes_and_a_change_changes_the_etag() {
        let fx = Fixture::new();
        let make = |title: &str| {
            let mut event = pb_event("stall", "2026-06-01T10:00", "2026-06-01T12:00");
            event.title = title.into();
            event.organisers = vec![fx.key(C).to_vec(), fx.key(B_).to_vec()];
            vec![view(
                fx.key(A),
                event,
                "2026-05-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
            )]
        };
        let events = make("Street stall");
        let first = fx.render(&events, &Selection::public(), "2026-05-02T00:00:00Z");
        let again = fx.render(
            &make("Street stall"),
            &Selection::public(),
            "2026-05-02T00:00:00Z",
        );
        assert_eq!(first, again);
        // "now" decides inclusion only: it never shows in the bytes.
        let later = fx.render(&events, &Selection::public(), "2026-05-30T00:00:00Z");
        assert_eq!(later.bytes, first.bytes);

        assert_eq!(first.etag.len(), 34);
        let digest = hex::encode(Sha256::digest(&first.bytes));
        assert_eq!(first.etag, format!("\"{}\"", &digest[..32]));

        let changed = fx.render(
            &make("Street stall, 2"),
            &Selection::public(),
            "2026-05-02T00:00:00Z",
        );
        assert_ne!(changed.etag, first.etag);
        assert!(has_line(&changed, "SUMMARY:Street stall\\, 2"));
    }

    #[test]
    fn refresh_interval_is_advertised() {
        let fx = Fixture::new();
        let selection = Selection::public();
        let options = FeedOptions {
            refresh: Duration::from_secs(15 * 60),
            ..fx.options(&selection)
        };
        let feed = render(&[], &options, at("2026-05-02T00:00:00Z"));
        assert!(has_line(&feed, "REFRESH-INTERVAL;VALUE=DURATION:PT15M"));
        assert!(has_line(&feed, "X-PUBLISHED-TTL:PT15M"));
    }
}
