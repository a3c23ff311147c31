//! sled panics, rather than return an error, on some damage to its files (a page
//! it cannot deserialise: "tried to serialize Uninitialized"). Every call into sled
//! goes through [`guarded`], which turns a panic into an error carrying sled's
//! message; [`quiet_engine_panics`] keeps the process's panic hook from printing
//! that message as if the program had crashed, so an operator sees one `error:`
//! line that names the damage, not a backtrace.
//!
//! A panic on one of sled's own threads (its flusher, its I/O pool) cannot be
//! caught here: the hook records it, and [`background_failure`] reports it so the
//! node can turn read-only and say why.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once};

thread_local! {
    /// How many [`guarded`] calls this thread is inside.
    static INSIDE: Cell<u32> = const { Cell::new(0) };
    /// The message of the last panic caught on this thread, with where sled raised it.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The first panic of the storage engine on a thread of its own.
static BACKGROUND: Mutex<Option<String>> = Mutex::new(None);

/// Whether a panic at `file` was raised in sled's source.
fn in_engine(file: &str) -> bool {
    file.contains("/sled-") || file.contains("\\sled-")
}

/// The text of a panic's payload.
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "no message".into())
}

/// Installs (once per process) a panic hook that records, and does not print, the
/// panics of the storage engine: those raised in sled's source, and any raised
/// inside [`guarded`]. Every other panic goes to the hook that was installed before.
pub fn quiet_engine_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location();
            let engine = at.is_some_and(|l| in_engine(l.file()));
            let inside = INSIDE.with(Cell::get) > 0;
            if !engine && !inside {
                previous(info);
                return;
            }
            let mut text = payload_text(info.payload());
            if let Some(l) = at.filter(|_| engine) {
                let file = l.file().rsplit(['/', '\\']).next().unwrap_or(l.file());
                text = format!("{text} (sled {file}:{})", l.line());
            }
            if inside {
                CAUGHT.with(|c| *c.borrow_mut() = Some(text));
            } else {
                let mut first = BACKGROUND.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(text);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err` with its message.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    INSIDE.with(|i| i.set(i.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    INSIDE.with(|i| i.set(i.get() - 1));
    result.map_err(|payload| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*payload))
    })
}

/// The first panic of the storage engine on one of its own threads, if any: from
/// then on its flushes may never complete.
pub fn background_failure() -> Option<String> {
    BACKGROUND.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_guarded_becomes_its_message() {
        quiet_engine_panics();
        let caught = guarded(|| -> u32 { panic!("tried to serialize Uninitialized") });
        assert_eq!(caught, Err("tried to serialize Uninitialized".to_owned()));
        assert_eq!(guarded(|| 7), Ok(7));
    }
}
