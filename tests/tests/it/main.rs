//! Integration tests of the Accord node through its real gRPC API. One binary: each
//! module is an area, the harness is `accord_tests` (tests/src/lib.rs).

mod backup;
mod browser;
mod calendar;
mod durability;
mod federation;
mod interop;
mod limits;
mod publish;
mod refusal;
mod service;

use accord_tests::{Client, TestAlliance, TestNode};

/// Ballots used across the tests (polling days in 2027; the bank-holiday table covers
/// them). The by-election closes nominations before the May local elections.
pub const LEEDS_HHP: &str = "local.leeds.headingley-hyde-park.2027-05-06";
pub const LEEDS_KIRKSTALL: &str = "local.leeds.kirkstall.2027-05-06";
pub const LEEDS_ELECTION: &str = "local.leeds.2027-05-06";
pub const HARTLEPOOL_BY: &str = "parl.hartlepool.by.2027-02-25";

/// An alliance of `members` members and `secretaries` secretaries, and one node that
/// is home to all of them.
pub async fn home_to_all(members: usize, secretaries: usize) -> (TestAlliance, TestNode, Client) {
    home_node(members, secretaries, false).await
}

/// As [`home_to_all`], the node also serving the calendar over HTTP.
pub async fn home_to_all_with_calendar(
    members: usize,
    secretaries: usize,
) -> (TestAlliance, TestNode, Client) {
    home_node(members, secretaries, true).await
}

async fn home_node(
    members: usize,
    secretaries: usize,
    calendar: bool,
) -> (TestAlliance, TestNode, Client) {
    let mut alliance = TestAlliance::new(members, secretaries);
    let everyone: Vec<_> = alliance.everyone().into_iter().cloned().collect();
    let refs: Vec<_> = everyone.iter().collect();
    let config = if calendar {
        alliance.node_config_with_calendar(&refs, &[])
    } else {
        alliance.node_config(&refs, &[])
    };
    let node = TestNode::start(&config).await.expect("node starts");
    let client = node.client().await.expect("client connects");
    (alliance, node, client)
}
