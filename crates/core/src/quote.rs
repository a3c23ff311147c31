//! Bounded quoting of values a user sent, for error messages.
//!
//! A refusal names the value that was wrong, but a client may send megabytes: a
//! whole 100 kB ballot id in a gRPC status message overflows the metadata limits of
//! default clients (grpcio reports RESOURCE_EXHAUSTED instead of the refusal). Every
//! error that quotes a user's value quotes it through [`quoted`], which keeps at most
//! [`QUOTE_CHARS`] characters and then says how long the value was.

use std::fmt;

/// Most characters of a value quoted in an error message.
pub const QUOTE_CHARS: usize = 200;

/// Longest error message, in bytes, that [`bounded`] lets through. gRPC sends the
/// message percent-encoded in a header (up to 3 bytes per byte), and grpcio's default
/// metadata limit is 8 KiB.
pub const MESSAGE_BYTES: usize = 1024;

/// A value quoted as Rust's `{:?}` would, cut after [`QUOTE_CHARS`] characters (on a
/// character boundary) and followed by "… (N bytes)" when cut.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a str);

/// Quotes `value` for an error message; see [`Quoted`].
pub fn quoted(value: &str) -> Quoted<'_> {
    Quoted(value)
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// `message` cut before [`MESSAGE_BYTES`] bytes (on a character boundary) with
/// "… (N bytes)": a last bound for messages sent to clients, whatever they quote.
pub fn bounded(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MESSAGE_BYTES {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut cut = MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes)", &message[..cut], message.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quoted("local.leeds").to_string(), "\"local.leeds\"");
        assert_eq!(quoted("").to_string(), "\"\"");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_with_their_length() {
        let value = "é".repeat(50_000);
        let shown = quoted(&value).to_string();
        assert!(shown.starts_with(&format!("\"{}\"", "é".repeat(QUOTE_CHARS))));
        assert!(shown.ends_with("… (100000 bytes)"), "{shown}");
        assert!(shown.chars().count() < QUOTE_CHARS + 30);
    }

    #[test]
    fn long_messages_are_bounded_in_bytes() {
        let message = "x".repeat(5000);
        let shown = bounded(&message);
        assert_eq!(
            shown,
            format!("{}… (5000 bytes)", "x".repeat(MESSAGE_BYTES))
        );
        let wide = "€".repeat(1000);
        let shown = bounded(&wide);
        assert!(shown.len() <= MESSAGE_BYTES + 20, "{}", shown.len());
        assert!(shown.ends_with("… (3000 bytes)"));
        assert_eq!(bounded("short"), "short");
    }
}
