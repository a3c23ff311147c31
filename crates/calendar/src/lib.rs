//! The members' calendar, rendered from the derived state: RFC 5545 feeds
//! ([`ics`]) and the web page ([`page`]). Pure: no network, no disk; the clock is
//! passed in. The node's HTTP server (`accord_node::http`) caches what these render.
//!
//! Shared here: the [`Directory`] of organisations (names and URL slugs from the
//! charter), the [`Selection`] a feed or page shows, and the [`Paths`] every link is
//! built from, so feeds, pages and the server agree on URLs.

pub mod ics;
pub mod page;

use std::collections::BTreeMap;

use accord_core::body::Visibility;
use accord_core::state::EventView;
use accord_core::{Charter, PublicId};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// One organisation (member or secretariat) as the calendar names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub key: PublicId,
    pub name: String,
    /// Lowercase ASCII letters, digits and hyphens; unique in the directory.
    pub slug: String,
}

/// The charter's organisations, in charter order (members, then secretaries).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    orgs: Vec<Org>,
    by_key: BTreeMap<PublicId, usize>,
}

impl Directory {
    pub fn from_charter(charter: &Charter) -> Self {
        Self::from_roster(charter, &accord_core::roster::Roster::from_charter(charter))
    }

    /// The charter's organisations in its order, then those the roster admitted
    /// since.
    pub fn from_roster(charter: &Charter, roster: &accord_core::roster::Roster) -> Self {
        let named = charter
            .members()
            .iter()
            .map(|m| (m.key, m.name.clone()))
            .chain(
                charter
                    .secretaries()
                    .iter()
                    .map(|s| (s.key, s.name.clone())),
            )
            .chain(
                roster
                    .organisations()
                    .filter(|o| o.admitted_at > 0)
                    .map(|o| (o.key, o.name.clone())),
            )
            .collect::<Vec<_>>();
        let mut dir = Directory::default();
        for (key, name) in named {
            let mut slug = slugify(&name);
            if slug.is_empty() || dir.orgs.iter().any(|o| o.slug == slug) {
                slug = format!("{}-{}", slug, &key.to_string()[..8])
                    .trim_start_matches('-')
                    .to_owned();
            }
            dir.by_key.insert(key, dir.orgs.len());
            dir.orgs.push(Org { key, name, slug });
        }
        dir
    }

    pub fn orgs(&self) -> &[Org] {
        &self.orgs
    }

    pub fn get(&self, key: &PublicId) -> Option<&Org> {
        self.by_key.get(key).map(|&i| &self.orgs[i])
    }

    pub fn by_slug(&self, slug: &str) -> Option<&Org> {
        self.orgs.iter().find(|o| o.slug == slug)
    }

    /// The organisation's name, or its short key if the charter does not name it.
    pub fn name(&self, key: &PublicId) -> String {
        self.get(key)
            .map(|o| o.name.clone())
            .unwrap_or_else(|| key.short())
    }
}

/// "Breakthrough Party" → "breakthrough-party", "Plaid Ynys Môn" → "plaid-ynys-mon"
/// (a slug is for URLs; the name is shown everywhere else).
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in deunicode::deunicode(name).chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

/// Who is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    /// Anyone: public events only.
    Public,
    /// A member with a feed token: public and alliance-only events.
    Members,
}

/// Which events a feed or page shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selection {
    pub audience: Audience,
    /// Only events this organisation organises (author or co-organiser).
    pub organisation: Option<PublicId>,
    /// Only events in this area (GSS code).
    pub area: Option<String>,
}

impl Selection {
    pub fn public() -> Self {
        Self {
            audience: Audience::Public,
            organisation: None,
            area: None,
        }
    }

    /// Whether `event` belongs in this selection at `now`. Cancelled events stay
    /// (as STATUS:CANCELLED, so calendars remove them) until they are past.
    pub fn includes(&self, event: &EventView, now: DateTime<Utc>) -> bool {
        let e = &event.event;
        (self.audience == Audience::Members || e.visibility == Visibility::Public)
            && self
                .organisation
                .is_none_or(|o| event.organisers.contains(&o))
            && self
                .area
                .as_deref()
                .is_none_or(|a| e.area.as_deref() == Some(a))
            && !(e.cancelled && e.end_utc <= now)
    }
}

/// Builds every URL the calendar serves. `base` is the node's public URL without a
/// trailing slash ("https://calendar.example.org"); `token` is set for a member's
/// links, which all start `/m/<token>/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub base: String,
    pub token: Option<String>,
}

/// Characters left as they are in a path segment: unreserved (RFC 3986).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Paths {
    /// The path prefix ("" or "/m/<token>").
    pub fn prefix(&self) -> String {
        match &self.token {
            Some(t) => format!("/m/{t}"),
            None => String::new(),
        }
    }

    /// The page ("/" or "/m/<token>/"), with optional filters as a query.
    pub fn page(&self, selection: &Selection, dir: &Directory) -> String {
        let mut query = Vec::new();
        if let Some(org) = selection.organisation.and_then(|k| dir.get(&k)) {
            query.push(format!("org={}", org.slug));
        }
        if let Some(area) = &selection.area {
            query.push(format!("area={}", utf8_percent_encode(area, SEGMENT)));
        }
        let mut path = format!("{}/", self.prefix());
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        path
    }

    /// An event's detail page.
    pub fn event(&self, event: &EventView) -> String {
        format!(
            "{}/events/{}/{}",
            self.prefix(),
            event.author,
            utf8_percent_encode(&event.event.uid, SEGMENT)
        )
    }

    /// The members' clash board (members only).
    pub fn clashes(&self) -> String {
        format!("{}/clashes", self.prefix())
    }

    /// The feed's path: "/calendar.ics", "/org/<slug>/calendar.ics" or
    /// "/area/<code>/calendar.ics" (an organisation and an area together use the
    /// query form "/calendar.ics?org=…&area=…").
    pub fn feed(&self, selection: &Selection, dir: &Directory) -> String {
        let org = selection.organisation.and_then(|k| dir.get(&k));
        let prefix = self.prefix();
        match (org, &selection.area) {
            (None, None) => format!("{prefix}/calendar.ics"),
            (Some(o), None) => format!("{prefix}/org/{}/calendar.ics", o.slug),
            (None, Some(a)) => format!(
                "{prefix}/area/{}/calendar.ics",
                utf8_percent_encode(a, SEGMENT)
            ),
            (Some(o), Some(a)) => format!(
                "{prefix}/calendar.ics?org={}&area={}",
                o.slug,
                utf8_percent_encode(a, SEGMENT)
            ),
        }
    }

    /// The feed's full https:// (or http://) link.
    pub fn feed_url(&self, selection: &Selection, dir: &Directory) -> String {
        format!("{}{}", self.base, self.feed(selection, dir))
    }

    /// The feed's webcal:// link, which calendar apps open as a subscription.
    pub fn webcal_url(&self, selection: &Selection, dir: &Directory) -> String {
        let url = self.feed_url(selection, dir);
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(&url);
        format!("webcal://{rest}")
    }
}

/// The iCalendar UID of an event: stable across updates, unique in the alliance
/// (an author's uids are unique to the author).
pub fn event_uid(event: &EventView) -> String {
    format!("{}.{}@accord", event.event.uid, event.author)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Breakthrough Party"), "breakthrough-party");
        assert_eq!(slugify("  Plaid — Ynys Môn!"), "plaid-ynys-mon");
        assert_eq!(slugify("---"), "");
    }
}
