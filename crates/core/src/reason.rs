//! Why the rules voided or refused a proposal, refused a departure or set an entry
//! aside: a stable [`Code`], which the state digest holds, and this release's words
//! for people, which it does not.
//!
//! The views' JSON is what the state digest hashes ([`crate::state::item_hash`]), so
//! a [`Reason`] serialises as its code alone: rewording a message (clearer English,
//! a name or a roster version added to it) changes what the API and the CLI show
//! and leaves every node's digest as it was. A code names what the rules
//! decided, so a new code, or a case moved from one code to another, changes the
//! digest and needs a new [`crate::state::RULES_VERSION`].

use std::fmt;

use serde::Serialize;

/// What the rules decided, in a word that never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// A proposal is void: a change to what it changes (the same organisation, name
    /// or quorum rule) took effect after the roster version it was made against.
    RosterVersionSuperseded,
    /// A proposal would admit, or recover an organisation to, a key the roster
    /// already holds.
    KeyInRoster,
    /// A proposal would admit an organisation under the name of an active one.
    NameTaken,
    /// A proposal names an organisation that is not active (left, removed, or never
    /// admitted).
    NotActive,
    /// A proposal would give an organisation the role it already has.
    RoleUnchanged,
    /// A proposal's quorum rule breaks the rule's own limits.
    QuorumRuleInvalid,
    /// A proposal's quorum count is more than the members.
    QuorumCountOverMembers,
    /// A change or departure would leave the alliance with no secretary.
    NoSecretary,
    /// A change or departure would leave the alliance with fewer than two members.
    TooFewMembers,
    /// An entry set aside: its kind is unknown to this release.
    UnknownKind,
    /// An entry set aside: its body does not meet this release's body rules.
    BodyRules,
    /// An entry set aside: it names a key that is not an organisation of the roster
    /// in a role the field needs.
    UnknownParty,
}

impl Code {
    /// Every code, in the order of the documentation.
    pub const ALL: [Code; 12] = [
        Code::RosterVersionSuperseded,
        Code::KeyInRoster,
        Code::NameTaken,
        Code::NotActive,
        Code::RoleUnchanged,
        Code::QuorumRuleInvalid,
        Code::QuorumCountOverMembers,
        Code::NoSecretary,
        Code::TooFewMembers,
        Code::UnknownKind,
        Code::BodyRules,
        Code::UnknownParty,
    ];

    /// The code as the digest holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::RosterVersionSuperseded => "roster-version-superseded",
            Code::KeyInRoster => "key-in-roster",
            Code::NameTaken => "name-taken",
            Code::NotActive => "not-active",
            Code::RoleUnchanged => "role-unchanged",
            Code::QuorumRuleInvalid => "quorum-rule-invalid",
            Code::QuorumCountOverMembers => "quorum-count-over-members",
            Code::NoSecretary => "no-secretary",
            Code::TooFewMembers => "too-few-members",
            Code::UnknownKind => "unknown-kind",
            Code::BodyRules => "body-rules",
            Code::UnknownParty => "unknown-party",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision of the rules: its [`Code`] and the words that explain it here. Shown
/// as its words; serialised as its code (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    code: Code,
    text: String,
}

impl Reason {
    pub fn new(code: Code, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The words for people, in this release's English.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.code.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of a reason (what the digest hashes) is its code, whatever the
    /// words; the serde names and [`Code::as_str`] agree for every code.
    #[test]
    fn a_reason_serialises_as_its_code_alone() {
        for code in Code::ALL {
            let json = serde_json::to_string(&Reason::new(code, "any words at all")).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        let mut seen: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), Code::ALL.len(), "codes are distinct");
    }
}
