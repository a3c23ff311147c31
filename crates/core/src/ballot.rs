//! Democracy Club ballot and election ids.
//!
//! Grammar: `type[.subtype][.organisation][.division][.by].YYYY-MM-DD`, every part a
//! lowercase slug of `a-z`, `0-9` and single hyphens. Which parts a type takes follows
//! the reference implementation, the PyPI package `uk-election-ids` (0.10.1): an id is
//! accepted when that package's `IdBuilder.from_id` accepts it and could also have
//! produced it (it is one of the builder's `ids`). The only deliberate differences:
//! this parser is stricter about spelling (no `_`, which the package's slugger lets
//! through, and the date must be exactly `YYYY-MM-DD`, where the package's `strptime`
//! also takes `2024-5-2`), and it never accepts an empty part.
//!
//! A [`BallotId`] names either a ballot (one contest: `parl.hartlepool.by.2021-05-06`)
//! or an election that groups ballots (`parl.2024-07-04`, `local.leeds.2024-05-02`);
//! [`BallotId::is_ballot`] tells which. Some ids are both: `mayor.london.2024-05-02`.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::quote::quoted;

/// The election types of the Democracy Club id scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElectionType {
    /// UK Parliament (Westminster).
    Parl,
    /// Local councils.
    Local,
    /// Senedd Cymru (from 2021).
    Senedd,
    /// Scottish Parliament.
    Sp,
    /// Northern Ireland Assembly.
    Nia,
    /// Greater London Assembly.
    Gla,
    /// Directly elected mayors (including the Mayor of London).
    Mayor,
    /// Police and crime commissioners.
    Pcc,
    /// National Assembly for Wales (the Senedd before 2020).
    Naw,
    /// European Parliament (UK seats, until 2019).
    Europarl,
    /// Referendums.
    Ref,
}

impl ElectionType {
    /// Every election type, in the order of the id scheme's documentation.
    pub const ALL: [ElectionType; 11] = [
        ElectionType::Parl,
        ElectionType::Local,
        ElectionType::Senedd,
        ElectionType::Sp,
        ElectionType::Nia,
        ElectionType::Gla,
        ElectionType::Mayor,
        ElectionType::Pcc,
        ElectionType::Naw,
        ElectionType::Europarl,
        ElectionType::Ref,
    ];

    /// The slug used in ids, e.g. `"parl"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ElectionType::Parl => "parl",
            ElectionType::Local => "local",
            ElectionType::Senedd => "senedd",
            ElectionType::Sp => "sp",
            ElectionType::Nia => "nia",
            ElectionType::Gla => "gla",
            ElectionType::Mayor => "mayor",
            ElectionType::Pcc => "pcc",
            ElectionType::Naw => "naw",
            ElectionType::Europarl => "europarl",
            ElectionType::Ref => "ref",
        }
    }

    /// The type whose slug is `slug`, if any.
    pub fn from_slug(slug: &str) -> Option<ElectionType> {
        ElectionType::ALL.into_iter().find(|t| t.as_str() == slug)
    }

    /// The subtypes this type takes, e.g. `["c", "r"]` for `sp`; empty if none.
    pub fn subtypes(self) -> &'static [&'static str] {
        match self {
            ElectionType::Senedd | ElectionType::Sp | ElectionType::Naw => &["c", "r"],
            ElectionType::Gla => &["c", "a"],
            _ => &[],
        }
    }

    /// Whether a ballot of this type must name a subtype.
    pub fn subtype_required(self) -> bool {
        matches!(
            self,
            ElectionType::Sp | ElectionType::Naw | ElectionType::Gla
        )
    }

    /// Whether ids of this type name an organisation (and ballots must).
    pub fn takes_organisation(self) -> bool {
        matches!(
            self,
            ElectionType::Local | ElectionType::Pcc | ElectionType::Mayor | ElectionType::Ref
        )
    }

    /// Whether ballots of this type (with this subtype) are for a division; `None` when
    /// the subtype decides and none was given (`gla`).
    fn takes_division(self, subtype: Option<&str>) -> Option<bool> {
        match self {
            ElectionType::Pcc | ElectionType::Mayor | ElectionType::Ref => Some(false),
            ElectionType::Gla => subtype.map(|s| s == "c"),
            _ => Some(true),
        }
    }

    /// The shape of this type's ids, for error messages.
    fn form(self) -> String {
        let t = self.as_str();
        match self {
            ElectionType::Parl | ElectionType::Nia | ElectionType::Europarl => {
                format!("{t}[.division][.by].YYYY-MM-DD")
            }
            ElectionType::Senedd => format!("{t}[.c|.r][.division][.by].YYYY-MM-DD"),
            ElectionType::Sp | ElectionType::Naw => {
                format!("{t}.c|.r[.division][.by].YYYY-MM-DD")
            }
            ElectionType::Gla => {
                format!("{t}.c[.division][.by].YYYY-MM-DD or {t}.a[.by].YYYY-MM-DD")
            }
            ElectionType::Local => format!("{t}[.organisation[.division]][.by].YYYY-MM-DD"),
            ElectionType::Pcc | ElectionType::Mayor => {
                format!("{t}[.organisation][.by].YYYY-MM-DD")
            }
            ElectionType::Ref => format!("{t}[.organisation].YYYY-MM-DD"),
        }
    }
}

impl fmt::Display for ElectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a ballot id. Each message names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BallotError {
    #[error("ballot id is empty")]
    Empty,
    #[error("ballot id {} has an empty part (parts are separated by single dots)", quoted(.id))]
    EmptyPart { id: String },
    #[error(
        "bad character {ch:?} in part {} (ballot id parts are lowercase a-z, 0-9 and -)",
        quoted(.part)
    )]
    BadCharacter { part: String, ch: char },
    #[error("part {} has a double hyphen (ballot id parts use single hyphens)", quoted(.part))]
    DoubleHyphen { part: String },
    #[error(
        "unknown election type {} (expected one of parl, local, senedd, sp, nia, gla, mayor, pcc, naw, europarl, ref)",
        quoted(.got)
    )]
    UnknownType { got: String },
    #[error(
        "ballot id {} does not end with a date (expected type[.subtype][.organisation][.division][.by].YYYY-MM-DD)",
        quoted(.id)
    )]
    MissingDate { id: String },
    #[error(
        "ballot id {} ends with {}, not a date of the form YYYY-MM-DD",
        quoted(.id),
        quoted(.got)
    )]
    BadDate { id: String, got: String },
    #[error("ballot id {} has an impossible date {date}", quoted(.id))]
    ImpossibleDate { id: String, date: String },
    #[error(
        "unknown subtype {} for election type {election_type} (expected one of {})",
        quoted(.got),
        .election_type.subtypes().join(", ")
    )]
    UnknownSubtype {
        election_type: ElectionType,
        got: String,
    },
    #[error("election type {election_type} takes no subtype (got {})", quoted(.got))]
    SubtypeNotAllowed {
        election_type: ElectionType,
        got: String,
    },
    #[error(
        "by-election {} has no subtype (election type {election_type} needs one of {})",
        quoted(.id),
        .election_type.subtypes().join(", ")
    )]
    SubtypeMissing {
        id: String,
        election_type: ElectionType,
    },
    #[error(
        "by-election {} has no organisation (election type {election_type} needs one)",
        quoted(.id)
    )]
    OrganisationMissing {
        id: String,
        election_type: ElectionType,
    },
    #[error(
        "by-election {} has no division (election type {election_type} needs one)",
        quoted(.id)
    )]
    DivisionMissing {
        id: String,
        election_type: ElectionType,
    },
    #[error(
        "{} takes no division (got {})",
        type_and_subtype(*.election_type, .subtype.as_deref()),
        quoted(.got)
    )]
    DivisionNotAllowed {
        election_type: ElectionType,
        subtype: Option<String>,
        got: String,
    },
    #[error("election type {election_type} has no by-elections")]
    ByElectionNotAllowed { election_type: ElectionType },
    #[error(
        "unexpected part {} in ballot id {} (expected {})",
        quoted(.part),
        quoted(.id),
        .election_type.form()
    )]
    UnexpectedPart {
        id: String,
        part: String,
        election_type: ElectionType,
    },
}

fn type_and_subtype(election_type: ElectionType, subtype: Option<&str>) -> String {
    match subtype {
        Some(s) => format!("election type {election_type} with subtype {s}"),
        None => format!("election type {election_type}"),
    }
}

/// A validated Democracy Club ballot or election id. Keeps the original string;
/// compares, orders and hashes as that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BallotId {
    // `raw` first so that the derived ordering is the string's.
    raw: String,
    election_type: ElectionType,
    subtype: Option<String>,
    organisation: Option<String>,
    division: Option<String>,
    by_election: bool,
    poll_date: NaiveDate,
}

impl BallotId {
    /// Parses and validates an id.
    pub fn parse(s: &str) -> Result<BallotId, BallotError> {
        if s.is_empty() {
            return Err(BallotError::Empty);
        }
        let parts: Vec<&str> = s.split('.').collect();
        for part in &parts {
            check_slug(s, part)?;
        }
        let election_type =
            ElectionType::from_slug(parts[0]).ok_or_else(|| BallotError::UnknownType {
                got: parts[0].to_owned(),
            })?;
        let [_, middle @ .., last] = parts.as_slice() else {
            return Err(BallotError::MissingDate { id: s.to_owned() });
        };
        let poll_date = parse_date(s, last)?;

        let (mut rest, by_election) = match middle {
            [rest @ .., "by"] => (rest, true),
            _ => (middle, false),
        };
        if by_election && election_type == ElectionType::Ref {
            return Err(BallotError::ByElectionNotAllowed { election_type });
        }

        let allowed = election_type.subtypes();
        // A required subtype is always the first part; an optional one (senedd) only
        // when it is one of the subtypes, else that part is the division.
        let subtype = match rest.first() {
            Some(first) if election_type.subtype_required() && !allowed.contains(first) => {
                return Err(BallotError::UnknownSubtype {
                    election_type,
                    got: (*first).to_owned(),
                });
            }
            Some(first) if allowed.contains(first) => take_first(&mut rest),
            _ => None,
        };

        let organisation = if election_type.takes_organisation() {
            take_first(&mut rest)
        } else {
            None
        };

        let takes_division = election_type.takes_division(subtype);
        let division = if takes_division == Some(true) {
            take_first(&mut rest)
        } else {
            None
        };

        if let Some(extra) = rest.first() {
            let extra = (*extra).to_owned();
            return Err(match middle.first() {
                Some(first) if allowed.is_empty() && ["a", "c", "r"].contains(first) => {
                    BallotError::SubtypeNotAllowed {
                        election_type,
                        got: (*first).to_owned(),
                    }
                }
                _ if takes_division == Some(false) => BallotError::DivisionNotAllowed {
                    election_type,
                    subtype: subtype.map(str::to_owned),
                    got: extra,
                },
                _ => BallotError::UnexpectedPart {
                    id: s.to_owned(),
                    part: extra,
                    election_type,
                },
            });
        }

        let id = BallotId {
            raw: s.to_owned(),
            election_type,
            subtype: subtype.map(str::to_owned),
            organisation: organisation.map(str::to_owned),
            division: division.map(str::to_owned),
            by_election,
            poll_date,
        };
        // `.by` is only ever written on a ballot: an election id cannot be a by-election.
        if by_election && !id.is_ballot() {
            let id_str = s.to_owned();
            return Err(
                if election_type.subtype_required() && id.subtype.is_none() {
                    BallotError::SubtypeMissing {
                        id: id_str,
                        election_type,
                    }
                } else if election_type.takes_organisation() && id.organisation.is_none() {
                    BallotError::OrganisationMissing {
                        id: id_str,
                        election_type,
                    }
                } else {
                    BallotError::DivisionMissing {
                        id: id_str,
                        election_type,
                    }
                },
            );
        }
        Ok(id)
    }

    /// The id as it was parsed.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn election_type(&self) -> ElectionType {
        self.election_type
    }

    /// `c`, `r` or `a` where the type has subtypes and the id names one.
    pub fn subtype(&self) -> Option<&str> {
        self.subtype.as_deref()
    }

    /// The organisation slug (`local`, `pcc`, `mayor` and `ref` ids), e.g. `leeds`.
    pub fn organisation(&self) -> Option<&str> {
        self.organisation.as_deref()
    }

    /// The division slug (ward, constituency, region), e.g. `headingley-hyde-park`.
    pub fn division(&self) -> Option<&str> {
        self.division.as_deref()
    }

    /// Whether the id ends in `.by.YYYY-MM-DD`.
    pub fn is_by_election(&self) -> bool {
        self.by_election
    }

    pub fn poll_date(&self) -> NaiveDate {
        self.poll_date
    }

    /// Whether this names a ballot (one contest), as opposed to an election that
    /// groups ballots (`parl.2024-07-04`, `sp.c.2021-05-06`, `local.leeds.2024-05-02`).
    /// Some ids are both, e.g. `mayor.london.2024-05-02` and `gla.a.2021-05-06`.
    pub fn is_ballot(&self) -> bool {
        let t = self.election_type;
        (!t.subtype_required() || self.subtype.is_some())
            && (!t.takes_organisation() || self.organisation.is_some())
            && match t.takes_division(self.subtype()) {
                Some(true) => self.division.is_some(),
                Some(false) => true,
                None => false,
            }
    }

    /// The shape of a ballot in this election, the parts the id gives filled in: for
    /// `parl.2024-07-04` "parl.<constituency>.2024-07-04", for `local.leeds.2027-05-06`
    /// "local.leeds.<ward>.2027-05-06". For error messages about election ids.
    pub fn ballot_form(&self) -> String {
        let t = self.election_type;
        let date = self.poll_date.format("%Y-%m-%d");
        let org = self.organisation.as_deref().unwrap_or("<organisation>");
        let sub = self.subtype.as_deref();
        let middle = match t {
            ElectionType::Parl | ElectionType::Nia => "<constituency>".to_owned(),
            ElectionType::Europarl => "<region>".to_owned(),
            ElectionType::Local => format!(
                "{}.<ward>",
                self.organisation.as_deref().unwrap_or("<council>")
            ),
            ElectionType::Senedd | ElectionType::Sp | ElectionType::Naw => match sub {
                Some("r") => "r.<region>".to_owned(),
                Some(s) => format!("{s}.<constituency>"),
                None if t == ElectionType::Senedd => "<constituency>".to_owned(),
                None => "c.<constituency>".to_owned(),
            },
            ElectionType::Gla => "c.<constituency>".to_owned(),
            ElectionType::Mayor | ElectionType::Pcc | ElectionType::Ref => org.to_owned(),
        };
        format!("{t}.{middle}.{date}")
    }

    /// Election ids this ballot belongs to, broadest first, e.g. for
    /// local.leeds.headingley-hyde-park.2027-05-06: ["local.2027-05-06", "local.leeds.2027-05-06"].
    ///
    /// These are `uk-election-ids`' group ids (election, subtype and organisation
    /// groups) other than this id itself: `parl.2024-07-04` gives none, and
    /// `mayor.london.2024-05-02` gives `["mayor.2024-05-02"]`.
    pub fn election_ids(&self) -> Vec<String> {
        let t = self.election_type.as_str();
        let date = self.poll_date.format("%Y-%m-%d");
        let mut ids = vec![format!("{t}.{date}")];
        if let Some(s) = &self.subtype {
            ids.push(format!("{t}.{s}.{date}"));
        }
        if let Some(o) = &self.organisation {
            ids.push(format!("{t}.{o}.{date}"));
        }
        ids.retain(|id| *id != self.raw);
        ids
    }
}

/// Removes and returns the first of `parts`.
fn take_first<'a>(parts: &mut &[&'a str]) -> Option<&'a str> {
    let (first, tail) = parts.split_first()?;
    *parts = tail;
    Some(first)
}

fn check_slug(id: &str, part: &str) -> Result<(), BallotError> {
    if part.is_empty() {
        return Err(BallotError::EmptyPart { id: id.to_owned() });
    }
    if let Some(ch) = part
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(BallotError::BadCharacter {
            part: part.to_owned(),
            ch,
        });
    }
    if part.contains("--") {
        return Err(BallotError::DoubleHyphen {
            part: part.to_owned(),
        });
    }
    Ok(())
}

fn parse_date(id: &str, part: &str) -> Result<NaiveDate, BallotError> {
    let b = part.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(if part.bytes().any(|c| c.is_ascii_digit()) {
            BallotError::BadDate {
                id: id.to_owned(),
                got: part.to_owned(),
            }
        } else {
            BallotError::MissingDate { id: id.to_owned() }
        });
    }
    let number = |r: std::ops::Range<usize>| part[r].parse::<u32>().unwrap_or(0);
    NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10))
        .filter(|d| d.year() >= 1)
        .ok_or_else(|| BallotError::ImpossibleDate {
            id: id.to_owned(),
            date: part.to_owned(),
        })
}

impl FromStr for BallotId {
    type Err = BallotError;

    fn from_str(s: &str) -> Result<BallotId, BallotError> {
        BallotId::parse(s)
    }
}

impl TryFrom<String> for BallotId {
    type Error = BallotError;

    fn try_from(s: String) -> Result<BallotId, BallotError> {
        BallotId::parse(&s)
    }
}

impl From<BallotId> for String {
    fn from(id: BallotId) -> String {
        id.raw
    }
}

impl fmt::Display for BallotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and renders the result as one line: the parsed parts, or the
    /// error message prefixed with `error: `.
    fn check(input: &str, expected: &str) {
        let got = match BallotId::parse(input) {
            Ok(id) => {
                assert_eq!(id.as_str(), input);
                assert_eq!(id.to_string(), input);
                let opt = |o: Option<&str>| o.unwrap_or("-").to_owned();
                format!(
                    "{} sub={} org={} div={} by={} date={} ballot={} elections=[{}]",
                    id.election_type(),
                    opt(id.subtype()),
                    opt(id.organisation()),
                    opt(id.division()),
                    id.is_by_election(),
                    id.poll_date(),
                    id.is_ballot(),
                    id.election_ids().join(" "),
                )
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "input: {input}");
    }

    // Election ids in `elections=[..]` were checked against uk-election-ids 0.10.1:
    // IdBuilder.from_id(input).ids, less the input itself.
    const GOOD: &[(&str, &str)] = &[
        (
            "parl.2024-07-04",
            "parl sub=- org=- div=- by=false date=2024-07-04 ballot=false elections=[]",
        ),
        (
            "parl.hartlepool.by.2021-05-06",
            "parl sub=- org=- div=hartlepool by=true date=2021-05-06 ballot=true elections=[parl.2021-05-06]",
        ),
        (
            "parl.islington-north.2024-07-04",
            "parl sub=- org=- div=islington-north by=false date=2024-07-04 ballot=true elections=[parl.2024-07-04]",
        ),
        (
            "local.leeds.headingley-hyde-park.2022-05-05",
            "local sub=- org=leeds div=headingley-hyde-park by=false date=2022-05-05 ballot=true elections=[local.2022-05-05 local.leeds.2022-05-05]",
        ),
        (
            "local.leeds.headingley-hyde-park.by.2027-05-06",
            "local sub=- org=leeds div=headingley-hyde-park by=true date=2027-05-06 ballot=true elections=[local.2027-05-06 local.leeds.2027-05-06]",
        ),
        (
            "local.leeds.2022-05-05",
            "local sub=- org=leeds div=- by=false date=2022-05-05 ballot=false elections=[local.2022-05-05]",
        ),
        (
            "local.2022-05-05",
            "local sub=- org=- div=- by=false date=2022-05-05 ballot=false elections=[]",
        ),
        (
            "senedd.c.aberavon.2021-05-06",
            "senedd sub=c org=- div=aberavon by=false date=2021-05-06 ballot=true elections=[senedd.2021-05-06 senedd.c.2021-05-06]",
        ),
        (
            "senedd.r.mid-and-west-wales.2021-05-06",
            "senedd sub=r org=- div=mid-and-west-wales by=false date=2021-05-06 ballot=true elections=[senedd.2021-05-06 senedd.r.2021-05-06]",
        ),
        // The 2026 Senedd ballots have no subtype: it is optional for senedd.
        (
            "senedd.gwynedd-maldwyn.2026-05-07",
            "senedd sub=- org=- div=gwynedd-maldwyn by=false date=2026-05-07 ballot=true elections=[senedd.2026-05-07]",
        ),
        (
            "senedd.c.2021-05-06",
            "senedd sub=c org=- div=- by=false date=2021-05-06 ballot=false elections=[senedd.2021-05-06]",
        ),
        (
            "naw.c.cardiff-central.2016-05-05",
            "naw sub=c org=- div=cardiff-central by=false date=2016-05-05 ballot=true elections=[naw.2016-05-05 naw.c.2016-05-05]",
        ),
        (
            "sp.r.glasgow.2021-05-06",
            "sp sub=r org=- div=glasgow by=false date=2021-05-06 ballot=true elections=[sp.2021-05-06 sp.r.2021-05-06]",
        ),
        (
            "sp.c.airdrie-and-shotts.by.2021-05-13",
            "sp sub=c org=- div=airdrie-and-shotts by=true date=2021-05-13 ballot=true elections=[sp.2021-05-13 sp.c.2021-05-13]",
        ),
        (
            "nia.belfast-east.2022-05-05",
            "nia sub=- org=- div=belfast-east by=false date=2022-05-05 ballot=true elections=[nia.2022-05-05]",
        ),
        (
            "gla.c.barnet-and-camden.2021-05-06",
            "gla sub=c org=- div=barnet-and-camden by=false date=2021-05-06 ballot=true elections=[gla.2021-05-06 gla.c.2021-05-06]",
        ),
        (
            "gla.a.2021-05-06",
            "gla sub=a org=- div=- by=false date=2021-05-06 ballot=true elections=[gla.2021-05-06]",
        ),
        (
            "gla.2021-05-06",
            "gla sub=- org=- div=- by=false date=2021-05-06 ballot=false elections=[]",
        ),
        (
            "mayor.london.2024-05-02",
            "mayor sub=- org=london div=- by=false date=2024-05-02 ballot=true elections=[mayor.2024-05-02]",
        ),
        (
            "pcc.northumbria.2019-07-18",
            "pcc sub=- org=northumbria div=- by=false date=2019-07-18 ballot=true elections=[pcc.2019-07-18]",
        ),
        (
            "pcc.northumbria.by.2019-07-18",
            "pcc sub=- org=northumbria div=- by=true date=2019-07-18 ballot=true elections=[pcc.2019-07-18 pcc.northumbria.2019-07-18]",
        ),
        (
            "europarl.south-east.2019-05-23",
            "europarl sub=- org=- div=south-east by=false date=2019-05-23 ballot=true elections=[europarl.2019-05-23]",
        ),
        (
            "ref.croydon.2021-10-07",
            "ref sub=- org=croydon div=- by=false date=2021-10-07 ballot=true elections=[ref.2021-10-07]",
        ),
        // A division may be named like a subtype letter where the type has none.
        (
            "parl.c.2024-07-04",
            "parl sub=- org=- div=c by=false date=2024-07-04 ballot=true elections=[parl.2024-07-04]",
        ),
        (
            "local.2024-02-29",
            "local sub=- org=- div=- by=false date=2024-02-29 ballot=false elections=[]",
        ),
    ];

    const BAD: &[(&str, &str)] = &[
        ("", "error: ballot id is empty"),
        (
            "council.leeds.2024-05-02",
            "error: unknown election type \"council\" (expected one of parl, local, senedd, sp, nia, gla, mayor, pcc, naw, europarl, ref)",
        ),
        (
            "local.leeds.2027-02-30",
            "error: ballot id \"local.leeds.2027-02-30\" has an impossible date 2027-02-30",
        ),
        (
            "local.2023-02-29",
            "error: ballot id \"local.2023-02-29\" has an impossible date 2023-02-29",
        ),
        (
            "parl.0000-07-04",
            "error: ballot id \"parl.0000-07-04\" has an impossible date 0000-07-04",
        ),
        (
            "local.leeds.head_ingley.2022-05-05",
            "error: bad character '_' in part \"head_ingley\" (ballot id parts are lowercase a-z, 0-9 and -)",
        ),
        (
            "local.Leeds.2022-05-05",
            "error: bad character 'L' in part \"Leeds\" (ballot id parts are lowercase a-z, 0-9 and -)",
        ),
        (
            "local.leeds.headingley hyde park.2022-05-05",
            "error: bad character ' ' in part \"headingley hyde park\" (ballot id parts are lowercase a-z, 0-9 and -)",
        ),
        (
            "local.ynys-môn.2022-05-05",
            "error: bad character 'ô' in part \"ynys-môn\" (ballot id parts are lowercase a-z, 0-9 and -)",
        ),
        (
            "local.leeds.headingley--hyde-park.2022-05-05",
            "error: part \"headingley--hyde-park\" has a double hyphen (ballot id parts use single hyphens)",
        ),
        (
            "local..2022-05-05",
            "error: ballot id \"local..2022-05-05\" has an empty part (parts are separated by single dots)",
        ),
        (
            "parl.2024-07-04.",
            "error: ballot id \"parl.2024-07-04.\" has an empty part (parts are separated by single dots)",
        ),
        (
            "parl",
            "error: ballot id \"parl\" does not end with a date (expected type[.subtype][.organisation][.division][.by].YYYY-MM-DD)",
        ),
        (
            "parl.hartlepool",
            "error: ballot id \"parl.hartlepool\" does not end with a date (expected type[.subtype][.organisation][.division][.by].YYYY-MM-DD)",
        ),
        (
            "parl.hartlepool.2021-5-6",
            "error: ballot id \"parl.hartlepool.2021-5-6\" ends with \"2021-5-6\", not a date of the form YYYY-MM-DD",
        ),
        (
            "parl.hartlepool.20210506",
            "error: ballot id \"parl.hartlepool.20210506\" ends with \"20210506\", not a date of the form YYYY-MM-DD",
        ),
        (
            "sp.glasgow-kelvin.2021-05-06",
            "error: unknown subtype \"glasgow-kelvin\" for election type sp (expected one of c, r)",
        ),
        (
            "gla.r.2021-05-06",
            "error: unknown subtype \"r\" for election type gla (expected one of c, a)",
        ),
        (
            "parl.c.hartlepool.2024-07-04",
            "error: election type parl takes no subtype (got \"c\")",
        ),
        (
            "local.c.leeds.headingley.2024-05-02",
            "error: election type local takes no subtype (got \"c\")",
        ),
        (
            "gla.a.barnet-and-camden.2021-05-06",
            "error: election type gla with subtype a takes no division (got \"barnet-and-camden\")",
        ),
        (
            "pcc.northumbria.newcastle.2019-07-18",
            "error: election type pcc takes no division (got \"newcastle\")",
        ),
        (
            "mayor.london.city.2024-05-02",
            "error: election type mayor takes no division (got \"city\")",
        ),
        (
            "parl.hartlepool.extra.2021-05-06",
            "error: unexpected part \"extra\" in ballot id \"parl.hartlepool.extra.2021-05-06\" (expected parl[.division][.by].YYYY-MM-DD)",
        ),
        (
            "local.leeds.headingley.extra.2022-05-05",
            "error: unexpected part \"extra\" in ballot id \"local.leeds.headingley.extra.2022-05-05\" (expected local[.organisation[.division]][.by].YYYY-MM-DD)",
        ),
        (
            "senedd.c.aberavon.extra.2021-05-06",
            "error: unexpected part \"extra\" in ballot id \"senedd.c.aberavon.extra.2021-05-06\" (expected senedd[.c|.r][.division][.by].YYYY-MM-DD)",
        ),
        (
            "parl.by.hartlepool.2021-05-06",
            "error: unexpected part \"hartlepool\" in ballot id \"parl.by.hartlepool.2021-05-06\" (expected parl[.division][.by].YYYY-MM-DD)",
        ),
        (
            "local.by.2024-05-02",
            "error: by-election \"local.by.2024-05-02\" has no organisation (election type local needs one)",
        ),
        (
            "mayor.by.2024-05-02",
            "error: by-election \"mayor.by.2024-05-02\" has no organisation (election type mayor needs one)",
        ),
        (
            "local.leeds.by.2024-05-02",
            "error: by-election \"local.leeds.by.2024-05-02\" has no division (election type local needs one)",
        ),
        (
            "parl.by.2024-05-02",
            "error: by-election \"parl.by.2024-05-02\" has no division (election type parl needs one)",
        ),
        (
            "sp.by.2021-05-13",
            "error: by-election \"sp.by.2021-05-13\" has no subtype (election type sp needs one of c, r)",
        ),
        (
            "sp.c.by.2021-05-13",
            "error: by-election \"sp.c.by.2021-05-13\" has no division (election type sp needs one)",
        ),
        (
            "ref.croydon.by.2021-10-07",
            "error: election type ref has no by-elections",
        ),
    ];

    #[test]
    fn good_ids() {
        for (input, expected) in GOOD {
            check(input, expected);
        }
    }

    #[test]
    fn bad_ids() {
        for (input, expected) in BAD {
            check(input, expected);
        }
    }

    #[test]
    fn serde_is_the_string_and_deserialize_validates() {
        let id = BallotId::parse("parl.hartlepool.by.2021-05-06").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"parl.hartlepool.by.2021-05-06\"");
        assert_eq!(serde_json::from_str::<BallotId>(&json).unwrap(), id);
        let err = serde_json::from_str::<BallotId>("\"local.leeds.2027-02-30\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("ballot id \"local.leeds.2027-02-30\" has an impossible date 2027-02-30"),
            "{err}"
        );
    }

    #[test]
    fn orders_and_parses_like_its_string() {
        let mut ids: Vec<BallotId> = [
            "sp.c.x.2021-05-06",
            "local.b.2024-05-02",
            "local.a.2024-05-02",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        ids.sort();
        let sorted: Vec<&str> = ids.iter().map(BallotId::as_str).collect();
        assert_eq!(
            sorted,
            [
                "local.a.2024-05-02",
                "local.b.2024-05-02",
                "sp.c.x.2021-05-06"
            ]
        );
    }

    #[test]
    fn election_type_slugs_round_trip() {
        for t in ElectionType::ALL {
            assert_eq!(ElectionType::from_slug(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
    }
}
