//! PLACEHOLDER (replaced by the page branch).
use crate::{Directory, Paths, Selection};
use accord_core::clash::Clash;
use accord_core::state::EventView;
use chrono::{DateTime, Utc};
pub struct PageContext<'a> {
    pub alliance_name: &'a str,
    pub directory: &'a Directory,
    pub paths: &'a Paths,
    pub now: DateTime<Utc>,
}
pub fn calendar(
    ctx: &PageContext<'_>,
    selection: &Selection,
    events: &[EventView],
    areas: &[String],
) -> String {
    format!(
        "{} {:?} {} {}",
        ctx.alliance_name,
        selection,
        events.len(),
        areas.len()
    )
}
pub fn event(ctx: &PageContext<'_>, event: &EventView) -> String {
    format!("{} {}", ctx.alliance_name, event.event.title)
}
pub fn clash_board(ctx: &PageContext<'_>, clashes: &[Clash]) -> String {
    format!("{} {}", ctx.alliance_name, clashes.len())
}
pub fn message(ctx: &PageContext<'_>, title: &str, text: &str) -> String {
    format!("{} {title} {text}", ctx.alliance_name)
}
