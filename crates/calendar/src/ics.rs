//! PLACEHOLDER (replaced by the ics branch).
use crate::{Directory, Paths, Selection};
use accord_core::state::EventView;
use chrono::{DateTime, Utc};
pub struct Feed {
    pub bytes: Vec<u8>,
    pub etag: String,
    pub last_modified: Option<DateTime<Utc>>,
    pub stale_at: Option<DateTime<Utc>>,
    pub events: usize,
}
pub struct FeedOptions<'a> {
    pub alliance_name: &'a str,
    pub directory: &'a Directory,
    pub paths: &'a Paths,
    pub selection: &'a Selection,
    pub refresh: std::time::Duration,
}
pub fn render(events: &[EventView], options: &FeedOptions<'_>, now: DateTime<Utc>) -> Feed {
    let n = events
        .iter()
        .filter(|e| options.selection.includes(e, now))
        .count();
    let bytes = format!("BEGIN:VCALENDAR\r\nX-N:{n}\r\nEND:VCALENDAR\r\n").into_bytes();
    Feed {
        etag: format!("\"{}\"", bytes.len()),
        bytes,
        last_modified: None,
        stale_at: None,
        events: n,
    }
}
