//! Output: aligned plain-text tables, JSON, and the small formatting helpers the
//! commands share (times, keys shown by name).

use std::io::Write;

use accord_core::{Charter, PublicId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Prints text to stdout. A closed pipe (`accord clashes | head`) is not an error.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

pub fn print_json(value: &Value) {
    println(&serde_json::to_string_pretty(value).expect("JSON values serialise"));
}

/// An aligned table: a header row, then one row per item. The last column is not
/// padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Unix milliseconds as RFC 3339 in UTC.
pub fn time_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// A shorter UTC time for tables: "2027-04-12 18:00Z".
pub fn short_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%d %H:%MZ").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// A ballot id's name for people ("Leeds: Kirkstall, local election, 6 May 2027"),
/// or the id itself if it does not parse.
pub fn ballot_name(id: &str) -> String {
    match id.parse::<accord_core::ballot::BallotId>() {
        Ok(ballot) => accord_core::council::ballot_name(&ballot),
        Err(_) => id.to_owned(),
    }
}

/// An area code for people: a council's GSS code with its name, e.g. "Leeds
/// (E08000035)"; other codes as they are.
pub fn area_label(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        accord_core::council::area_label(code)
    }
}

/// Whether a deadline's rule says the ballot's nation is not known (the earliest
/// possible deadline was taken). The node's core writes the words.
pub fn nation_unknown(rule: &str) -> bool {
    rule.contains(accord_core::deadline::NATION_UNKNOWN)
}

/// Whether a deadline's rule names areas that contradict the ballot id or each other.
pub fn areas_disagree(rule: &str) -> bool {
    rule.contains(accord_core::deadline::DISAGREEMENT)
}

/// The close-of-nominations cell of a table: the time, flagged when the nation is
/// not known; or, when there is no deadline, why.
pub fn deadline_cell(nominations_close: &str, rule: &str) -> String {
    if nominations_close.is_empty() {
        if rule.is_empty() {
            "not known".to_owned()
        } else {
            format!("not known: {rule}")
        }
    } else {
        let mut cell = short_time(nominations_close);
        if nation_unknown(rule) {
            cell.push_str(" (nation unknown)");
        }
        if areas_disagree(rule) {
            cell.push_str(" (areas disagree)");
        }
        cell
    }
}

/// Resolves public keys to charter names.
pub struct Names<'a>(pub &'a Charter);

impl Names<'_> {
    /// The charter name of a key, or its short hex if it is not in the charter.
    pub fn name(&self, key: &[u8]) -> String {
        match PublicId::from_slice(key) {
            Ok(id) => self
                .0
                .name_of(&id)
                .map(str::to_owned)
                .unwrap_or_else(|| id.short()),
            Err(_) => hex::encode(key),
        }
    }

    /// `{"name": ..., "id": hex}`.
    pub fn party(&self, key: &[u8]) -> Value {
        json!({"name": self.name(key), "id": hex::encode(key)})
    }

    pub fn parties(&self, keys: &[Vec<u8>]) -> Value {
        Value::Array(keys.iter().map(|k| self.party(k)).collect())
    }

    pub fn list(&self, keys: &[Vec<u8>]) -> String {
        keys.iter()
            .map(|k| self.name(k))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_cells_say_why() {
        assert_eq!(
            deadline_cell(
                "2027-04-08T15:00:00Z",
                "19 working days before poll, 4pm (x)"
            ),
            "2027-04-08 15:00Z"
        );
        assert_eq!(
            deadline_cell(
                "2027-04-02T15:00:00Z",
                "23 working days (x); nation unknown, so the earliest of the deadlines for …"
            ),
            "2027-04-02 15:00Z (nation unknown)"
        );
        assert_eq!(
            deadline_cell(
                "2027-04-02T15:00:00Z",
                "23 working days (x); disagreement: area E05011408 (England) given, but …"
            ),
            "2027-04-02 15:00Z (areas disagree)"
        );
        assert_eq!(
            deadline_cell(
                "",
                "no bank-holiday data for 2031 (the table covers 2024 to 2030)"
            ),
            "not known: no bank-holiday data for 2031 (the table covers 2024 to 2030)"
        );
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".into(), "long value".into(), "x".into()],
            vec!["bbbb".into(), "v".into(), "y".into()],
        ];
        assert_eq!(
            table(&["ONE", "TWO", "THREE"], &rows),
            "ONE   TWO         THREE\na     long value  x\nbbbb  v           y\n"
        );
    }
}
