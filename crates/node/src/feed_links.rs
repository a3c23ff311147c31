//! Members' calendar links: a secret token in the URL path (calendar apps cannot
//! send headers) that unlocks alliance-only events and the clash board.
//!
//! The node keeps only each token's SHA-256, with a label saying whom it was given
//! to, in the store's `feed_links` tree. Links are node-local: each organisation's
//! node hands out and revokes links for its own members. A revoked link is kept (so
//! `accord feed list` shows it) and answers 404.

use std::sync::Arc;

use accord_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// Bytes of randomness in a token (hex in the URL: 32 characters).
const TOKEN_BYTES: usize = 16;
/// Hex digits of the token hash that name a link.
const ID_HEX: usize = 12;
/// Shortest id prefix accepted by [`FeedLinks::revoke`].
const MIN_ID_PREFIX: usize = 6;
const MAX_LABEL: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum FeedLinkError {
    #[error("label must not be empty")]
    EmptyLabel,
    #[error("label is longer than {MAX_LABEL} characters")]
    LongLabel,
    #[error(
        "a live link is already labelled {}; revoke it first or choose another label",
        accord_core::quote::quoted(.0)
    )]
    LabelTaken(String),
    #[error("no link has id or label {}", accord_core::quote::quoted(.0))]
    NotFound(String),
    #[error(
        "{} matches more than one link; give more of the id",
        accord_core::quote::quoted(.0)
    )]
    Ambiguous(String),
    #[error("link {id} ({label}) is already revoked")]
    AlreadyRevoked { id: String, label: String },
    #[error("storage: {0}")]
    Store(String),
}

/// One link as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub label: String,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
}

/// A link as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: String,
    pub record: LinkRecord,
}

/// A freshly made link: the only time its token is known outside the member's app.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub info: LinkInfo,
    pub token: String,
}

/// The node's feed links over its store.
#[derive(Clone)]
pub struct FeedLinks {
    store: Store,
    /// Serialises creation and revocation, so label uniqueness holds.
    writing: Arc<Mutex<()>>,
    /// Revocations made through this value (and its clones): the calendar drops a
    /// revoked link's cached feeds when it moves.
    revocations: Arc<std::sync::atomic::AtomicU64>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn id_of(hash: &[u8; 32]) -> String {
    hex::encode(hash)[..ID_HEX].to_owned()
}

/// The id that names the link of `token` (lists and revocations use it).
pub fn link_id(token: &str) -> String {
    id_of(&hash(&token.trim().to_ascii_lowercase()))
}

fn decode(bytes: &[u8]) -> Result<LinkRecord, FeedLinkError> {
    serde_json::from_slice(bytes).map_err(|e| FeedLinkError::Store(format!("feed link: {e}")))
}

impl FeedLinks {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            writing: Arc::default(),
            revocations: Arc::default(),
        }
    }

    /// How many links have been revoked since the node started.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether `token` is a live link. Anything malformed is simply not live.
    pub fn is_live(&self, token: &str) -> Result<bool, FeedLinkError> {
        if token.len() != TOKEN_BYTES * 2 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        match self
            .store
            .feed_link(&hash(&token.to_ascii_lowercase()))
            .map_err(|e| FeedLinkError::Store(e.to_string()))?
        {
            Some(bytes) => Ok(decode(&bytes)?.revoked_ms.is_none()),
            None => Ok(false),
        }
    }

    /// Every link, live and revoked, oldest first.
    pub fn list(&self) -> Result<Vec<LinkInfo>, FeedLinkError> {
        let mut out = Vec::new();
        for (hash, bytes) in self
            .store
            .feed_links()
            .map_err(|e| FeedLinkError::Store(e.to_string()))?
        {
            out.push(LinkInfo {
                id: id_of(&hash),
                record: decode(&bytes)?,
            });
        }
        // Oldest first; links made in the same millisecond by label, then id (which
        // is random), so a list reads the same every time.
        out.sort_by(|a, b| {
            (a.record.created_ms, &a.record.label, &a.id).cmp(&(
                b.record.created_ms,
                &b.record.label,
                &b.id,
            ))
        });
        Ok(out)
    }

    /// Makes a link for `label`; answers once it is on disk.
    pub async fn create(&self, label: &str, now_ms: i64) -> Result<NewLink, FeedLinkError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(FeedLinkError::EmptyLabel);
        }
        if label.chars().count() > MAX_LABEL {
            return Err(FeedLinkError::LongLabel);
        }
        let _writing = self.writing.lock().await;
        if self
            .list()?
            .iter()
            .any(|l| l.record.revoked_ms.is_none() && l.record.label == label)
        {
            return Err(FeedLinkError::LabelTaken(label.to_owned()));
        }
        let mut secret = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut secret).map_err(|e| FeedLinkError::Store(e.to_string()))?;
        let token = hex::encode(secret);
        let hash = hash(&token);
        let record = LinkRecord {
            label: label.to_owned(),
            created_ms: now_ms,
            revoked_ms: None,
        };
        self.put(&hash, &record).await?;
        Ok(NewLink {
            info: LinkInfo {
                id: id_of(&hash),
                record,
            },
            token,
        })
    }

    /// Revokes the link with this id (or unique id prefix) or label; answers once
    /// the revocation is on disk.
    pub async fn revoke(&self, link: &str, now_ms: i64) -> Result<LinkInfo, FeedLinkError> {
        let link = link.trim();
        let _writing = self.writing.lock().await;
        let all = self
            .store
            .feed_links()
            .map_err(|e| FeedLinkError::Store(e.to_string()))?;
        let mut by_label = Vec::new();
        let mut by_id = Vec::new();
        for (hash, bytes) in all {
            let record = decode(&bytes)?;
            let id = id_of(&hash);
            if record.label == link {
                by_label.push((hash, id.clone(), record.clone()));
            }
            if link.len() >= MIN_ID_PREFIX && id.starts_with(&link.to_ascii_lowercase()) {
                by_id.push((hash, id, record));
            }
        }
        // A label names the live link with it, if any; an id prefix must be unique.
        let live_by_label: Vec<_> = by_label
            .iter()
            .filter(|(_, _, r)| r.revoked_ms.is_none())
            .cloned()
            .collect();
        let chosen = match (live_by_label.len(), by_label.len(), by_id.len()) {
            (1, _, _) => live_by_label.into_iter().next(),
            (0, 0, 1) => by_id.into_iter().next(),
            (0, 0, 0) => None,
            (0, n, _) if n > 0 => by_label.into_iter().next(),
            _ => return Err(FeedLinkError::Ambiguous(link.to_owned())),
        };
        let (hash, id, mut record) = chosen.ok_or_else(|| FeedLinkError::NotFound(link.into()))?;
        if record.revoked_ms.is_some() {
            return Err(FeedLinkError::AlreadyRevoked {
                id,
                label: record.label,
            });
        }
        record.revoked_ms = Some(now_ms);
        self.put(&hash, &record).await?;
        self.revocations
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(LinkInfo { id, record })
    }

    async fn put(&self, hash: &[u8; 32], record: &LinkRecord) -> Result<(), FeedLinkError> {
        let bytes = serde_json::to_vec(record).expect("a link record serialises");
        self.store
            .put_feed_link(hash, &bytes)
            .await
            .map_err(|e| FeedLinkError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_core::AllianceId;

    fn links() -> (tempfile::TempDir, FeedLinks) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            AllianceId::from_slice(&[7u8; 32]).unwrap(),
            1 << 20,
        )
        .unwrap();
        (dir, FeedLinks::new(store))
    }

    #[tokio::test]
    async fn create_check_revoke() {
        let (_dir, links) = links();
        let jo = links.create("Jo (Leeds)", 1).await.unwrap();
        assert_eq!(jo.token.len(), 32);
        assert_eq!(link_id(&jo.token), jo.info.id);
        assert!(links.is_live(&jo.token).unwrap());
        assert!(links.is_live(&jo.token.to_uppercase()).unwrap());
        assert!(!links.is_live("0123456789abcdef0123456789abcdef").unwrap());
        assert!(!links.is_live("not a token").unwrap());
        assert!(matches!(
            links.create("Jo (Leeds)", 2).await,
            Err(FeedLinkError::LabelTaken(_))
        ));
        let sam = links.create("Sam", 3).await.unwrap();
        let revoked = links.revoke("Jo (Leeds)", 4).await.unwrap();
        assert_eq!(revoked.id, jo.info.id);
        assert_eq!(revoked.record.revoked_ms, Some(4));
        assert!(!links.is_live(&jo.token).unwrap());
        assert!(links.is_live(&sam.token).unwrap());
        assert!(matches!(
            links.revoke(&jo.info.id, 5).await,
            Err(FeedLinkError::AlreadyRevoked { .. })
        ));
        // The label is free again once its link is revoked.
        let jo2 = links.create("Jo (Leeds)", 6).await.unwrap();
        links.revoke(&jo2.info.id[..6], 7).await.unwrap();
        assert!(matches!(
            links.revoke("nobody", 8).await,
            Err(FeedLinkError::NotFound(_))
        ));
        assert!(matches!(
            links.create("  ", 9).await,
            Err(FeedLinkError::EmptyLabel)
        ));
        let listed: Vec<_> = links
            .list()
            .unwrap()
            .into_iter()
            .map(|l| (l.record.label, l.record.revoked_ms.is_some()))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("Jo (Leeds)".to_owned(), true),
                ("Sam".to_owned(), false),
                ("Jo (Leeds)".to_owned(), true)
            ]
        );
    }
}
