//! The core's tests, built as one binary: acceptance rules, derived state, and the
//! order-independence properties.

mod acceptance;
mod causal;
mod derived;
mod fixture;
mod generated;
mod governance;
mod order;
mod recovery;
mod rotation;
