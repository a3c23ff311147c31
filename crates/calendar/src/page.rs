//! The calendar's web pages, rendered as complete HTML5 documents: the calendar
//! (upcoming events by day, filters, subscribe links), an event's detail page, the
//! members' clash board and a plain message page (404 and the like).
//!
//! Every page is self-contained: one inline stylesheet, system fonts, no scripts, no
//! images and no link to another site; the only absolute URLs are the feed addresses
//! built from [`Paths::base`]. Text is escaped by `maud`. All times are shown in
//! Europe/London, with the event's own zone alongside when it differs; on the days
//! the clocks change, times say BST or GMT. All-day events show their dates and
//! "all day".
//!
//! A page is a members' page when [`Paths::token`] is set: it carries the "Members"
//! badge, marks alliance-only events, links to the clash board and asks not to be
//! indexed. A public page (no token) shows public events only whatever the
//! selection says, and never links to a members' path.

use accord_core::body::{Event, IntentionStatus, Visibility, day_start};
use accord_core::clash::{Clash, ClashState};
use accord_core::council;
use accord_core::state::EventView;
use chrono::{DateTime, NaiveDate, Offset, SecondsFormat, TimeZone, Utc};
use chrono_tz::Europe::London;
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{Audience, Directory, Paths, Selection, event_uid};

/// The one stylesheet, inlined in every page.
const CSS: &str = include_str!("page.css");

/// A clash closing within this many days is marked urgent.
const URGENT_DAYS: i64 = 7;

/// What every page needs besides its own content.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    pub alliance_name: &'a str,
    pub directory: &'a Directory,
    /// With a token, every link is a member's link and the page is a members' page.
    pub paths: &'a Paths,
    pub now: DateTime<Utc>,
}

impl PageContext<'_> {
    fn members(&self) -> bool {
        self.paths.token.is_some()
    }

    /// Members' pages show alliance-only events; public ones never do.
    fn audience(&self) -> Audience {
        if self.members() {
            Audience::Members
        } else {
            Audience::Public
        }
    }

    /// Everything the reader may see, unfiltered.
    fn everything(&self) -> Selection {
        Selection {
            audience: self.audience(),
            organisation: None,
            area: None,
        }
    }

    /// The unfiltered calendar page.
    fn home(&self) -> String {
        self.paths.page(&self.everything(), self.directory)
    }

    fn today(&self) -> NaiveDate {
        london(self.now).date_naive()
    }
}

/// The calendar page: upcoming events (end_utc > now, cancelled ones shown struck
/// through with "Cancelled" until past), grouped by day in Europe/London, with the
/// filter form and subscribe links for the selected feed and the whole alliance feed.
///
/// `events` = `State::events()`. `areas` = the distinct area codes of events the
/// audience may see (for the filter's `<select>`), sorted. The page's audience
/// follows `ctx.paths`: without a token only public events are shown, even if
/// `selection` asks for members' events. An event that started before today and is
/// still going on is listed under today. The form's "All …" options submit an empty
/// value (`?org=&area=`), which the server reads as no filter.
pub fn calendar(
    ctx: &PageContext<'_>,
    selection: &Selection,
    events: &[EventView],
    areas: &[String],
) -> String {
    let selection = Selection {
        audience: ctx.audience(),
        ..selection.clone()
    };
    let days = upcoming_by_day(ctx, &selection, events);
    let filtered = selection.organisation.is_some() || selection.area.is_some();
    let title = if filtered {
        format!("Calendar: {}", describe(ctx, &selection))
    } else {
        "Calendar".to_owned()
    };
    let main = html! {
        h1 {
            @if ctx.members() { "Members' calendar" } @else { "Calendar" }
        }
        p.lede {
            "Upcoming events of " (ctx.alliance_name) ". All times are UK time."
        }
        p.skip-to-subscribe {
            a href="#subscribe" { "Subscribe to this calendar" }
        }
        (filter_form(ctx, &selection, areas))
        @if days.is_empty() {
            section.empty aria-labelledby="empty-heading" {
                h2 #empty-heading { "No upcoming events" }
                @if filtered {
                    p { "Nothing upcoming matches these filters. Try another organisation or area." }
                    p.back { a href=(ctx.home()) { "Show all events" } }
                } @else {
                    p { "Nothing is scheduled yet. Subscribe below and new events will appear in your calendar app." }
                }
            }
        } @else {
            @for (day, list) in &days {
                (day_section(ctx, *day, list))
            }
        }
        (subscribe_calendar(ctx, &selection))
    };
    layout(ctx, &title, Current::Calendar, main)
}

/// One event's detail page: title, when in Europe/London with the date (and in the
/// event's own zone if different), venue, area, all organisers by name, the
/// description with its line breaks, its status, and "Add to calendar" links: the
/// whole feed and each organiser's feed.
///
/// On a public page an alliance-only event is not shown: the page says "Not found",
/// as [`message`] would.
pub fn event(ctx: &PageContext<'_>, event: &EventView) -> String {
    let e = &event.event;
    if e.visibility == Visibility::Alliance && !ctx.members() {
        return not_found(ctx);
    }
    let members_only = e.visibility == Visibility::Alliance;
    let ended = e.end_utc <= ctx.now;
    let status = if e.cancelled {
        "Cancelled"
    } else if ended {
        "Ended"
    } else if e.start_utc <= ctx.now {
        "Happening now"
    } else {
        "Scheduled"
    };
    let main = html! {
        p.back { a href=(ctx.home()) { "← All events" } }
        article.event-detail.cancelled[e.cancelled].members-only[members_only]
            data-event-uid=(event_uid(event)) {
            h1 { (e.title) }
            (tags(e.cancelled, members_only, ended && !e.cancelled))
            @if e.cancelled {
                p.notice.notice-cancelled { "This event has been cancelled." }
            } @else if ended {
                p.notice { "This event has ended." }
            }
            dl.details {
                dt { "When" }
                dd { (when(e, true)) }
                @if e.time_zone != London && !e.all_day {
                    dt { "Local time" }
                    dd {
                        (range(e.start_utc.with_timezone(&e.time_zone), e.end_utc.with_timezone(&e.time_zone), true))
                        " (" (e.time_zone.name()) ")"
                    }
                }
                dt { "Where" }
                dd {
                    @if e.venue.trim().is_empty() { "To be announced" } @else { (e.venue) }
                }
                @if let Some(area) = &e.area {
                    dt { "Area" }
                    dd { (council::area_label(area)) }
                }
                dt { "Organised by" }
                dd {
                    ul.organiser-list {
                        @for key in &event.organisers {
                            li { (ctx.directory.name(key)) }
                        }
                    }
                }
                dt { "Status" }
                dd.status { (status) }
                @if ctx.members() {
                    dt { "Who can see it" }
                    dd {
                        @if members_only { "Members only" } @else { "Everyone (public)" }
                    }
                }
            }
            @if !e.description.trim().is_empty() {
                section.description aria-labelledby="about" {
                    h2 #about { "About this event" }
                    (paragraphs(&e.description))
                }
            }
        }
        section #subscribe aria-labelledby="subscribe-heading" {
            h2 #subscribe-heading { "Add to calendar" }
            (subscribe_help(ctx))
            (feed_block(ctx, &ctx.everything(), &whole_feed_name(ctx), "feed-all"))
            @for key in &event.organisers {
                @if let Some(org) = ctx.directory.get(key) {
                    (feed_block(
                        ctx,
                        &Selection { organisation: Some(org.key), ..ctx.everything() },
                        &format!("Events by {}", org.name),
                        &format!("feed-org-{}", org.slug),
                    ))
                }
            }
        }
    };
    layout(ctx, &e.title, Current::Other, main)
}

/// The members' clash board: standing clashes that are not resolved (open,
/// potential, pending, breached), soonest close of nominations first (unknown
/// deadlines last), each with the ballot, its state, every party with its status and
/// candidate, the close of nominations (in Europe/London, and "in N days" /
/// "closed"), the deadline rule, and whether a resolution is recorded.
///
/// The board is for members: on a public page (no token) it shows no clash and
/// says so.
pub fn clash_board(ctx: &PageContext<'_>, clashes: &[Clash]) -> String {
    if !ctx.members() {
        return message(
            ctx,
            "Members only",
            "The clash board is for members of the alliance. Use the link your organisation gave you.",
        );
    }
    let mut standing: Vec<&Clash> = clashes
        .iter()
        .filter(|c| c.state != ClashState::Resolved)
        .collect();
    standing.sort_by(|a, b| {
        let key = |c: &Clash| (c.nominations_close.is_none(), c.nominations_close);
        key(a).cmp(&key(b)).then_with(|| a.ballot.cmp(&b.ballot))
    });
    let (closed, open): (Vec<&Clash>, Vec<&Clash>) = standing
        .iter()
        .partition(|c| c.nominations_close.is_some_and(|t| t <= ctx.now));
    let main = html! {
        h1 { "Clash board" }
        p.lede {
            "Ballots where allies may split the vote, soonest close of nominations first. "
            "Resolved clashes are not listed."
        }
        @if standing.is_empty() {
            section.empty aria-labelledby="empty-heading" {
                h2 #empty-heading { "No clashes" }
                p { "No two allies are standing, or thinking of standing, in the same ballot without a resolution that has been honoured." }
            }
        } @else {
            // The headline counts what can still be acted on: clashes whose
            // nominations have not closed (or whose deadline is not known).
            p.count {
                (open.len()) @if open.len() == 1 { " clash needs" } @else { " clashes need" } " attention"
                @if !closed.is_empty() {
                    " (and " (closed.len()) " whose nominations have closed, listed below)"
                }
                "."
            }
            @for clash in &open {
                (clash_article(ctx, clash))
            }
            @if !closed.is_empty() {
                section.closed-clashes aria-labelledby="closed-heading" {
                    h2 #closed-heading { "Nominations closed" }
                    p { "These ballots' nominations have closed: what stands now is on the ballot paper." }
                    @for clash in &closed {
                        (clash_article(ctx, clash))
                    }
                }
            }
        }
    };
    layout(ctx, "Clash board", Current::Clashes, main)
}

/// A plain page for 404 and the like: `title` as the heading (e.g. "Not found"),
/// `text` below it, and a link back to the calendar.
pub fn message(ctx: &PageContext<'_>, title: &str, text: &str) -> String {
    let main = html! {
        h1 { (title) }
        p { (text) }
        p.back { a href=(ctx.home()) { "Back to the calendar" } }
    };
    layout(ctx, title, Current::Other, main)
}

fn not_found(ctx: &PageContext<'_>) -> String {
    message(
        ctx,
        "Not found",
        "There is no such page. The event may have been removed, or the link mistyped.",
    )
}

/// Which navigation link is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Current {
    Calendar,
    Clashes,
    Other,
}

/// The document around a page's `<main>`.
fn layout(ctx: &PageContext<'_>, title: &str, current: Current, main: Markup) -> String {
    let members = ctx.members();
    let here = |page: Current| (page == current).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if members {
                    meta name="robots" content="noindex";
                }
                meta name="color-scheme" content="light dark";
                title { (title) " — " (ctx.alliance_name) }
                // An empty icon, so browsers do not ask the server for /favicon.ico.
                link rel="icon" href="data:,";
                style { (PreEscaped(CSS)) }
            }
            body {
                a.skip-link href="#main" { "Skip to main content" }
                header.site-header {
                    div.wrap {
                        p.site-name {
                            a href=(ctx.home()) { (ctx.alliance_name) }
                            @if members {
                                span.badge.members-badge { "Members" }
                            }
                        }
                        nav aria-label="Site" {
                            ul {
                                li { a href=(ctx.home()) aria-current=[here(Current::Calendar)] { "Calendar" } }
                                @if members {
                                    li { a href=(ctx.paths.clashes()) aria-current=[here(Current::Clashes)] { "Clash board" } }
                                }
                            }
                        }
                    }
                }
                main #main .wrap tabindex="-1" {
                    (main)
                }
                footer.site-footer {
                    div.wrap {
                        p { "All times are UK time (Europe/London)." }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The events the page lists, by day in Europe/London: those in `selection` that
/// have not ended, each under the day it starts or today if it started earlier.
fn upcoming_by_day<'e>(
    ctx: &PageContext<'_>,
    selection: &Selection,
    events: &'e [EventView],
) -> Vec<(NaiveDate, Vec<&'e EventView>)> {
    let mut shown: Vec<&EventView> = events
        .iter()
        .filter(|e| e.event.end_utc > ctx.now && selection.includes(e, ctx.now))
        .collect();
    shown.sort_by_key(|e| (e.event.start_utc, e.event.end_utc));
    let today = ctx.today();
    let mut days: Vec<(NaiveDate, Vec<&EventView>)> = Vec::new();
    for e in shown {
        // An all-day event is on its own dates, whatever its zone.
        let first = if e.event.all_day {
            e.event.first_day()
        } else {
            london(e.event.start_utc).date_naive()
        };
        let day = first.max(today);
        match days.last_mut() {
            Some((d, list)) if *d == day => list.push(e),
            _ => days.push((day, vec![e])),
        }
    }
    days
}

fn filter_form(ctx: &PageContext<'_>, selection: &Selection, areas: &[String]) -> Markup {
    let chosen_area = selection.area.as_deref();
    // An area chosen in the URL stays selectable even if no event has it now.
    let extra_area = chosen_area.filter(|a| !areas.iter().any(|x| x == a));
    let filtered = selection.organisation.is_some() || selection.area.is_some();
    html! {
        form #filters method="get" action=(ctx.home()) aria-label="Filter events" {
            div.field {
                label for="filter-org" { "Organisation" }
                select #filter-org name="org" {
                    option value="" selected[selection.organisation.is_none()] { "All organisations" }
                    @for org in ctx.directory.orgs() {
                        option value=(org.slug) selected[selection.organisation == Some(org.key)] { (org.name) }
                    }
                }
            }
            div.field {
                label for="filter-area" { "Area" }
                select #filter-area name="area" {
                    option value="" selected[chosen_area.is_none()] { "All areas" }
                    @if let Some(area) = extra_area {
                        option value=(area) selected { (council::area_label(area)) }
                    }
                    @for area in areas {
                        option value=(area) selected[chosen_area == Some(area.as_str())] { (council::area_label(area)) }
                    }
                }
            }
            div.field {
                button type="submit" { "Show events" }
            }
        }
        p.applied {
            @if filtered {
                span { "Showing " strong { (describe(ctx, selection)) } "." }
                " "
                a.clear href=(ctx.home()) { "Clear filters" }
            } @else {
                "Showing all upcoming events."
            }
        }
    }
}

/// "Events by Alpha Party in E05011234", "All events".
fn describe(ctx: &PageContext<'_>, selection: &Selection) -> String {
    let org = selection.organisation.map(|k| ctx.directory.name(&k));
    match (org, &selection.area) {
        (None, None) => "all events".to_owned(),
        (Some(o), None) => format!("events by {o}"),
        (None, Some(a)) => format!("events in {a}"),
        (Some(o), Some(a)) => format!("events by {o} in {a}"),
    }
}

fn day_section(ctx: &PageContext<'_>, day: NaiveDate, events: &[&EventView]) -> Markup {
    let iso = day.format("%Y-%m-%d").to_string();
    let heading = format!("day-{iso}");
    let today = ctx.today();
    let relative = if day == today {
        Some("Today")
    } else if today.succ_opt() == Some(day) {
        Some("Tomorrow")
    } else {
        None
    };
    html! {
        section.day data-day=(iso) aria-labelledby=(heading) {
            h2 #(heading) {
                time datetime=(iso) { (day.format("%A %-d %B %Y")) }
                @if let Some(r) = relative {
                    " " span.relative { (r) }
                }
            }
            @for e in events {
                (event_article(ctx, e))
            }
        }
    }
}

fn event_article(ctx: &PageContext<'_>, event: &EventView) -> Markup {
    let e = &event.event;
    let members_only = e.visibility == Visibility::Alliance;
    html! {
        article.event.cancelled[e.cancelled].members-only[members_only]
            data-event-uid=(event_uid(event)) {
            h3 { a href=(ctx.paths.event(event)) { (e.title) } }
            (tags(e.cancelled, members_only, false))
            dl.details {
                dt { "When" }
                dd { (when_short(e)) }
                @if !e.venue.trim().is_empty() {
                    dt { "Where" }
                    dd { (e.venue) }
                }
                @if let Some(area) = &e.area {
                    dt { "Area" }
                    dd { (council::area_label(area)) }
                }
            }
            p.organisers { "Organised by " (names(ctx, &event.organisers)) }
        }
    }
}

/// The time range in a list: London times, and the event's own if its zone differs.
fn when_short(e: &Event) -> Markup {
    html! {
        (when(e, false))
        @if e.time_zone != London && !e.all_day {
            " "
            span.other-zone {
                "("
                (range(e.start_utc.with_timezone(&e.time_zone), e.end_utc.with_timezone(&e.time_zone), false))
                " " (e.time_zone.name()) ")"
            }
        }
    }
}

/// When an event is: its dates and "all day" for an all-day event, else its times in
/// London ([`range`]).
fn when(e: &Event, with_date: bool) -> Markup {
    if !e.all_day {
        return range(london(e.start_utc), london(e.end_utc), with_date);
    }
    let (first, last) = (e.first_day(), e.last_day());
    let format = if with_date {
        "%A %-d %B %Y"
    } else {
        "%a %-d %b"
    };
    html! {
        @if first == last {
            @if with_date {
                time datetime=(first.format("%Y-%m-%d")) { (first.format(format)) } ", "
            }
        } @else {
            time datetime=(first.format("%Y-%m-%d")) { (first.format(format)) }
            " – "
            time datetime=(last.format("%Y-%m-%d")) { (last.format(format)) } ", "
        }
        span.all-day { "all day" }
    }
}

/// "18:30–20:00"; across days "Sat 14 Mar 18:30 – Sun 15 Mar 02:00". With
/// `with_date`, the date is always given in full. On a day the clocks change, or
/// across a change, each time says its zone ("01:30 BST", "01:30 GMT"), since the
/// same local time may happen twice or not at all.
fn range(start: DateTime<Tz>, end: DateTime<Tz>, with_date: bool) -> Markup {
    let same_day = start.date_naive() == end.date_naive();
    let (first, second, dash) = match (same_day, with_date) {
        (true, false) => ("%H:%M", "%H:%M", "–"),
        (true, true) => ("%A %-d %B %Y, %H:%M", "%H:%M", "–"),
        (false, false) => ("%a %-d %b %H:%M", "%a %-d %b %H:%M", " – "),
        (false, true) => ("%A %-d %B %Y, %H:%M", "%A %-d %B %Y, %H:%M", " – "),
    };
    let zoned = start.offset().fix() != end.offset().fix()
        || clocks_change_on(&start)
        || clocks_change_on(&end);
    let (first, second) = if zoned {
        (format!("{first} %Z"), format!("{second} %Z"))
    } else {
        (first.to_owned(), second.to_owned())
    };
    html! {
        time datetime=(rfc3339(start)) { (start.format(&first)) }
        (dash)
        time datetime=(rfc3339(end)) { (end.format(&second)) }
    }
}

/// Whether the clocks change on `t`'s local day: its offset at the start of the day
/// differs from that at the start of the next.
fn clocks_change_on(t: &DateTime<Tz>) -> bool {
    let zone = t.timezone();
    let day = t.date_naive();
    let offset_at = |d: NaiveDate| {
        zone.offset_from_utc_datetime(&day_start(d, zone).naive_utc())
            .fix()
    };
    day.succ_opt()
        .is_some_and(|next| offset_at(day) != offset_at(next))
}

fn tags(cancelled: bool, members_only: bool, ended: bool) -> Markup {
    html! {
        @if cancelled || members_only || ended {
            p.tags {
                @if cancelled { span.tag.tag-cancelled { "Cancelled" } }
                @if ended { span.tag.tag-ended { "Ended" } }
                @if members_only { span.tag.tag-members { "Members only" } }
            }
        }
    }
}

/// "A", "A and B", "A, B and C".
fn names(ctx: &PageContext<'_>, keys: &[accord_core::PublicId]) -> String {
    let names: Vec<String> = keys.iter().map(|k| ctx.directory.name(k)).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Paragraphs at blank lines, `<br>` at single line breaks.
fn paragraphs(text: &str) -> Markup {
    let text = text.replace("\r\n", "\n");
    let paras: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    html! {
        @for para in paras {
            p {
                @for (i, line) in para.lines().enumerate() {
                    @if i > 0 { br; }
                    (line)
                }
            }
        }
    }
}

fn whole_feed_name(ctx: &PageContext<'_>) -> String {
    if ctx.members() {
        format!("All {} events, members' and public", ctx.alliance_name)
    } else {
        format!("All {} events", ctx.alliance_name)
    }
}

fn subscribe_help(ctx: &PageContext<'_>) -> Markup {
    html! {
        p.help {
            "“Subscribe in your calendar app” opens Apple Calendar, Outlook and most phone calendars, which then keep the events up to date. "
            "For Google Calendar, copy the feed address and paste it in Google Calendar under "
            strong { "Other calendars → + → From URL" } "."
        }
        @if ctx.members() {
            p.help {
                strong { "These addresses contain your personal key." }
                " Keep them to yourself: anyone with them can see members-only events."
            }
        }
    }
}

/// The calendar page's subscribe section: the current selection (if filtered) and
/// the whole calendar.
fn subscribe_calendar(ctx: &PageContext<'_>, selection: &Selection) -> Markup {
    let everything = ctx.everything();
    html! {
        section #subscribe aria-labelledby="subscribe-heading" {
            h2 #subscribe-heading { "Subscribe" }
            (subscribe_help(ctx))
            @if *selection != everything {
                (feed_block(ctx, selection, &capitalise(&describe(ctx, selection)), "feed-selected"))
            }
            (feed_block(ctx, &everything, &whole_feed_name(ctx), "feed-all"))
        }
    }
}

/// One feed: a webcal:// link and its https address to copy.
fn feed_block(ctx: &PageContext<'_>, selection: &Selection, name: &str, id: &str) -> Markup {
    html! {
        div.feed data-feed=(ctx.paths.feed(selection, ctx.directory)) {
            h3 { (name) }
            p {
                a.button.webcal href=(ctx.paths.webcal_url(selection, ctx.directory)) {
                    "Subscribe in your calendar app"
                    span.visually-hidden { ": " (name) }
                }
            }
            p {
                label for=(id) { "Feed address" }
                input #(id) type="text" readonly
                    value=(ctx.paths.feed_url(selection, ctx.directory))
                    spellcheck="false" autocomplete="off";
            }
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn clash_article(ctx: &PageContext<'_>, clash: &Clash) -> Markup {
    let state = clash.state;
    let closed = clash.nominations_close.is_some_and(|t| t <= ctx.now);
    let urgent = clash.nominations_close.is_some_and(|t| {
        !closed && (london(t).date_naive() - ctx.today()).num_days() <= URGENT_DAYS
    });
    let mut class = format!("clash state-{}", state.as_str());
    if urgent {
        class.push_str(" urgent");
    }
    if closed {
        class.push_str(" closed");
    }
    let heading = format!("ballot-{}", clash.ballot);
    let poll = clash.ballot.poll_date();
    html! {
        article class=(class)
            data-ballot=(clash.ballot) data-state=(state.as_str()) aria-labelledby=(heading) {
            h2 #(heading) {
                span.ballot-name { (council::ballot_name(&clash.ballot)) }
                " " code.ballot-id { (clash.ballot) }
            }
            p.tags {
                span.tag.tag-state { (state_label(state)) }
                @if clash.nominations_close.is_some() && clash.nation.is_none() {
                    " " span.tag.tag-nation-unknown { "Nation unknown: earliest possible deadline" }
                }
            }
            dl.details {
                dt { "State" }
                dd { (state_explained(state)) }
                dt { "Polling day" }
                dd { time datetime=(poll.format("%Y-%m-%d")) { (poll.format("%A %-d %B %Y")) } }
                dt { "Close of nominations" }
                dd.nominations-close {
                    @if let Some(close) = clash.nominations_close {
                        time datetime=(rfc3339(london(close))) {
                            (london(close).format("%H:%M, %A %-d %B %Y"))
                        }
                        " " span.relative { "(" (relative_close(ctx, close)) ")" }
                    } @else {
                        "Not known"
                    }
                }
                dt { "Rule" }
                dd.rule { (clash.deadline_rule) }
                dt { "Resolution" }
                dd.resolution {
                    @if let Some(id) = clash.resolution {
                        "Recorded (entry " code { (id.short()) } ")"
                    } @else {
                        "None recorded"
                    }
                }
            }
            h3 { "Parties" }
            ul.parties {
                @for party in &clash.parties {
                    li.party data-organisation=(party.organisation) {
                        span.party-name { (ctx.directory.name(&party.organisation)) }
                        " "
                        span.party-status { (status_label(party.status)) }
                        @if let Some(candidate) = &party.candidate {
                            " "
                            span.candidate { "Candidate: " (candidate) }
                        }
                    }
                }
            }
        }
    }
}

/// "closed", "today", "tomorrow", "in N days" (calendar days in Europe/London).
fn relative_close(ctx: &PageContext<'_>, close: DateTime<Utc>) -> String {
    if close <= ctx.now {
        return "closed".to_owned();
    }
    match (london(close).date_naive() - ctx.today()).num_days() {
        0 => "today".to_owned(),
        1 => "tomorrow".to_owned(),
        n => format!("in {n} days"),
    }
}

fn state_label(state: ClashState) -> &'static str {
    match state {
        ClashState::Open => "Open",
        ClashState::Potential => "Potential",
        ClashState::Pending => "Pending",
        ClashState::Resolved => "Resolved",
        ClashState::Breached => "Breached",
    }
}

fn state_explained(state: ClashState) -> &'static str {
    match state {
        ClashState::Open => "Open: two or more allies intend to stand and no resolution settles it",
        ClashState::Potential => "Potential: allies are considering standing",
        ClashState::Pending => {
            "Pending: a resolution is recorded; someone it names has not yet stood aside"
        }
        ClashState::Resolved => "Resolved",
        ClashState::Breached => {
            "Breached: someone the resolution named to stand aside has declared again"
        }
    }
}

fn status_label(status: Option<IntentionStatus>) -> &'static str {
    match status {
        Some(IntentionStatus::Considering) => "Considering",
        Some(IntentionStatus::Intends) => "Intends to stand",
        Some(IntentionStatus::Confirmed) => "Confirmed",
        Some(IntentionStatus::Withdrawn) => "Withdrawn",
        Some(IntentionStatus::StoodAside) => "Stood aside",
        None => "Named in the resolution; no declaration",
    }
}

fn london(t: DateTime<Utc>) -> DateTime<Tz> {
    t.with_timezone(&London)
}

/// RFC 3339 with the zone's offset, to the second: "2026-07-01T00:30:00+01:00".
fn rfc3339<Z: TimeZone>(t: DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use accord_core::ballot::BallotId;
    use accord_core::charter::{CharterDoc, CharterMember, CharterSecretary, Rules};
    use accord_core::clash::ClashParty;
    use accord_core::{Charter, EntryId, PublicId};
    use chrono::NaiveDateTime;

    use super::*;

    const BASE: &str = "https://cal.example.org";

    fn key(n: u8) -> PublicId {
        PublicId::from_bytes([n; 32])
    }

    fn directory() -> Directory {
        let member = |name: &str, n: u8| CharterMember {
            name: name.into(),
            key: key(n),
            ec_id: None,
        };
        let doc = CharterDoc {
            accord_charter: 1,
            name: "Test Alliance".into(),
            members: vec![member("Alpha Party", 1), member("Beta & Co <Left>", 2)],
            secretaries: vec![CharterSecretary {
                name: "Secretariat".into(),
                key: key(3),
            }],
            rules: Rules::default(),
        };
        Directory::from_charter(&Charter::from_bytes(doc.to_file_bytes()).unwrap())
    }

    fn public_paths() -> Paths {
        Paths {
            base: BASE.into(),
            token: None,
        }
    }

    fn member_paths() -> Paths {
        Paths {
            base: BASE.into(),
            token: Some("s3cret".into()),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
    }

    /// 2026-07-01 12:00 UTC (13:00 in London, a Wednesday).
    fn now() -> DateTime<Utc> {
        utc("2026-07-01 12:00")
    }

    fn ctx<'a>(dir: &'a Directory, paths: &'a Paths) -> PageContext<'a> {
        PageContext {
            alliance_name: "Test Alliance",
            directory: dir,
            paths,
            now: now(),
        }
    }

    /// A public event by Alpha Party in London time, `start` and `end` in UTC.
    fn ev(uid: &str, title: &str, start: &str, end: &str) -> EventView {
        let (start_utc, end_utc) = (utc(start), utc(end));
        EventView {
            author: key(1),
            event: Event {
                uid: uid.into(),
                title: title.into(),
                description: String::new(),
                start: start_utc.with_timezone(&London).naive_local(),
                end: end_utc.with_timezone(&London).naive_local(),
                time_zone: London,
                start_utc,
                end_utc,
                venue: "Town Hall".into(),
                area: Some("E05011234".into()),
                organisers: vec![],
                visibility: Visibility::Public,
                cancelled: false,
                all_day: false,
            },
            organisers: vec![key(1)],
            sequence: 0,
            first_published_ms: 0,
            last_modified_ms: 0,
            last_public_change_ms: Some(0),
            entry: EntryId::from_bytes([9; 32]),
        }
    }

    fn members_only(mut e: EventView) -> EventView {
        e.event.visibility = Visibility::Alliance;
        e.last_public_change_ms = None;
        e
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    /// The `<article …>` opening tag of the event with this uid, or None.
    fn article_tag<'h>(html: &'h str, e: &EventView) -> Option<&'h str> {
        let marker = format!("data-event-uid=\"{}\"", event_uid(e));
        let at = html.find(&marker)?;
        let open = html[..at].rfind("<article")?;
        let close = at + html[at..].find('>')?;
        Some(&html[open..=close])
    }

    /// The text of the day section `day` (YYYY-MM-DD), up to its `</section>`.
    fn day_of<'h>(html: &'h str, day: &str) -> Option<&'h str> {
        let at = html.find(&format!("data-day=\"{day}\""))?;
        let end = at + html[at..].find("</section>")?;
        Some(&html[at..end])
    }

    /// Every page is a whole document with the required head and no script, and
    /// names no other site: the only absolute http(s) URLs are under `BASE`.
    fn check_document(html: &str) {
        assert!(
            html.starts_with("<!DOCTYPE html><html lang=\"en-GB\">"),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
            )
        );
        assert!(html.contains(r#"<meta name="referrer" content="no-referrer">"#));
        assert!(html.contains(r##"<a class="skip-link" href="#main">"##));
        assert!(html.contains(r#"id="main" tabindex="-1">"#));
        assert!(html.ends_with("</html>"));
        // ASCII lowercasing keeps byte offsets, so `at` indexes `html` too.
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "a page has a script");
        assert!(!lower.contains("<img"), "a page has an image");
        assert!(!lower.contains("@import") && !lower.contains("url("));
        for (at, _) in lower.match_indices("http") {
            let rest = &html[at..];
            assert!(
                rest.starts_with(&format!("{BASE}/")),
                "a link to another host: {}",
                &rest[..rest.len().min(60)]
            );
        }
    }

    #[test]
    fn hostile_text_is_escaped() {
        let dir = directory();
        let paths = member_paths();
        let mut e = ev(
            "x",
            "<script>alert(1)</script>",
            "2026-07-02 17:00",
            "2026-07-02 19:00",
        );
        e.event.venue = "\"><img src=x onerror=alert(2)>".into();
        e.event.description = "<b>bold</b> & <i>\n\"quoted\"".into();
        e.event.area = Some("<E05>".into());
        e.organisers.push(key(2));
        let ctx = ctx(&dir, &paths);
        let list = calendar(
            &ctx,
            &Selection::public(),
            std::slice::from_ref(&e),
            &["<E05>".into()],
        );
        let detail = event(&ctx, &e);
        for html in [&list, &detail] {
            check_document(html);
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
            assert!(html.contains("Beta &amp; Co &lt;Left&gt;"));
            assert!(!html.contains("<E05>"));
        }
        assert!(detail.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;<br>&quot;quoted&quot;"));
        assert!(
            detail.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; — Test Alliance</title>")
        );
    }

    #[test]
    fn days_are_london_days() {
        let dir = directory();
        let paths = public_paths();
        // 23:30 UTC on 4 July is 00:30 BST on Sunday 5 July.
        let late = ev("late", "Late", "2026-07-04 23:30", "2026-07-05 01:00");
        let early = ev("early", "Early", "2026-07-04 18:00", "2026-07-04 19:00");
        let today = ev("today", "Today's", "2026-07-01 17:30", "2026-07-01 19:00");
        let tomorrow = ev(
            "tomorrow",
            "Tomorrow's",
            "2026-07-01 23:00",
            "2026-07-02 00:00",
        );
        // Started yesterday, still going on: listed under today.
        let ongoing = ev("ongoing", "Camp", "2026-06-30 08:00", "2026-07-03 16:00");
        let html = calendar(
            &ctx(&dir, &paths),
            &Selection::public(),
            &[
                ongoing.clone(),
                today.clone(),
                tomorrow.clone(),
                early.clone(),
                late.clone(),
            ],
            &[],
        );
        check_document(&html);
        let sat = day_of(&html, "2026-07-04").unwrap();
        let sun = day_of(&html, "2026-07-05").unwrap();
        assert!(sat.contains("Saturday 4 July 2026") && sat.contains(">Early<"));
        assert!(!sat.contains(">Late<"));
        assert!(sun.contains("Sunday 5 July 2026") && sun.contains(">Late<"));
        assert!(sun.contains(r#"<time datetime="2026-07-05T00:30:00+01:00">00:30</time>–<time datetime="2026-07-05T02:00:00+01:00">02:00</time>"#));
        let wed = day_of(&html, "2026-07-01").unwrap();
        assert!(wed.contains("Today") && wed.contains(">Today's<") && wed.contains(">Camp<"));
        assert!(wed.contains(
            r#">Tue 30 Jun 09:00</time> – <time datetime="2026-07-03T17:00:00+01:00">Fri 3 Jul 17:00</time>"#
        ));
        let thu = day_of(&html, "2026-07-02").unwrap();
        assert!(thu.contains("Tomorrow") && thu.contains(">Tomorrow's<"));
        assert!(!sat.contains("Today") && !sat.contains("Tomorrow"));
        // Days in order, each once; events within a day by start.
        let order: Vec<usize> = ["2026-07-01", "2026-07-02", "2026-07-04", "2026-07-05"]
            .iter()
            .map(|d| html.find(&format!("data-day=\"{d}\"")).unwrap())
            .collect();
        assert!(order.is_sorted());
        assert_eq!(count(&html, "data-day="), 4);
        assert!(html.find(">Camp<").unwrap() < html.find(">Today's<").unwrap());
    }

    /// An all-day event of the London days `first` to `last` (inclusive).
    fn all_day(uid: &str, title: &str, first: &str, last: &str) -> EventView {
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let after = day(last).succ_opt().unwrap();
        let mut e = ev(uid, title, "2026-01-01 00:00", "2026-01-01 01:00");
        e.event.all_day = true;
        e.event.start = day(first).and_time(chrono::NaiveTime::MIN);
        e.event.end = after.and_time(chrono::NaiveTime::MIN);
        e.event.start_utc = day_start(day(first), London);
        e.event.end_utc = day_start(after, London);
        e
    }

    #[test]
    fn all_day_events_show_their_dates_and_all_day() {
        let dir = directory();
        let paths = public_paths();
        let fete = all_day("fete", "Fete", "2026-07-04", "2026-07-04");
        let camp = all_day("camp", "Camp", "2026-07-10", "2026-07-12");
        let html = calendar(
            &ctx(&dir, &paths),
            &Selection::public(),
            &[fete.clone(), camp.clone()],
            &[],
        );
        check_document(&html);
        let sat = day_of(&html, "2026-07-04").unwrap();
        assert!(sat.contains(">Fete<"));
        assert!(sat.contains(r#"<dd><span class="all-day">all day</span></dd>"#));
        let fri = day_of(&html, "2026-07-10").unwrap();
        assert!(fri.contains(
            r#"<time datetime="2026-07-10">Fri 10 Jul</time> – <time datetime="2026-07-12">Sun 12 Jul</time>, <span class="all-day">all day</span>"#
        ));
        assert!(
            !html.contains("00:00"),
            "no midnight times for all-day events"
        );

        let page = event(&ctx(&dir, &paths), &fete);
        check_document(&page);
        assert!(page.contains(
            r#"<time datetime="2026-07-04">Saturday 4 July 2026</time>, <span class="all-day">all day</span>"#
        ));
        let page = event(&ctx(&dir, &paths), &camp);
        assert!(page.contains(
            r#"<time datetime="2026-07-10">Friday 10 July 2026</time> – <time datetime="2026-07-12">Sunday 12 July 2026</time>, <span class="all-day">all day</span>"#
        ));
        // An all-day event in another zone is still on its own dates, with no
        // "local time" line.
        let mut paris = all_day("paris", "Paris", "2026-07-10", "2026-07-10");
        paris.event.time_zone = chrono_tz::Europe::Paris;
        let page = event(&ctx(&dir, &paths), &paris);
        assert!(page.contains(r#"<time datetime="2026-07-10">Friday 10 July 2026</time>"#));
        assert!(!page.contains("Europe/Paris"));
    }

    #[test]
    fn times_on_the_nights_the_clocks_change_say_bst_or_gmt() {
        let dir = directory();
        let paths = public_paths();
        let now = utc("2026-03-01 12:00");
        let ctx = PageContext {
            now,
            ..ctx(&dir, &paths)
        };
        // 00:30 GMT to 03:00 BST on 29 March 2026 (clocks go forward at 01:00 GMT).
        let spring = ev("spring", "Spring", "2026-03-29 00:30", "2026-03-29 02:00");
        // 01:30 BST and 01:30 GMT on 25 October 2026: the hour that happens twice.
        let autumn = ev("autumn", "Autumn", "2026-10-25 00:30", "2026-10-25 01:30");
        // An ordinary night: no zone names.
        let plain = ev("plain", "Plain", "2026-04-04 18:00", "2026-04-04 20:00");
        let html = calendar(
            &ctx,
            &Selection::public(),
            &[spring.clone(), plain.clone(), autumn.clone()],
            &[],
        );
        check_document(&html);
        assert!(html.contains(
            r#"<time datetime="2026-03-29T00:30:00+00:00">00:30 GMT</time>–<time datetime="2026-03-29T03:00:00+01:00">03:00 BST</time>"#
        ));
        assert!(html.contains(
            r#"<time datetime="2026-10-25T01:30:00+01:00">01:30 BST</time>–<time datetime="2026-10-25T01:30:00+00:00">01:30 GMT</time>"#
        ));
        assert!(html.contains(
            r#"<time datetime="2026-04-04T19:00:00+01:00">19:00</time>–<time datetime="2026-04-04T21:00:00+01:00">21:00</time>"#
        ));
        // Evening events on the day of the change say it too: a reader checks.
        let evening = ev("evening", "Evening", "2026-10-25 18:00", "2026-10-25 20:00");
        let page = event(&ctx, &evening);
        assert!(page.contains(
            r#"<time datetime="2026-10-25T18:00:00+00:00">Sunday 25 October 2026, 18:00 GMT</time>–<time datetime="2026-10-25T20:00:00+00:00">20:00 GMT</time>"#
        ));
    }

    #[test]
    fn past_events_are_gone_and_cancelled_ones_struck_through_until_past() {
        let dir = directory();
        let paths = public_paths();
        let past = ev("past", "Past", "2026-06-30 10:00", "2026-06-30 11:00");
        let mut cancelled = ev("c", "Called off", "2026-07-03 10:00", "2026-07-03 11:00");
        cancelled.event.cancelled = true;
        let mut cancelled_past = ev("cp", "Long gone", "2026-06-29 10:00", "2026-06-29 11:00");
        cancelled_past.event.cancelled = true;
        let events = [past.clone(), cancelled_past.clone(), cancelled.clone()];
        let html = calendar(&ctx(&dir, &paths), &Selection::public(), &events, &[]);
        assert!(!html.contains(">Past<") && !html.contains(">Long gone<"));
        let tag = article_tag(&html, &cancelled).unwrap();
        assert!(tag.contains("class=\"event cancelled\""), "{tag}");
        assert!(html.contains(r#"<span class="tag tag-cancelled">Cancelled</span>"#));
        assert!(article_tag(&html, &past).is_none());

        let detail = event(&ctx(&dir, &paths), &cancelled);
        assert!(detail.contains("This event has been cancelled."));
        assert!(detail.contains(r#"<dd class="status">Cancelled</dd>"#));
    }

    #[test]
    fn public_page_shows_public_events_only_and_no_member_links() {
        let dir = directory();
        let paths = public_paths();
        let open = ev(
            "open",
            "Open meeting",
            "2026-07-02 17:00",
            "2026-07-02 19:00",
        );
        let secret = members_only(ev(
            "secret",
            "Strategy",
            "2026-07-02 18:00",
            "2026-07-02 19:00",
        ));
        // Even a selection asking for members' events shows public ones only.
        let asked = Selection {
            audience: Audience::Members,
            ..Selection::public()
        };
        let ctx = ctx(&dir, &paths);
        let html = calendar(&ctx, &asked, &[open.clone(), secret.clone()], &[]);
        check_document(&html);
        assert!(article_tag(&html, &open).is_some());
        assert!(article_tag(&html, &secret).is_none());
        assert!(!html.contains("Strategy") && !html.contains("Members only"));
        assert!(!html.contains("/m/") && !html.contains("/clashes") && !html.contains("Members"));
        assert!(!html.contains("noindex"));
        // Nor can the detail page or the clash board be had without a token.
        let detail = event(&ctx, &secret);
        assert!(!detail.contains("Strategy") && detail.contains("Not found"));
        let board = clash_board(
            &ctx,
            &[clash("parl.leeds-east.2026-09-10", ClashState::Open, None)],
        );
        assert!(!board.contains("leeds-east") && board.contains("Members only"));
        for page in [&detail, &board] {
            check_document(page);
            assert!(!page.contains("/m/"));
        }
    }

    #[test]
    fn member_page_marks_members_only_events() {
        let dir = directory();
        let paths = member_paths();
        let open = ev(
            "open",
            "Open meeting",
            "2026-07-02 17:00",
            "2026-07-02 19:00",
        );
        let secret = members_only(ev(
            "secret",
            "Strategy",
            "2026-07-02 18:00",
            "2026-07-02 19:00",
        ));
        let html = calendar(
            &ctx(&dir, &paths),
            &Selection {
                audience: Audience::Members,
                ..Selection::public()
            },
            &[open.clone(), secret.clone()],
            &[],
        );
        check_document(&html);
        assert!(html.contains(r#"<meta name="robots" content="noindex">"#));
        assert!(html.contains(r#"<span class="badge members-badge">Members</span>"#));
        assert!(html.contains(r#"<a href="/m/s3cret/clashes">Clash board</a>"#));
        assert!(html.contains(r#"<a href="/m/s3cret/" aria-current="page">Calendar</a>"#));
        let tag = article_tag(&html, &secret).unwrap();
        assert!(tag.contains("members-only"), "{tag}");
        assert!(!article_tag(&html, &open).unwrap().contains("members-only"));
        assert_eq!(
            count(&html, "<span class=\"tag tag-members\">Members only</span>"),
            1
        );
        let link = format!("href=\"/m/s3cret/events/{}/secret\"", key(1));
        assert!(html.contains(&link), "{html}");
        let detail = event(&ctx(&dir, &paths), &secret);
        check_document(&detail);
        assert!(detail.contains(r#"<meta name="robots" content="noindex">"#));
        assert!(
            article_tag(&detail, &secret)
                .unwrap()
                .contains("members-only")
        );
        assert!(detail.contains("<dt>Who can see it</dt><dd>Members only</dd>"));
        assert!(detail.contains(r#"href="webcal://cal.example.org/m/s3cret/calendar.ics""#));
        // No link leaves the member's paths (except the in-page anchors).
        for (at, _) in html.match_indices("href=\"/") {
            assert!(html[at..].starts_with("href=\"/m/s3cret/"));
        }
    }

    #[test]
    fn filter_form_marks_the_selection() {
        let dir = directory();
        let paths = public_paths();
        let e = ev("e", "Canvass", "2026-07-02 10:00", "2026-07-02 12:00");
        let selection = Selection {
            organisation: Some(key(1)),
            area: Some("E05011234".into()),
            ..Selection::public()
        };
        let areas = ["E05000001".to_owned(), "E05011234".to_owned()];
        let html = calendar(
            &ctx(&dir, &paths),
            &selection,
            std::slice::from_ref(&e),
            &areas,
        );
        check_document(&html);
        assert!(html.contains(r#"<form id="filters" method="get" action="/""#));
        assert!(html.contains(r#"<select id="filter-org" name="org">"#));
        assert!(html.contains(r#"<option value="">All organisations</option>"#));
        assert!(html.contains(r#"<option value="alpha-party" selected>Alpha Party</option>"#));
        assert!(
            html.contains(r#"<option value="beta-co-left">Beta &amp; Co &lt;Left&gt;</option>"#)
        );
        assert!(html.contains(r#"<option value="secretariat">Secretariat</option>"#));
        assert!(html.contains(r#"<option value="">All areas</option>"#));
        assert!(html.contains(r#"<option value="E05011234" selected>E05011234</option>"#));
        assert!(html.contains(r#"<option value="E05000001">E05000001</option>"#));
        assert_eq!(count(&html, " selected>"), 2);
        assert!(html.contains("<strong>events by Alpha Party in E05011234</strong>"));
        assert!(html.contains(r#"<a class="clear" href="/">Clear filters</a>"#));
        assert!(html.contains(
            "<title>Calendar: events by Alpha Party in E05011234 — Test Alliance</title>"
        ));
        assert!(article_tag(&html, &e).is_some());

        // Unfiltered: the "All" options are selected and there is nothing to clear.
        let html = calendar(&ctx(&dir, &paths), &Selection::public(), &[], &areas);
        assert!(html.contains(r#"<option value="" selected>All organisations</option>"#));
        assert!(html.contains(r#"<option value="" selected>All areas</option>"#));
        assert!(!html.contains("Clear filters"));
    }

    #[test]
    fn filters_apply_and_empty_state_says_so() {
        let dir = directory();
        let paths = public_paths();
        let e = ev("e", "Canvass", "2026-07-02 10:00", "2026-07-02 12:00");
        let by_beta = Selection {
            organisation: Some(key(2)),
            ..Selection::public()
        };
        let html = calendar(&ctx(&dir, &paths), &by_beta, std::slice::from_ref(&e), &[]);
        assert!(article_tag(&html, &e).is_none());
        assert!(html.contains("No upcoming events"));
        assert!(html.contains("Nothing upcoming matches these filters"));
        let html = calendar(&ctx(&dir, &paths), &Selection::public(), &[], &[]);
        assert!(html.contains("No upcoming events") && html.contains("Nothing is scheduled yet"));
        assert_eq!(count(&html, "data-day="), 0);
    }

    #[test]
    fn subscribe_links_for_the_selection_and_the_whole_calendar() {
        let dir = directory();
        let paths = member_paths();
        let selection = Selection {
            audience: Audience::Members,
            organisation: Some(key(1)),
            area: None,
        };
        let html = calendar(&ctx(&dir, &paths), &selection, &[], &[]);
        check_document(&html);
        assert!(html.contains(r#"<section id="subscribe""#));
        assert!(html.contains("From URL"));
        for (webcal, https) in [
            (
                "webcal://cal.example.org/m/s3cret/org/alpha-party/calendar.ics",
                "https://cal.example.org/m/s3cret/org/alpha-party/calendar.ics",
            ),
            (
                "webcal://cal.example.org/m/s3cret/calendar.ics",
                "https://cal.example.org/m/s3cret/calendar.ics",
            ),
        ] {
            assert!(html.contains(&format!(
                r#"<a class="button webcal" href="{webcal}">Subscribe in your calendar app<span class="visually-hidden">: "#
            )));
            assert!(
                html.contains(&format!(r#"readonly value="{https}""#)),
                "{https}"
            );
        }
        assert_eq!(count(&html, "webcal://"), 2);
        // Unfiltered, the selection is the whole calendar: one feed, not two.
        let paths = public_paths();
        let html = calendar(&ctx(&dir, &paths), &Selection::public(), &[], &[]);
        assert_eq!(count(&html, "webcal://"), 1);
        assert!(html.contains(r#"href="webcal://cal.example.org/calendar.ics""#));
        assert!(html.contains(r#"value="https://cal.example.org/calendar.ics""#));
    }

    #[test]
    fn event_page_gives_details_and_organisers_feeds() {
        let dir = directory();
        let paths = public_paths();
        let mut e = ev("conf", "Conference", "2026-07-10 08:00", "2026-07-11 15:00");
        e.event.time_zone = chrono_tz::Europe::Paris;
        e.event.description = "Line one\nline two\n\nSecond paragraph".into();
        e.organisers = vec![key(1), key(2)];
        let html = event(&ctx(&dir, &paths), &e);
        check_document(&html);
        assert!(html.contains("<title>Conference — Test Alliance</title>"));
        assert!(html.contains(&format!("data-event-uid=\"conf.{}@accord\"", key(1))));
        assert!(html.contains(
            r#"<time datetime="2026-07-10T09:00:00+01:00">Friday 10 July 2026, 09:00</time> – <time datetime="2026-07-11T16:00:00+01:00">Saturday 11 July 2026, 16:00</time>"#
        ));
        assert!(html.contains(
            r#"<time datetime="2026-07-10T10:00:00+02:00">Friday 10 July 2026, 10:00</time>"#
        ));
        assert!(html.contains(" (Europe/Paris)"));
        assert!(html.contains("<li>Alpha Party</li><li>Beta &amp; Co &lt;Left&gt;</li>"));
        assert!(html.contains("<p>Line one<br>line two</p><p>Second paragraph</p>"));
        assert!(html.contains(r#"<dd class="status">Scheduled</dd>"#));
        assert!(html.contains(r#"href="webcal://cal.example.org/calendar.ics""#));
        assert!(html.contains(r#"href="webcal://cal.example.org/org/alpha-party/calendar.ics""#));
        assert!(html.contains(r#"href="webcal://cal.example.org/org/beta-co-left/calendar.ics""#));
        assert!(html.contains(r#"value="https://cal.example.org/org/beta-co-left/calendar.ics""#));
        assert!(!html.contains("Who can see it"));

        // In the list, the other zone is shown alongside London.
        let list = calendar(
            &ctx(&dir, &paths),
            &Selection::public(),
            std::slice::from_ref(&e),
            &[],
        );
        assert!(list.contains("Organised by Alpha Party and Beta &amp; Co &lt;Left&gt;"));
        assert!(list.contains("Europe/Paris)"));
        assert!(
            list.contains(">Sat 11 Jul 17:00</time> Europe/Paris)"),
            "{list}"
        );
    }

    fn clash(ballot: &str, state: ClashState, close: Option<&str>) -> Clash {
        Clash {
            ballot: BallotId::parse(ballot).unwrap(),
            state,
            parties: vec![
                ClashParty {
                    organisation: key(1),
                    status: Some(IntentionStatus::Intends),
                    candidate: Some("Jo <Bloggs>".into()),
                },
                ClashParty {
                    organisation: key(2),
                    status: Some(IntentionStatus::Considering),
                    candidate: None,
                },
            ],
            nominations_close: close.map(utc),
            deadline_rule: "19 working days before polling day, 4pm".into(),
            nation: close.map(|_| accord_core::deadline::Nation::England),
            resolution: None,
        }
    }

    #[test]
    fn clash_board_orders_by_close_of_nominations() {
        let dir = directory();
        let paths = member_paths();
        let mut pending = clash(
            "local.leeds.headingley.2026-07-30",
            ClashState::Pending,
            Some("2026-07-03 15:00"),
        );
        pending.resolution = Some(EntryId::from_bytes([0xab; 32]));
        let clashes = [
            clash(
                "parl.leeds-east.2026-09-10",
                ClashState::Open,
                Some("2026-08-13 15:00"),
            ),
            clash("mayor.london.2026-12-01", ClashState::Potential, None),
            clash(
                "parl.hartlepool.by.2026-07-20",
                ClashState::Resolved,
                Some("2026-07-02 15:00"),
            ),
            pending,
            clash(
                "local.york.2026-07-02",
                ClashState::Breached,
                Some("2026-06-05 15:00"),
            ),
        ];
        let html = clash_board(&ctx(&dir, &paths), &clashes);
        check_document(&html);
        assert!(html.contains("<title>Clash board — Test Alliance</title>"));
        assert!(
            html.contains(r#"<a href="/m/s3cret/clashes" aria-current="page">Clash board</a>"#)
        );
        // Closed clashes come after the open ones, in a section of their own.
        let order: Vec<usize> = [
            "local.leeds.headingley.2026-07-30",
            "parl.leeds-east.2026-09-10",
            "mayor.london.2026-12-01",
            "local.york.2026-07-02",
        ]
        .iter()
        .map(|b| html.find(&format!("data-ballot=\"{b}\"")).unwrap())
        .collect();
        assert!(order.is_sorted(), "{order:?}");
        assert!(
            !html.contains("hartlepool"),
            "resolved clashes are not listed"
        );
        assert!(html.contains(
            "3 clashes need attention (and 1 whose nominations have closed, listed below)."
        ));
        // 16:00 BST on 13 August is 43 London days after 1 July.
        assert!(html.contains(r#"<time datetime="2026-08-13T16:00:00+01:00">16:00, Thursday 13 August 2026</time> <span class="relative">(in 43 days)</span>"#));
        assert!(html.contains("(in 2 days)"));
        assert!(html.contains("(closed)"));
        assert!(html.contains("Not known"));
        assert!(html.contains(r#"class="clash state-pending urgent""#));
        assert!(html.contains(r#"class="clash state-breached closed""#));
        assert!(html.contains("Recorded (entry <code>abababab</code>)"));
        assert_eq!(count(&html, "None recorded"), 3);
        assert!(html.contains(
            r#"<span class="party-name">Alpha Party</span> <span class="party-status">Intends to stand</span> <span class="candidate">Candidate: Jo &lt;Bloggs&gt;</span>"#
        ));
        assert!(html.contains(
            r#"<span class="party-name">Beta &amp; Co &lt;Left&gt;</span> <span class="party-status">Considering</span></li>"#
        ));
        assert!(html.contains("19 working days before polling day, 4pm"));
    }

    /// Regression (issue 8): the headline counted clashes whose nominations had
    /// closed, and closed ones were mixed in with those still open; ballots showed
    /// only their ids, and an unknown nation was not flagged.
    #[test]
    fn clash_board_headline_counts_only_open_nominations_and_names_ballots() {
        let dir = directory();
        let paths = member_paths();
        let mut unknown = clash(
            "local.atlantis.harbour.2026-09-10",
            ClashState::Open,
            Some("2026-08-06 15:00"),
        );
        unknown.nation = None;
        let clashes = [
            clash(
                "local.glasgow-city.partick-east-kelvindale.2026-07-02",
                ClashState::Open,
                Some("2026-06-01 15:00"),
            ),
            clash(
                "local.leeds.kirkstall.2026-07-02",
                ClashState::Potential,
                Some("2026-06-05 15:00"),
            ),
            unknown,
        ];
        let html = clash_board(&ctx(&dir, &paths), &clashes);
        check_document(&html);
        assert!(
            html.contains(
                "1 clash needs attention (and 2 whose nominations have closed, listed below)."
            ),
            "{html}"
        );
        let closed_at = html
            .find(r#"<h2 id="closed-heading">Nominations closed</h2>"#)
            .unwrap();
        assert!(
            html.find(r#"data-ballot="local.atlantis.harbour.2026-09-10""#)
                .unwrap()
                < closed_at
        );
        assert!(
            html.find(r#"data-ballot="local.leeds.kirkstall.2026-07-02""#)
                .unwrap()
                > closed_at
        );
        assert!(html.contains(
            r#"<span class="ballot-name">Glasgow City: Partick East Kelvindale, local election, 2 July 2026</span> <code class="ballot-id">local.glasgow-city.partick-east-kelvindale.2026-07-02</code>"#
        ));
        assert_eq!(
            count(&html, "Nation unknown: earliest possible deadline"),
            1
        );
    }

    #[test]
    fn clash_board_empty_state() {
        let dir = directory();
        let paths = member_paths();
        let resolved = clash("parl.hartlepool.by.2026-07-20", ClashState::Resolved, None);
        let html = clash_board(&ctx(&dir, &paths), &[resolved]);
        check_document(&html);
        assert!(html.contains("No clashes") && !html.contains("data-ballot"));
    }

    #[test]
    fn message_page_links_home() {
        let dir = directory();
        let paths = member_paths();
        let html = message(&ctx(&dir, &paths), "Not found", "No such <page>.");
        check_document(&html);
        assert!(html.contains("<title>Not found — Test Alliance</title>"));
        assert!(html.contains("<h1>Not found</h1><p>No such &lt;page&gt;.</p>"));
        assert!(html.contains(r#"<a href="/m/s3cret/">Back to the calendar</a>"#));
    }
}
