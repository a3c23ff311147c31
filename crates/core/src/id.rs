//! Fixed-size identifiers: public keys, entry ids and alliance ids. All are shown and
//! parsed as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A 32-byte id was the wrong length or not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be 32 bytes, got {len}")]
    Length { what: &'static str, len: usize },
    #[error("{what} must be 64 hex digits: {}", crate::quote::quoted(.text))]
    Hex { what: &'static str, text: String },
}

macro_rules! id32 {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// From a byte slice that must be exactly 32 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                let array: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| IdError::Length { what: $what, len: bytes.len() })?;
                Ok(Self(array))
            }

            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_vec(&self) -> Vec<u8> {
                self.0.to_vec()
            }

            /// The first 8 hex digits, for tables and logs.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(hex_digits(&self.0).as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut bytes)
                    .map_err(|_| IdError::Hex { what: $what, text: text.to_owned() })?;
                Ok(Self(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(hex_digits(&self.0).as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id32!(
    /// An Ed25519 public key: the identity of an organisation or a secretary.
    PublicId,
    "public key"
);
id32!(
    /// SHA-256 of a domain tag and an entry's exact bytes.
    EntryId,
    "entry id"
);
id32!(
    /// SHA-256 of a domain tag and the charter file's exact bytes.
    AllianceId,
    "alliance id"
);

/// The 64 lowercase hex digits of a 32-byte id, on the stack: ids are written by
/// the million into the state digest's JSON and every listing, and an allocated
/// `String` per id (with serde's `collect_str` going through `Display`) made them
/// the largest part of the digest's cost.
struct HexDigits([u8; 64]);

impl HexDigits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

fn hex_digits(bytes: &[u8; 32]) -> HexDigits {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    HexDigits(out)
}

/// SHA-256 of `tag` followed by `bytes`. Tags end in a NUL byte so that no tag is a
/// prefix of another's input.
pub(crate) fn tagged_hash(tag: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    hasher.update(bytes);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PublicId::from_bytes([0xab; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublicId>().unwrap(), id);
        assert_eq!(id.short(), "abababab");
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let id = EntryId::from_bytes(bytes);
        assert_eq!(id.to_string(), hex::encode(bytes));
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", hex::encode(bytes))
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(
            "abc".parse::<EntryId>().unwrap_err().to_string(),
            "entry id must be 64 hex digits: \"abc\""
        );
        assert_eq!(
            PublicId::from_slice(&[1, 2, 3]).unwrap_err().to_string(),
            "public key must be 32 bytes, got 3"
        );
    }
}
