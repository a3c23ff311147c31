//! The pure core of Accord: identities, entries and their validation, log rules, the
//! alliance charter, and the derived state of an alliance (intentions, clashes,
//! resolutions, statements, events, deadlines).
//!
//! Nothing here does I/O or reads a clock or a random source: callers pass the time
//! and key material in, so every function is deterministic and cannot fail because
//! of its environment.

pub mod ballot;
pub mod body;
pub mod charter;
pub mod clash;
pub mod council;
pub mod deadline;
pub mod entry;
pub mod id;
pub mod identity;
pub mod quote;
pub mod reason;
pub mod roster;
pub mod sethash;
pub mod state;

pub use accord_proto::v1 as pb;
pub use charter::{Charter, CharterError, Role};
pub use entry::{EntryError, LogHead, VerifiedEntry};
pub use id::{AllianceId, EntryId, PublicId};
pub use identity::Identity;
pub use state::State;
