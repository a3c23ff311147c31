//! Operator tokens: every Ledger call carries `authorization: Bearer <token>`; the
//! node keeps only each token's SHA-256 and the identities it may publish as.

use std::sync::Arc;

use accord_core::PublicId;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::config::Operator;

/// The operator a request was authenticated as, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub identities: Vec<PublicId>,
}

/// The operators a node knows, replaced whole when the config is reloaded (SIGHUP).
pub type Operators = Arc<arc_swap::ArcSwap<Vec<Operator>>>;

/// Checks the bearer token of every call against the operators.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    operators: Operators,
}

impl TokenCheck {
    pub fn new(operators: Vec<Operator>) -> Self {
        Self::shared(Arc::new(arc_swap::ArcSwap::from_pointee(operators)))
    }

    /// Checks against whatever `operators` holds at each call.
    pub fn shared(operators: Operators) -> Self {
        Self { operators }
    }

    fn caller(&self, header: Option<&str>) -> Result<Caller, Status> {
        let header = header.ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata (\"Bearer <token>\")")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?
            .trim();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare every operator's hash in full, so the time taken does not depend on
        // which operator (if any) matched.
        let mut found = None;
        let operators = self.operators.load();
        for op in operators.iter() {
            let same = op
                .token_sha256
                .iter()
                .zip(hash.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some(op);
            }
        }
        let op = found.ok_or_else(|| Status::unauthenticated("token is not known to this node"))?;
        Ok(Caller {
            name: op.name.clone(),
            identities: op.identities.clone(),
        })
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or(""));
        let caller = self.caller(header)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The caller of a request that passed [`TokenCheck`].
pub fn caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}
