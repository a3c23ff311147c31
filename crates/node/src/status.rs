//! The one place where entry and append refusals become gRPC statuses. The table of
//! every refusal and its code is in ARCHITECTURE.md ("gRPC status codes"); this
//! file's part of it:
//!
//! - `InvalidArgument`: the entry or request itself is wrong (size, bytes, fields,
//!   alliance, signature, body, a clock far ahead). Resending it cannot help.
//! - `PermissionDenied`: the author's role does not allow it, or the token does not
//!   cover the identity.
//! - `AlreadyExists`: the very same entry is already stored (a replay).
//! - `FailedPrecondition`: the entry does not fit the author's log as this node has
//!   it (a gap, a wrong previous hash, a fork, a frozen log, time going back). It may
//!   fit once missing entries arrive.
//! - `Unavailable`: the node is stopping or its storage failed.
//!
//! Elsewhere: `Unauthenticated` (`auth`), `ResourceExhausted` and `DeadlineExceeded`
//! (`limits`: oversized requests, stream bounds, the request timeout),
//! `InvalidArgument` for bad page tokens (`paging`) and query fields (`service`).
//!
//! The message is the core's own text for the rule that failed, bounded by
//! [`accord_core::quote::bounded`] (values inside it are already cut to 200
//! characters by [`accord_core::quote::quoted`]).

use accord_core::EntryError;
use tonic::Status;

use crate::ledger::AppendError;

pub fn entry_status(error: &EntryError) -> Status {
    use EntryError as E;
    let message = accord_core::quote::bounded(&error.to_string()).into_owned();
    match error {
        E::TooLarge { .. }
        | E::Undecodable(_)
        | E::BadField { .. }
        | E::WrongAlliance { .. }
        | E::BadSignature
        | E::Body(_)
        | E::UnknownParty { .. }
        | E::FromTheFuture { .. } => Status::invalid_argument(message),
        E::NotAMember(_)
        | E::NotASecretary(_)
        | E::NotAMemberOrganisation(_)
        | E::NotAllowed { .. }
        | E::Removed { .. }
        | E::Superseded { .. }
        | E::RetiredKey { .. }
        | E::WrongSigner { .. } => Status::permission_denied(message),
        E::Governance(g) => governance_status(g, message),
        E::Duplicate { .. } => Status::already_exists(message),
        E::SeqGap { .. }
        | E::PrevMismatch { .. }
        | E::Fork { .. }
        | E::Frozen { .. }
        | E::TimeWentBack { .. } => Status::failed_precondition(message),
    }
}

/// Governance refusals: who may vote or propose is a permission; a vote twice is
/// `AlreadyExists`; a proposal that is not open (lapsed, void, passed) or a change
/// the roster's rules refuse is `FailedPrecondition`; an unknown proposal is
/// `NotFound`.
fn governance_status(error: &accord_core::roster::GovernanceError, message: String) -> Status {
    use accord_core::roster::GovernanceError as G;
    match error {
        G::NotAVoter { .. }
        | G::NotInElectorate { .. }
        | G::NotAProposer { .. }
        | G::NotAnnouncer { .. } => Status::permission_denied(message),
        G::AlreadyVoted { .. } => Status::already_exists(message),
        G::UnknownProposal(_) => Status::not_found(message),
        G::Closed { .. }
        | G::Lapsed { .. }
        | G::Refused(_)
        | G::Void(_)
        | G::CannotLeave { .. } => Status::failed_precondition(message),
    }
}

pub fn append_status(error: &AppendError) -> Status {
    match error {
        AppendError::Refused(e) => entry_status(e),
        AppendError::Storage(_) | AppendError::ShuttingDown => {
            Status::unavailable(accord_core::quote::bounded(&error.to_string()).into_owned())
        }
    }
}
