//! Paging of every list the client API serves (see the top of `ledger.proto`).
//!
//! A page token is opaque to clients: hex of a small JSON document naming the list
//! and the key of the last item sent, in the list's own order. The next page starts
//! strictly after that key, so entries appended between pages neither repeat nor
//! skip what was already in order. Lists read their items from the state's ordered
//! indexes starting at the key, so a page costs what it holds.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

/// Items per page when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Most items per page (larger requests are lowered to this).
pub const MAX_PAGE_SIZE: usize = 1000;
/// A page is cut before its items would exceed this many encoded bytes, well under
/// the 4 MiB a default gRPC client accepts.
pub const MAX_PAGE_BYTES: usize = 3 << 20;

/// A page asked for: how many items, and after which key.
#[derive(Debug)]
pub struct PageRequest<K> {
    list: &'static str,
    pub size: usize,
    pub after: Option<K>,
}

#[derive(Serialize, serde::Deserialize)]
struct Token<K> {
    list: String,
    after: K,
}

/// Reads `page_size` (0 for `default`, at most `max`) and `page_token` of a request
/// for the list `list`. A token this list did not make is INVALID_ARGUMENT.
pub fn request<K: DeserializeOwned>(
    list: &'static str,
    page_size: u32,
    page_token: &str,
    default: usize,
    max: usize,
) -> Result<PageRequest<K>, Status> {
    let size = match page_size {
        0 => default,
        n => (n as usize).min(max),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        let bad = || {
            Status::invalid_argument(format!(
                "page_token {} is not a page token of {list} (pass back a next_page_token \
                 unchanged, or none for the first page)",
                accord_core::quote::quoted(page_token)
            ))
        };
        let bytes = hex::decode(page_token).map_err(|_| bad())?;
        let token: Token<K> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if token.list != list {
            return Err(bad());
        }
        Some(token.after)
    };
    Ok(PageRequest { list, size, after })
}

/// The same with the default sizes.
pub fn list_request<K: DeserializeOwned>(
    list: &'static str,
    page_size: u32,
    page_token: &str,
) -> Result<PageRequest<K>, Status> {
    request(
        list,
        page_size,
        page_token,
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    )
}

impl<K: Serialize> PageRequest<K> {
    /// Fills a page from `items` (each with its key, already after the token's key,
    /// in order): up to `size` items and [`MAX_PAGE_BYTES`], at least one. Returns
    /// the items and the next page's token (empty if `items` had no more).
    pub fn fill<T: prost::Message>(
        &self,
        items: impl IntoIterator<Item = Result<(K, T), Status>>,
    ) -> Result<(Vec<T>, String), Status> {
        let mut page = Vec::new();
        let mut bytes = 0usize;
        let mut last: Option<K> = None;
        let mut more = false;
        for item in items {
            let (key, item) = item?;
            // The field tag and length prefix of a repeated message: a few bytes.
            let size = item.encoded_len() + 8;
            if page.len() >= self.size || (!page.is_empty() && bytes + size > MAX_PAGE_BYTES) {
                more = true;
                break;
            }
            bytes += size;
            page.push(item);
            last = Some(key);
        }
        let token =
            match last {
                Some(after) if more => {
                    let token = Token {
                        list: self.list.to_owned(),
                        after,
                    };
                    hex::encode(serde_json::to_vec(&token).map_err(|e| {
                        Status::internal(format!("page token does not serialise: {e}"))
                    })?)
                }
                _ => String::new(),
            };
        Ok((page, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: u32) -> Result<(u32, accord_core::pb::Head), Status> {
        Ok((
            n,
            accord_core::pb::Head {
                seq: u64::from(n),
                ..Default::default()
            },
        ))
    }

    #[test]
    fn pages_follow_their_tokens_to_the_end() {
        let mut after: Option<u32> = None;
        let mut seen = Vec::new();
        let mut token = String::new();
        for _ in 0..10 {
            let request: PageRequest<u32> = list_request("numbers", 3, &token).unwrap();
            assert_eq!(request.after, after);
            let from = request.after.map_or(0, |a| a + 1);
            let (page, next) = request.fill((from..8).map(ok)).unwrap();
            seen.extend(page.iter().map(|h| h.seq));
            if next.is_empty() {
                break;
            }
            after = Some(u32::try_from(*seen.last().unwrap()).unwrap());
            token = next;
        }
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_token_of_another_list_or_garbage_is_invalid_argument() {
        let request: PageRequest<u32> = list_request("numbers", 1, "").unwrap();
        let (_, token) = request.fill((0..3).map(ok)).unwrap();
        let other = list_request::<u32>("letters", 1, &token).unwrap_err();
        assert_eq!(other.code(), tonic::Code::InvalidArgument);
        let garbage = list_request::<u32>("numbers", 1, &"zz".repeat(10_000)).unwrap_err();
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument);
        assert!(garbage.message().len() < 600, "{}", garbage.message());
    }

    #[test]
    fn sizes_default_and_cap() {
        assert_eq!(
            list_request::<u32>("n", 0, "").unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            list_request::<u32>("n", 5000, "").unwrap().size,
            MAX_PAGE_SIZE
        );
    }
}
