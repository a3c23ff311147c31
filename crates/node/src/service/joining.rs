//! The node in the roster, and invitations (ARCHITECTURE.md, "Nodes in the roster"):
//! `Announce` signs a node announcement as a home identity; `GetInvitation` gives a
//! new organisation what it needs to join.

use accord_core::charter::Role;
use accord_core::roster::Node;
use accord_core::{PublicId, pb};
use tonic::{Request, Response, Status};

use super::LedgerService;
use crate::auth::caller;
use crate::tls::Fingerprint;

/// Where peers reach this node and the certificate it presents, as its config says.
#[derive(Debug, Clone, Default)]
pub struct ThisNode {
    /// `host:port`: the config's `advertise`.
    pub advertise: Option<String>,
    /// SHA-256 of the TLS certificate it runs with.
    pub cert_sha256: Option<Fingerprint>,
}

impl ThisNode {
    fn address(&self) -> Result<&str, Status> {
        self.advertise.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this node's config has no `advertise` address (host:port where peers reach \
                 it): add one, or name the address",
            )
        })
    }

    fn cert(&self) -> Result<Fingerprint, Status> {
        self.cert_sha256.ok_or_else(|| {
            Status::failed_precondition(
                "this node runs without TLS, so it has no certificate to announce: add [tls], \
                 or name the fingerprint",
            )
        })
    }
}

pub(super) async fn announce(
    service: &LedgerService,
    request: Request<pb::AnnounceRequest>,
) -> Result<Response<pb::PublishResponse>, Status> {
    let caller = caller(&request)?.clone();
    let request = request.into_inner();
    let address = if request.address.is_empty() {
        service.this_node.address()?.to_owned()
    } else {
        request.address
    };
    let cert = if request.cert_sha256.is_empty() {
        service.this_node.cert()?.to_vec()
    } else {
        request.cert_sha256
    };
    // Checked before waiting for the node to be ready to sign: bad input is refused
    // at once.
    let node = Node::new(&address, &cert).map_err(Status::invalid_argument)?;
    let index = service.home_index(&caller, &request.author).await?;
    let body = pb::NodeAnnouncement {
        address: node.address,
        cert_sha256: node.cert_sha256.to_vec(),
    };
    service
        .publish_body(
            index,
            pb::EntryKind::NodeAnnouncement as i32,
            prost::Message::encode_to_vec(&body),
        )
        .await
}

pub(super) async fn invitation(
    service: &LedgerService,
    request: Request<pb::GetInvitationRequest>,
) -> Result<Response<pb::Invitation>, Status> {
    let caller = caller(&request)?.clone();
    let state = service.ledger.state();
    let roster = state.roster();
    let inviter: Option<&PublicId> = caller
        .identities
        .iter()
        .find(|k| matches!(roster.role(k), Some(Role::Member | Role::Secretary)));
    let Some(inviter) = inviter else {
        return Err(Status::permission_denied(format!(
            "operator {:?} speaks for no active member or secretary of the roster, and only \
             they may invite",
            caller.name
        )));
    };
    let peer_address = service.this_node.address()?.to_owned();
    let peer_cert = service.this_node.cert()?;
    Ok(Response::new(pb::Invitation {
        charter: state.charter().bytes().to_vec(),
        roster_version: roster.version,
        entries_digest: state.entries_digest().to_vec(),
        peer_address,
        peer_cert_sha256: peer_cert.to_vec(),
        invited_by: roster.name_of(inviter).unwrap_or_default().to_owned(),
    }))
}
