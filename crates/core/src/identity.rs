//! An Ed25519 signing identity, kept on disk as a PKCS#8 PEM file (readable by
//! `openssl pkey`). Reading and writing the file is the caller's job: this module only
//! converts between the key and its PEM text.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};

use crate::id::PublicId;

/// A PEM file did not hold an Ed25519 PKCS#8 private key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("not an Ed25519 PKCS#8 private key in PEM form: {0}")]
    Pem(String),
}

/// An Ed25519 signing key with its public id, and the organisation it signs for.
///
/// An organisation is identified by its first key for good. After a key rotation
/// its node signs with a new key *for* that identity: [`Identity::public_id`] is
/// then the organisation's (the entries' `author`), [`Identity::key_id`] the key's
/// own (the entries' `signer`).
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    /// The organisation this key signs for, when it is not the key itself.
    author: Option<PublicId>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.author {
            Some(author) => write!(
                f,
                "Identity({} signing for {})",
                self.key_id().short(),
                author.short()
            ),
            None => write!(f, "Identity({})", self.key_id().short()),
        }
    }
}

impl Identity {
    /// From 32 bytes of secret seed (the caller supplies the randomness).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
            author: None,
        }
    }

    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| IdentityError::Pem(e.to_string()))?;
        Ok(Self { key, author: None })
    }

    /// The key as PKCS#8 PEM text (secret: write it with mode 0600). This is the v1
    /// form (RFC 8410, no public key inside), as `openssl genpkey -algorithm ed25519`
    /// writes it: OpenSSL 3.0 refuses the v2 form.
    pub fn to_pem(&self) -> String {
        use ed25519_dalek::pkcs8::KeypairBytes;
        KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes as PKCS#8")
        .to_string()
    }

    /// The organisation this identity publishes as: the key's own public id, or
    /// the organisation it signs for after a rotation ([`Identity::signing_for`]).
    pub fn public_id(&self) -> PublicId {
        self.author.unwrap_or_else(|| self.key_id())
    }

    /// The public id of the key itself (what verifies its signatures).
    pub fn key_id(&self) -> PublicId {
        PublicId::from_bytes(self.key.verifying_key().to_bytes())
    }

    /// This key, signing for organisation `author` (whose log it continues after a
    /// rotation). `author` equal to the key's own id is the plain key.
    pub fn signing_for(self, author: PublicId) -> Self {
        let author = (author != self.key_id()).then_some(author);
        Self { author, ..self }
    }

    /// Whether it signs for an organisation other than its own key.
    pub fn is_rotated(&self) -> bool {
        self.author.is_some()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let identity = Identity::from_seed([7; 32]);
        let pem = identity.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // The v1 form: 48 bytes of DER, one line of base64 (OpenSSL 3.0 reads it).
        assert_eq!(pem.lines().count(), 3, "{pem}");
        let back = Identity::from_pem(&pem).unwrap();
        assert_eq!(back.public_id(), identity.public_id());
    }

    #[test]
    fn garbage_pem_is_refused() {
        let err = Identity::from_pem("hello").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not an Ed25519 PKCS#8 private key")
        );
    }
}
