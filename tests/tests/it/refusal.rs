//! Every refusal through the real gRPC API: the exact status code, a message naming
//! what was wrong, and nothing stored afterwards (also after a restart).

use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body;
use accord_core::{AllianceId, EntryId};
use accord_tests::*;
use tonic::Code;

use crate::{HARTLEPOOL_BY, LEEDS_HHP, LEEDS_KIRKSTALL};

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    case: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) {
    match result {
        Ok(value) => panic!("{case}: accepted ({value:?}), expected {code:?}"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{case}: code (message {:?})",
                status.message()
            );
            assert!(
                status.message().contains(needle),
                "{case}: message {:?} does not contain {needle:?}",
                status.message()
            );
        }
    }
}

/// A statement within every per-field limit (19,000 characters, under the 20,000 of
/// a statement's text) whose entry is still over the default 65,536-byte limit, since
/// each character takes four bytes.
fn oversized_statement() -> Body {
    Body::Statement(pb::Statement {
        title: "Too long".into(),
        text: "\u{1F5F3}".repeat(19_000),
        cosigners: vec![],
    })
}

fn backwards_event() -> Body {
    Body::Event(event(
        "backwards",
        "2027-03-10T21:00",
        "2027-03-10T19:00",
        "Leeds Civic Hall",
    ))
}

/// A node home to member 0 only, so members 1 and 2 and the secretary submit raw
/// entries signed here.
async fn node_home_to_member_0(
    a: &mut TestAlliance,
    operators: &[OperatorSpec],
) -> (TestNode, Client) {
    let home = a.member(0).clone();
    let config = a.node_config(&[&home], operators);
    let node = TestNode::start(&config).await.unwrap();
    let client = node.client().await.unwrap();
    (node, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_entries_breaking_a_rule_are_refused_and_nothing_is_stored() {
    let mut a = TestAlliance::new(3, 1);
    let (mut node, mut c) = node_home_to_member_0(&mut a, &[]).await;
    publish(&mut c, a.member(0), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    let mut s1 = a.signer(a.member(1));
    let first = s1.next(&intention(LEEDS_HHP, S::Intends, ""));
    submit(&mut c, first.clone()).await.unwrap();
    let before = snapshot(&mut c).await.unwrap();
    assert_eq!(before.entries, 2);

    let valid = intention(LEEDS_KIRKSTALL, S::Considering, "");
    let mut bad_signature = s1.peek(&valid);
    bad_signature.signature[0] ^= 1;
    let other_alliance = RawSigner {
        alliance: AllianceId::from_bytes([7; 32]),
        ..s1.clone()
    }
    .peek(&valid);
    let outsider = a.signer(&a.outsider).peek(&valid);
    let gap = {
        let mut ahead = s1.clone();
        ahead.next(&valid);
        ahead.peek(&valid)
    };
    let wrong_prev = {
        let mut other = s1.clone();
        other.head.as_mut().unwrap().id = EntryId::from_bytes([5; 32]);
        other.peek(&valid)
    };
    let future = {
        let (kind, bytes) = accord_core::body::encode(&valid);
        s1.peek_raw(now_ms() + 600_000, kind as i32, bytes)
    };
    // Signed as by a release before causal references: no `seen`.
    let no_causal_reference = {
        use prost::Message;
        let signed = s1.peek(&valid);
        let mut entry = pb::Entry::decode(signed.entry.as_slice()).unwrap();
        entry.seen = None;
        accord_core::entry::sign_entry(a.member(1), &entry)
    };
    let cases: Vec<(&str, pb::SignedEntry, Code, &str)> = vec![
        (
            "garbage bytes",
            pb::SignedEntry {
                entry: vec![0xff; 40],
                signature: vec![0; 64],
            },
            Code::InvalidArgument,
            "entry bytes do not decode",
        ),
        (
            "bad signature",
            bad_signature,
            Code::InvalidArgument,
            "signature does not verify",
        ),
        (
            "another alliance",
            other_alliance,
            Code::InvalidArgument,
            "entry is for alliance",
        ),
        (
            "non-member author",
            outsider,
            Code::PermissionDenied,
            "is not a member or secretary of the alliance",
        ),
        (
            "no causal reference",
            no_causal_reference,
            Code::InvalidArgument,
            "entry field seen: missing",
        ),
        (
            "seq gap",
            gap,
            Code::FailedPrecondition,
            "does not follow the author's head 1 (expected 2)",
        ),
        (
            "prev mismatch",
            wrong_prev,
            Code::FailedPrecondition,
            "previous hash does not match",
        ),
        (
            "replay",
            first.clone(),
            Code::AlreadyExists,
            "already stored (replay)",
        ),
        (
            "malformed ballot",
            s1.peek(&intention(
                "local.Leeds.kirkstall.2027-05-06",
                S::Intends,
                "",
            )),
            Code::InvalidArgument,
            "\"Leeds\"",
        ),
        (
            "impossible ballot date",
            s1.peek(&intention(
                "local.leeds.kirkstall.2027-02-30",
                S::Intends,
                "",
            )),
            Code::InvalidArgument,
            "impossible date 2027-02-30",
        ),
        (
            // Regression (issue 8): intentions on election ids were accepted.
            "intention on an election",
            s1.peek(&intention("local.leeds.2027-05-06", S::Intends, "")),
            Code::InvalidArgument,
            "\"local.leeds.2027-05-06\" names an election, not a ballot: an intention is declared on one ballot, such as local.leeds.<ward>.2027-05-06",
        ),
        (
            "unknown election type",
            s1.peek(&intention(
                "council.leeds.kirkstall.2027-05-06",
                S::Intends,
                "",
            )),
            Code::InvalidArgument,
            "unknown election type \"council\"",
        ),
        (
            "oversized entry",
            s1.peek(&oversized_statement()),
            Code::InvalidArgument,
            "over the limit of 65536",
        ),
        (
            "resolution from a member",
            s1.peek(&resolution(LEEDS_HHP, vec![a.key(0)], vec![a.key(1)])),
            Code::PermissionDenied,
            "only a secretary may record a resolution",
        ),
        (
            "event ending before it starts",
            s1.peek(&backwards_event()),
            Code::InvalidArgument,
            "event ends (2027-03-10T19:00",
        ),
        (
            "timestamp in the future",
            future,
            Code::InvalidArgument,
            "ahead of this node's clock",
        ),
    ];
    for (case, entry, code, needle) in cases {
        assert_refused(case, submit(&mut c, entry).await, code, needle);
        assert_eq!(
            snapshot(&mut c).await.unwrap(),
            before,
            "{case}: nothing stored"
        );
    }

    node.restart().await.unwrap();
    let mut c = node.client().await.unwrap();
    assert_eq!(snapshot(&mut c).await.unwrap(), before, "after a restart");
    // The author's log goes on where it was.
    let next = s1.next(&valid);
    let r = submit(&mut c, next.clone()).await.unwrap();
    assert_eq!((r.seq, r.id), (2, entry_id(&next)));
}

/// A fork is refused; the forking entry is not stored as an entry, but (DESIGN.md
/// principle 4) the pair is kept as a fork proof and the author's log is frozen at the
/// fork: neither side counts any more, so every node agrees whichever side it saw
/// first. The status the node shows once the refusal is answered must be the one it
/// shows after a restart. Regression test: the first node answered the fork refusal before the
/// fork proof was flushed and applied, so the digest changed only after a restart
/// (about 40% of runs failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forking_entry_is_refused_and_freezes_the_log_durably() {
    let mut a = TestAlliance::new(2, 0);
    let (mut node, mut c) = node_home_to_member_0(&mut a, &[]).await;
    let mut s1 = a.signer(a.member(1));
    let fresh = s1.clone();
    let original = s1.next(&intention(LEEDS_HHP, S::Intends, ""));
    submit(&mut c, original.clone()).await.unwrap();
    let before = snapshot(&mut c).await.unwrap();
    // Same author and seq 1, different bytes.
    let fork = fresh.peek(&intention(HARTLEPOOL_BY, S::Intends, ""));
    assert_refused(
        "fork",
        submit(&mut c, fork).await,
        Code::FailedPrecondition,
        "(fork)",
    );
    let refused = snapshot(&mut c).await.unwrap();
    let mut heads = before.heads.clone();
    heads.remove(&a.key(1).to_vec());
    assert_eq!(
        (refused.entries, &refused.heads),
        (before.entries - 1, &heads),
        "neither side of the fork counts; the forking entry is not stored"
    );
    let status = c
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.frozen, [a.key(1).to_vec()]);
    assert!(full_log(&mut c, &a.key(1)).await.unwrap().is_empty());
    let _ = original;
    node.restart().await.unwrap();
    let mut c = node.client().await.unwrap();
    assert_eq!(
        snapshot(&mut c).await.unwrap(),
        refused,
        "the status shown once the fork was refused survives a restart"
    );
    // Nothing past the fork is accepted from that author.
    assert_refused(
        "entry after a fork",
        submit(&mut c, s1.next(&intention(LEEDS_KIRKSTALL, S::Intends, ""))).await,
        Code::FailedPrecondition,
        "forked their log",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_bodies_breaking_a_rule_are_refused_and_nothing_is_stored() {
    let mut a = TestAlliance::new(2, 1);
    let everyone: Vec<_> = a.everyone().into_iter().cloned().collect();
    let refs: Vec<_> = everyone.iter().collect();
    let config = a.node_config(&refs, &[]);
    let mut node = TestNode::start(&config).await.unwrap();
    let mut c = node.client().await.unwrap();
    publish(&mut c, a.member(0), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    let before = snapshot(&mut c).await.unwrap();

    let m0 = a.member(0).clone();
    let sec = a.secretary(0).clone();
    let cases: Vec<(&str, &accord_core::Identity, Body, Code, &str)> = vec![
        (
            "malformed ballot",
            &m0,
            intention(
                "local.leeds.headingley--hyde-park.2027-05-06",
                S::Intends,
                "",
            ),
            Code::InvalidArgument,
            "\"headingley--hyde-park\"",
        ),
        (
            "impossible ballot date",
            &m0,
            intention("local.leeds.kirkstall.2027-13-01", S::Intends, ""),
            Code::InvalidArgument,
            "2027-13-01",
        ),
        (
            // Regression (issue 8): intentions on election ids were accepted.
            "intention on a general election",
            &m0,
            intention("parl.2024-07-04", S::Intends, ""),
            Code::InvalidArgument,
            "\"parl.2024-07-04\" names an election, not a ballot: an intention is declared on one ballot, such as parl.<constituency>.2024-07-04",
        ),
        (
            "intention on a Scottish Parliament election",
            &m0,
            intention("sp.c.2026-05-07", S::Intends, ""),
            Code::InvalidArgument,
            "such as sp.c.<constituency>.2026-05-07",
        ),
        (
            "oversized entry",
            &m0,
            oversized_statement(),
            Code::InvalidArgument,
            "over the limit of 65536",
        ),
        (
            "resolution from a member",
            &m0,
            resolution(LEEDS_HHP, vec![a.key(0)], vec![a.key(1)]),
            Code::PermissionDenied,
            "only a secretary may record a resolution",
        ),
        (
            "intention from a secretary",
            &sec,
            intention(LEEDS_HHP, S::Intends, ""),
            Code::PermissionDenied,
            "only a member organisation may declare an intention",
        ),
        (
            "event ending before it starts",
            &m0,
            backwards_event(),
            Code::InvalidArgument,
            "event ends",
        ),
        (
            "confirmed without a candidate",
            &m0,
            intention(LEEDS_KIRKSTALL, S::Confirmed, ""),
            Code::InvalidArgument,
            "needs a candidate name",
        ),
    ];
    for (case, author, body, code, needle) in cases {
        assert_refused(case, publish(&mut c, author, body).await, code, needle);
        assert_eq!(
            snapshot(&mut c).await.unwrap(),
            before,
            "{case}: nothing stored"
        );
    }
    node.restart().await.unwrap();
    let mut c = node.client().await.unwrap();
    assert_eq!(snapshot(&mut c).await.unwrap(), before, "after a restart");
    let r = publish(
        &mut c,
        a.member(0),
        intention(LEEDS_KIRKSTALL, S::Intends, ""),
    )
    .await
    .unwrap();
    assert_eq!(r.seq, 2, "the log goes on from its head");
}

/// Regression (issue 8): a query given a malformed ballot or election id answered an
/// empty list, as if nobody had declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_with_malformed_ballot_ids_are_refused() {
    let (_a, _node, mut c) = crate::home_to_all(1, 0).await;
    let list = |ballot: &str, election: &str| pb::ListIntentionsRequest {
        ballot: ballot.into(),
        election: election.into(),
        organisation: Vec::new(),
        ..Default::default()
    };
    assert_refused(
        "impossible date",
        c.list_intentions(list("parl.x.2017-02-30", "")).await,
        Code::InvalidArgument,
        "ballot: ballot id \"parl.x.2017-02-30\" has an impossible date 2017-02-30",
    );
    assert_refused(
        "an election as the ballot",
        c.list_intentions(list("parl.2024-07-04", "")).await,
        Code::InvalidArgument,
        "ballot: \"parl.2024-07-04\" names an election, not a ballot",
    );
    assert_refused(
        "malformed election",
        c.list_intentions(list("", "local.leeds..2027-05-06")).await,
        Code::InvalidArgument,
        "election: ballot id \"local.leeds..2027-05-06\" has an empty part",
    );
    assert_refused(
        "malformed election for clashes",
        c.list_clashes(pb::ListClashesRequest {
            election: "local.leeds.2027-5-6".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "election: ballot id \"local.leeds.2027-5-6\" ends with \"2027-5-6\"",
    );
    // Well-formed ids still answer (an empty list here).
    let ok = c
        .list_intentions(list(LEEDS_HHP, "local.leeds.2027-05-06"))
        .await;
    assert!(ok.unwrap().into_inner().intentions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let mut a = TestAlliance::new(2, 0);
    let (node, mut c) = node_home_to_member_0(&mut a, &[]).await;
    let before = snapshot(&mut c).await.unwrap();
    for (case, token) in [("no token", None), ("wrong token", Some("not-the-token"))] {
        let mut client = node.client_with(token).await.unwrap();
        assert_refused(
            case,
            client.get_status(pb::GetStatusRequest::default()).await,
            Code::Unauthenticated,
            "",
        );
        assert_refused(
            case,
            client.list_clashes(pb::ListClashesRequest::default()).await,
            Code::Unauthenticated,
            "",
        );
        assert_refused(
            case,
            publish(
                &mut client,
                a.member(0),
                intention(LEEDS_HHP, S::Intends, ""),
            )
            .await,
            Code::Unauthenticated,
            "",
        );
        let entry = a
            .signer(a.member(1))
            .peek(&intention(LEEDS_HHP, S::Intends, ""));
        assert_refused(
            case,
            submit(&mut client, entry).await,
            Code::Unauthenticated,
            "",
        );
    }
    assert_eq!(snapshot(&mut c).await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_beyond_the_token_or_the_home_is_permission_denied() {
    let mut a = TestAlliance::new(3, 0);
    let home = [a.member(0).clone(), a.member(1).clone()];
    let config = a.node_config(
        &[&home[0], &home[1]],
        &[OperatorSpec::new("zero", "token-zero", &[&member_name(0)])],
    );
    let node = TestNode::start(&config).await.unwrap();
    let mut admin = node.client().await.unwrap();
    let before = snapshot(&mut admin).await.unwrap();
    let mut zero = node.client_with(Some("token-zero")).await.unwrap();
    let body = || intention(LEEDS_HHP, S::Intends, "");

    assert_refused(
        "home identity the token does not cover",
        publish(&mut zero, a.member(1), body()).await,
        Code::PermissionDenied,
        "",
    );
    assert_refused(
        "identity that is not home",
        publish(&mut admin, a.member(2), body()).await,
        Code::PermissionDenied,
        "",
    );
    assert_refused(
        "outsider",
        publish(&mut zero, &a.outsider, body()).await,
        Code::PermissionDenied,
        "",
    );
    assert_eq!(snapshot(&mut admin).await.unwrap(), before);

    // The token's own identity publishes; any valid token may submit.
    let r = publish(&mut zero, a.member(0), body()).await.unwrap();
    assert_eq!((r.author, r.seq), (a.key(0), 1));
    let entry = a.signer(a.member(2)).peek(&body());
    let r = submit(&mut zero, entry.clone()).await.unwrap();
    assert_eq!(r.id, entry_id(&entry));
}

#[test]
fn an_operator_naming_a_non_home_identity_is_a_config_error() {
    let mut a = TestAlliance::new(2, 0);
    let home = a.member(0).clone();
    let key1 = a.member(1).public_id().to_string();
    let config = a.node_config(&[&home], &[OperatorSpec::new("one", "t", &[&key1])]);
    assert!(accord_node::NodeConfig::load(&config).is_err());
}

/// Issue 11's bad input through the gRPC API: each governance refusal has its code
/// and words, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_refusals_have_their_codes_and_store_nothing() {
    use pb::propose_request::Change;
    let mut a = TestAlliance::new(3, 1);
    let (m0, m1, m2) = (
        a.member(0).clone(),
        a.member(1).clone(),
        a.member(2).clone(),
    );
    let (sec, fifth) = (a.secretary(0).clone(), a.outsider.clone());
    let config = a.node_config(&[&m0, &m1, &m2, &sec, &fifth], &[]);
    let node = TestNode::start(&config).await.unwrap();
    let mut c = node.client().await.unwrap();
    let key = |i: &accord_core::Identity| i.public_id().to_vec();
    let admit = |who: &accord_core::Identity, name: &str| {
        Change::Admit(pb::Admit {
            name: name.into(),
            key: who.public_id().to_vec(),
            role: pb::Role::Member as i32,
            ec_id: String::new(),
            ..Default::default()
        })
    };
    let propose = |author: Vec<u8>, change: Change| pb::ProposeRequest {
        author,
        change: Some(change),
        rationale: String::new(),
    };
    let vote = |author: Vec<u8>, proposal: Vec<u8>| pb::VoteRequest {
        author,
        proposal,
        reason: String::new(),
    };
    let p = c
        .propose(propose(key(&m0), admit(&fifth, "Fifth Party")))
        .await
        .unwrap()
        .into_inner()
        .id;
    let entries = |s: pb::NodeStatus| s.entries;
    let before = entries(
        c.get_status(pb::GetStatusRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );

    let r = c.approve(vote(key(&sec), p.clone())).await;
    assert_refused(
        "approval by a secretary",
        r,
        Code::PermissionDenied,
        "may not publish approval",
    );
    let r = c.approve(vote(key(&fifth), p.clone())).await;
    assert_refused(
        "approval by an outsider",
        r,
        Code::PermissionDenied,
        "is not a member or secretary",
    );
    let r = c.approve(vote(key(&m0), p.clone())).await;
    assert_refused(
        "a second approval",
        r,
        Code::AlreadyExists,
        "has already approved",
    );
    let r = c.approve(vote(key(&m1), vec![7; 32])).await;
    assert_refused("an unknown proposal", r, Code::NotFound, "no proposal");
    let r = c.propose(propose(key(&m1), admit(&m2, "Again"))).await;
    assert_refused(
        "a key already in the roster",
        r,
        Code::FailedPrecondition,
        "already in the roster",
    );
    let r = c
        .propose(propose(
            key(&m1),
            Change::SetRole(pb::SetRole {
                organisation: key(&sec),
                role: pb::Role::Observer as i32,
            }),
        ))
        .await;
    assert_refused(
        "no secretary left",
        r,
        Code::FailedPrecondition,
        "no secretary",
    );
    let r = c
        .leave(pb::LeaveRequest {
            author: key(&sec),
            reason: String::new(),
        })
        .await;
    assert_refused(
        "the last secretary leaving",
        r,
        Code::FailedPrecondition,
        "no secretary",
    );
    // Recovery by quorum: a new key already in the roster, a key that is not 32
    // bytes, an organisation not in the roster, and no organisation at all.
    let recover = |organisation: Vec<u8>, new: Vec<u8>| {
        Change::Recover(pb::ProposeRecover {
            organisation,
            key: new,
            up_to_seq: 0,
        })
    };
    let r = c
        .propose(propose(key(&m0), recover(key(&m2), key(&m1))))
        .await;
    assert_refused(
        "a recovery to a key already in the roster",
        r,
        Code::FailedPrecondition,
        "already in the roster",
    );
    let r = c
        .propose(propose(key(&m0), recover(key(&m2), vec![9; 31])))
        .await;
    assert_refused(
        "a recovery to a malformed key",
        r,
        Code::InvalidArgument,
        "key",
    );
    let r = c
        .propose(propose(key(&m0), recover(vec![9; 32], vec![8; 32])))
        .await;
    assert_refused(
        "a recovery of an organisation not in the roster",
        r,
        Code::FailedPrecondition,
        "not an active organisation",
    );
    let r = c
        .propose(propose(key(&m0), recover(Vec::new(), vec![8; 32])))
        .await;
    assert_refused(
        "a recovery naming no organisation",
        r,
        Code::InvalidArgument,
        "organisation",
    );
    let after = entries(
        c.get_status(pb::GetStatusRequest::default())
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(after, before, "refusals stored nothing");

    // Passed with a majority (the proposer and one approval of three members); a vote
    // on it now is refused, and the new member publishes.
    c.approve(vote(key(&m1), p.clone())).await.unwrap();
    let r = c.approve(vote(key(&m2), p.clone())).await;
    assert_refused(
        "a vote on a passed proposal",
        r,
        Code::FailedPrecondition,
        "closed (passed)",
    );
    publish(&mut c, &fifth, intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();

    // Member 2 removed (electorate: 0, 1 and the fifth; needs two): nothing of it
    // after its cut is accepted.
    let removal = c
        .propose(propose(
            key(&m0),
            Change::Remove(pb::ProposeRemove {
                organisation: key(&m2),
                up_to_seq: 0,
            }),
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    c.approve(vote(key(&fifth), removal)).await.unwrap();
    let r = publish(&mut c, &m2, intention(LEEDS_KIRKSTALL, S::Intends, "")).await;
    assert_refused(
        "an entry past a removal's cut",
        r,
        Code::PermissionDenied,
        "left or was removed",
    );
    let roster = c
        .get_roster(pb::GetRosterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(roster.version, 2);
    let removed = roster
        .organisations
        .iter()
        .find(|o| o.key == key(&m2))
        .unwrap();
    assert_eq!((removed.status.as_str(), removed.up_to_seq), ("removed", 0));
    drop(node);
}

/// Issue 11 (key rotation) through the real gRPC API: an entry signed by a retired
/// key, a rotation not signed by the current key, one naming a key already in the
/// roster, and one naming no key are refused with their codes, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_refusals_have_their_codes_and_store_nothing() {
    let mut a = TestAlliance::new(3, 1);
    let (_node, mut c) = node_home_to_member_0(&mut a, &[]).await;
    let m1 = a.member(1).clone();
    let org = m1.public_id();
    let mut old = a.signer(&m1);
    submit(&mut c, old.next(&intention(LEEDS_HHP, S::Intends, "")))
        .await
        .unwrap();
    let new = accord_core::Identity::from_seed([42; 32]).signing_for(org);
    let rotation = |key: Vec<u8>| prost::Message::encode_to_vec(&pb::KeyRotation { key });
    let kind = pb::EntryKind::KeyRotation as i32;
    let rotate = old.peek_raw(now_ms(), kind, rotation(new.key_id().to_vec()));
    let ack = submit(&mut c, rotate.clone()).await.unwrap();
    assert_eq!(ack.seq, 2);
    old.advance(&rotate);
    let mut current = RawSigner {
        identity: new.clone(),
        ..old.clone()
    };
    submit(
        &mut c,
        current.next(&intention(LEEDS_KIRKSTALL, S::Considering, "")),
    )
    .await
    .unwrap();
    old.head = current.head;
    let before = snapshot(&mut c).await.unwrap();
    assert_eq!(before.entries, 3);

    let stranger = RawSigner {
        identity: accord_core::Identity::from_seed([43; 32]).signing_for(org),
        ..current.clone()
    };
    let cases: Vec<(&str, pb::SignedEntry, Code, &str)> = vec![
        (
            "an entry signed by the retired key",
            old.peek(&intention(HARTLEPOOL_BY, S::Intends, "")),
            Code::PermissionDenied,
            "a key it retired",
        ),
        (
            "a rotation signed by the retired key",
            old.peek_raw(now_ms(), kind, rotation(vec![9; 32])),
            Code::PermissionDenied,
            "a key it retired",
        ),
        (
            "a rotation not signed by the current key",
            stranger.peek_raw(
                now_ms(),
                kind,
                rotation(accord_core::Identity::from_seed([44; 32]).key_id().to_vec()),
            ),
            Code::PermissionDenied,
            "which is not its key",
        ),
        (
            "a rotation to a key already in the roster",
            current.peek_raw(now_ms(), kind, rotation(a.member(2).public_id().to_vec())),
            Code::FailedPrecondition,
            "already in the roster",
        ),
        (
            "a rotation naming no key",
            current.peek_raw(now_ms(), kind, rotation(vec![1; 5])),
            Code::InvalidArgument,
            "key",
        ),
    ];
    for (case, entry, code, needle) in cases {
        assert_refused(case, submit(&mut c, entry).await, code, needle);
        let after = snapshot(&mut c).await.unwrap();
        assert_eq!(after.entries, before.entries, "{case}: nothing stored");
        assert_eq!(after.digest, before.digest, "{case}");
    }
    let roster = c
        .get_roster(pb::GetRosterRequest {})
        .await
        .unwrap()
        .into_inner();
    let o = roster
        .organisations
        .iter()
        .find(|o| o.key == org.to_vec())
        .unwrap();
    assert_eq!(o.current_key, new.key_id().to_vec());
    assert_eq!(o.retired_keys.len(), 1);
    assert_eq!(o.retired_keys[0].last_seq, 2);
}
