//! The alliance charter: its name, member organisations with their public keys,
//! secretaries and rules. The charter file is JSON; the alliance id is the SHA-256 of
//! a domain tag and the file's exact bytes, so the file is never re-encoded.
//!
//! Membership is expected to change later through signed entries (admission,
//! departure, key rotation). Validation therefore asks [`Charter::role`] about an
//! author rather than reading the member list directly, and the charter carries a
//! format number: a later roster that folds membership entries over the charter
//! can answer the same question without changing stored data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::{AllianceId, PublicId, tagged_hash};

const CHARTER_ID_TAG: &[u8] = b"accord/v1/charter\0";
/// The charter format this version writes and reads.
pub const CHARTER_FORMAT: u32 = 1;
/// Default limit on an encoded signed entry, in bytes.
pub const DEFAULT_MAX_ENTRY_BYTES: u32 = 64 * 1024;
/// Default tolerance for entry timestamps ahead of the receiving node's clock.
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: u32 = 300;

#[derive(Debug, thiserror::Error)]
pub enum CharterError {
    #[error("charter is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("charter format {found} is not supported (this version reads format {CHARTER_FORMAT})")]
    Format { found: u32 },
    #[error("charter has no name")]
    NoName,
    #[error("charter has no members")]
    NoMembers,
    #[error("charter names key {0} more than once")]
    DuplicateKey(PublicId),
    #[error("charter names {0:?} more than once")]
    DuplicateName(String),
    #[error("charter entry has an empty name")]
    EmptyName,
    #[error("charter quorum rule: {0}")]
    Quorum(String),
    #[error("rule {rule} must be between {min} and {max}, got {value}")]
    Rule {
        rule: &'static str,
        min: u32,
        max: u32,
        value: u32,
    },
}

/// What an identity may do under the charter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A member organisation: may declare intentions, publish and endorse.
    Member,
    /// An alliance secretary: may record resolutions, publish and endorse.
    Secretary,
    /// May publish events and statements, not intentions; takes no part in
    /// decisions. Only governance entries make one (a charter names members and
    /// secretaries).
    Observer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Secretary => "secretary",
            Self::Observer => "observer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_lowercase().as_str() {
            "member" => Ok(Self::Member),
            "secretary" => Ok(Self::Secretary),
            "observer" => Ok(Self::Observer),
            other => Err(format!(
                "role {other:?} is not one of member, secretary, observer"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterMember {
    pub name: String,
    pub key: PublicId,
    /// Electoral Commission register id, e.g. PP53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterSecretary {
    pub name: String,
    pub key: PublicId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: u32,
    #[serde(default = "default_max_clock_skew_secs")]
    pub max_clock_skew_secs: u32,
    /// How proposals to change the roster pass; none means a majority of members.
    /// Left out of the file when none, so older charters keep their bytes and id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<crate::roster::QuorumRule>,
}

fn default_max_entry_bytes() -> u32 {
    DEFAULT_MAX_ENTRY_BYTES
}

fn default_max_clock_skew_secs() -> u32 {
    DEFAULT_MAX_CLOCK_SKEW_SECS
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_clock_skew_secs: DEFAULT_MAX_CLOCK_SKEW_SECS,
            quorum: None,
        }
    }
}

/// The charter file's contents, as written by `accord charter`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CharterDoc {
    pub accord_charter: u32,
    pub name: String,
    pub members: Vec<CharterMember>,
    #[serde(default)]
    pub secretaries: Vec<CharterSecretary>,
    #[serde(default)]
    pub rules: Rules,
}

impl CharterDoc {
    /// The charter file bytes for this document: pretty JSON with a final newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("charter serialises");
        bytes.push(b'\n');
        bytes
    }
}

/// A validated charter, with the exact bytes it was read from.
#[derive(Debug, Clone)]
pub struct Charter {
    bytes: Vec<u8>,
    id: AllianceId,
    doc: CharterDoc,
    roles: BTreeMap<PublicId, (Role, usize)>,
}

impl Charter {
    /// Parses and validates a charter file. The alliance id is computed over `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CharterError> {
        let doc: CharterDoc = serde_json::from_slice(&bytes)?;
        if doc.accord_charter != CHARTER_FORMAT {
            return Err(CharterError::Format {
                found: doc.accord_charter,
            });
        }
        if doc.name.trim().is_empty() {
            return Err(CharterError::NoName);
        }
        if doc.members.is_empty() {
            return Err(CharterError::NoMembers);
        }
        check_rule(
            "max_entry_bytes",
            doc.rules.max_entry_bytes,
            1024,
            16 * 1024 * 1024,
        )?;
        check_rule(
            "max_clock_skew_secs",
            doc.rules.max_clock_skew_secs,
            1,
            86_400,
        )?;
        if let Some(rule) = doc.rules.quorum {
            rule.check().map_err(CharterError::Quorum)?;
        }
        let mut roles = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        let people = doc
            .members
            .iter()
            .map(|m| (&m.name, m.key, Role::Member))
            .chain(
                doc.secretaries
                    .iter()
                    .map(|s| (&s.name, s.key, Role::Secretary)),
            );
        for (index, (name, key, role)) in people.enumerate() {
            if name.trim().is_empty() {
                return Err(CharterError::EmptyName);
            }
            if !names.insert(name.to_lowercase()) {
                return Err(CharterError::DuplicateName(name.clone()));
            }
            if roles.insert(key, (role, index)).is_some() {
                return Err(CharterError::DuplicateKey(key));
            }
        }
        let id = AllianceId::from_bytes(tagged_hash(CHARTER_ID_TAG, &bytes));
        Ok(Self {
            bytes,
            id,
            doc,
            roles,
        })
    }

    pub fn id(&self) -> AllianceId {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn name(&self) -> &str {
        &self.doc.name
    }

    pub fn rules(&self) -> &Rules {
        &self.doc.rules
    }

    pub fn members(&self) -> &[CharterMember] {
        &self.doc.members
    }

    pub fn secretaries(&self) -> &[CharterSecretary] {
        &self.doc.secretaries
    }

    /// The role of `key` under the charter, or `None` for an outsider.
    pub fn role(&self, key: &PublicId) -> Option<Role> {
        self.roles.get(key).map(|(role, _)| *role)
    }

    /// The display name of a member or secretary.
    pub fn name_of(&self, key: &PublicId) -> Option<&str> {
        let (role, index) = self.roles.get(key)?;
        Some(match role {
            Role::Member | Role::Observer => &self.doc.members[*index].name,
            Role::Secretary => &self.doc.secretaries[*index - self.doc.members.len()].name,
        })
    }

    /// Looks up an identity by its name (case-insensitive) or its public key in hex.
    pub fn find(&self, name_or_key: &str) -> Option<PublicId> {
        if let Ok(key) = name_or_key.parse::<PublicId>() {
            return self.roles.contains_key(&key).then_some(key);
        }
        let wanted = name_or_key.trim().to_lowercase();
        self.doc
            .members
            .iter()
            .map(|m| (&m.name, m.key))
            .chain(self.doc.secretaries.iter().map(|s| (&s.name, s.key)))
            .find(|(name, _)| name.to_lowercase() == wanted)
            .map(|(_, key)| key)
    }
}

fn check_rule(rule: &'static str, value: u32, min: u32, max: u32) -> Result<(), CharterError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(CharterError::Rule {
            rule,
            min,
            max,
            value,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn doc(
        members: &[(&str, PublicId)],
        secretaries: &[(&str, PublicId)],
    ) -> CharterDoc {
        CharterDoc {
            accord_charter: CHARTER_FORMAT,
            name: "Test Alliance".into(),
            members: members
                .iter()
                .map(|(name, key)| CharterMember {
                    name: (*name).into(),
                    key: *key,
                    ec_id: None,
                })
                .collect(),
            secretaries: secretaries
                .iter()
                .map(|(name, key)| CharterSecretary {
                    name: (*name).into(),
                    key: *key,
                })
                .collect(),
            rules: Rules::default(),
        }
    }

    fn key(n: u8) -> PublicId {
        PublicId::from_bytes([n; 32])
    }

    #[test]
    fn roles_and_names() {
        let charter = Charter::from_bytes(
            doc(&[("A", key(1)), ("B", key(2))], &[("Sec", key(3))]).to_file_bytes(),
        )
        .unwrap();
        assert_eq!(charter.role(&key(1)), Some(Role::Member));
        assert_eq!(charter.role(&key(3)), Some(Role::Secretary));
        assert_eq!(charter.role(&key(4)), None);
        assert_eq!(charter.name_of(&key(3)), Some("Sec"));
        assert_eq!(charter.find("b"), Some(key(2)));
        assert_eq!(charter.find(&key(3).to_string()), Some(key(3)));
    }

    #[test]
    fn id_is_over_exact_bytes() {
        let bytes = doc(&[("A", key(1))], &[]).to_file_bytes();
        let a = Charter::from_bytes(bytes.clone()).unwrap();
        let mut spaced = bytes.clone();
        spaced.insert(0, b' ');
        let b = Charter::from_bytes(spaced).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), Charter::from_bytes(bytes).unwrap().id());
    }

    #[test]
    fn bad_charters_are_refused() {
        let check = |d: CharterDoc, want: &str| {
            assert_eq!(
                Charter::from_bytes(d.to_file_bytes())
                    .unwrap_err()
                    .to_string(),
                want
            );
        };
        check(doc(&[], &[]), "charter has no members");
        check(
            doc(&[("A", key(1)), ("B", key(1))], &[]),
            &format!("charter names key {} more than once", key(1)),
        );
        check(
            doc(&[("A", key(1)), ("a", key(2))], &[]),
            "charter names \"a\" more than once",
        );
        let mut d = doc(&[("A", key(1))], &[]);
        d.accord_charter = 9;
        check(
            d,
            "charter format 9 is not supported (this version reads format 1)",
        );
    }
}
