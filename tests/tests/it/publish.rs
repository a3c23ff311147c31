//! Publishing through the node and reading the derived state back: intentions,
//! clashes and their resolution, statements, events, logs and the clash stream.

use std::time::Duration;

use accord_core::ballot::BallotId;
use accord_core::pb;
use accord_core::pb::ClashState as CS;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body;
use accord_tests::*;
use chrono::{DateTime, Utc};

use crate::{HARTLEPOOL_BY, LEEDS_ELECTION, LEEDS_HHP, LEEDS_KIRKSTALL, home_to_all};

async fn intentions(
    client: &mut Client,
    ballot: &str,
    election: &str,
    org: Vec<u8>,
) -> Vec<pb::IntentionView> {
    client
        .list_intentions(pb::ListIntentionsRequest {
            ballot: ballot.into(),
            election: election.into(),
            organisation: org,
            ..Default::default()
        })
        .await
        .expect("list intentions")
        .into_inner()
        .intentions
}

async fn clashes(client: &mut Client, req: pb::ListClashesRequest) -> Vec<pb::Clash> {
    client
        .list_clashes(req)
        .await
        .expect("list clashes")
        .into_inner()
        .clashes
}

async fn all_clashes(client: &mut Client) -> Vec<pb::Clash> {
    clashes(client, pb::ListClashesRequest::default()).await
}

fn ballots(clashes: &[pb::Clash]) -> Vec<(&str, CS)> {
    clashes
        .iter()
        .map(|c| {
            (
                c.ballot.as_str(),
                CS::try_from(c.state).expect("known state"),
            )
        })
        .collect()
}

fn close_of(ballot: &str) -> DateTime<Utc> {
    let id = BallotId::parse(ballot).expect("ballot id");
    accord_core::deadline::close_of_nominations(&id, &[])
        .expect("deadline")
        .nominations_close
}

fn parse_utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intentions_are_listed_by_ballot_election_and_organisation() {
    let (a, _node, mut c) = home_to_all(3, 0).await;
    let p0 = publish(&mut c, a.member(0), intention(LEEDS_HHP, S::Intends, "Ada"))
        .await
        .unwrap();
    publish(
        &mut c,
        a.member(1),
        intention(LEEDS_KIRKSTALL, S::Considering, ""),
    )
    .await
    .unwrap();
    publish(
        &mut c,
        a.member(2),
        intention(HARTLEPOOL_BY, S::Intends, ""),
    )
    .await
    .unwrap();

    let by_ballot = intentions(&mut c, LEEDS_HHP, "", vec![]).await;
    assert_eq!(by_ballot.len(), 1, "{by_ballot:?}");
    assert_eq!(by_ballot[0].organisation, a.key(0));
    assert_eq!(by_ballot[0].organisation_name, member_name(0));
    assert_eq!(by_ballot[0].entry, p0.id);
    let i = by_ballot[0].intention.as_ref().expect("intention");
    assert_eq!(
        (i.ballot.as_str(), i.status, i.candidate.as_str()),
        (LEEDS_HHP, S::Intends as i32, "Ada")
    );

    let mut by_election: Vec<String> = intentions(&mut c, "", LEEDS_ELECTION, vec![])
        .await
        .into_iter()
        .map(|v| v.intention.unwrap().ballot)
        .collect();
    by_election.sort();
    assert_eq!(by_election, [LEEDS_HHP, LEEDS_KIRKSTALL]);

    let by_org = intentions(&mut c, "", "", a.key(2)).await;
    assert_eq!(by_org.len(), 1);
    assert_eq!(by_org[0].intention.as_ref().unwrap().ballot, HARTLEPOOL_BY);

    assert_eq!(intentions(&mut c, "", "", vec![]).await.len(), 3);

    // A later intention replaces the earlier position.
    publish(&mut c, a.member(0), intention(LEEDS_HHP, S::Withdrawn, ""))
        .await
        .unwrap();
    let now = intentions(&mut c, LEEDS_HHP, "", vec![]).await;
    assert_eq!(now.len(), 1);
    assert_eq!(
        now[0].intention.as_ref().unwrap().status,
        S::Withdrawn as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_clashes_carry_nominations_close_soonest_first() {
    let (a, _node, mut c) = home_to_all(3, 0).await;
    for (who, ballot) in [
        (0, LEEDS_HHP),
        (1, LEEDS_HHP),
        (0, HARTLEPOOL_BY),
        (2, HARTLEPOOL_BY),
    ] {
        publish(&mut c, a.member(who), intention(ballot, S::Intends, ""))
            .await
            .unwrap();
    }
    // Only one member on Kirkstall: no clash there.
    publish(
        &mut c,
        a.member(2),
        intention(LEEDS_KIRKSTALL, S::Intends, ""),
    )
    .await
    .unwrap();

    let list = all_clashes(&mut c).await;
    assert_eq!(
        ballots(&list),
        [(HARTLEPOOL_BY, CS::Open), (LEEDS_HHP, CS::Open)],
        "soonest close of nominations first"
    );
    for clash in &list {
        assert_eq!(parse_utc(&clash.nominations_close), close_of(&clash.ballot));
        assert!(
            clash.deadline_rule.contains("working days"),
            "{}",
            clash.deadline_rule
        );
        assert!(clash.resolution.is_empty());
    }
    // The Leeds local ballot: 19 working days before Thursday 6 May 2027, skipping
    // the early May bank holiday, is Thursday 8 April, 4pm BST.
    assert_eq!(
        parse_utc(&list[1].nominations_close),
        parse_utc("2027-04-08T15:00:00Z")
    );
    let parties: Vec<(Vec<u8>, String)> = list[1]
        .parties
        .iter()
        .map(|p| (p.organisation.clone(), p.organisation_name.clone()))
        .collect();
    let mut want = vec![(a.key(0), member_name(0)), (a.key(1), member_name(1))];
    want.sort();
    assert_eq!(parties, want, "parties in key order");

    // Filters: by organisation, by election, by state.
    let of_2 = clashes(
        &mut c,
        pb::ListClashesRequest {
            organisation: a.key(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ballots(&of_2), [(HARTLEPOOL_BY, CS::Open)]);
    let leeds = clashes(
        &mut c,
        pb::ListClashesRequest {
            election: LEEDS_ELECTION.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ballots(&leeds), [(LEEDS_HHP, CS::Open)]);
    let potential = clashes(
        &mut c,
        pb::ListClashesRequest {
            states: vec![CS::Potential as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(potential.is_empty(), "{potential:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn considering_alongside_intends_is_a_potential_clash() {
    let (a, _node, mut c) = home_to_all(2, 0).await;
    publish(&mut c, a.member(0), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    assert!(all_clashes(&mut c).await.is_empty());
    publish(
        &mut c,
        a.member(1),
        intention(LEEDS_HHP, S::Considering, ""),
    )
    .await
    .unwrap();
    assert_eq!(
        ballots(&all_clashes(&mut c).await),
        [(LEEDS_HHP, CS::Potential)]
    );
    publish(
        &mut c,
        a.member(1),
        intention(LEEDS_HHP, S::Confirmed, "Bea"),
    )
    .await
    .unwrap();
    let list = all_clashes(&mut c).await;
    assert_eq!(ballots(&list), [(LEEDS_HHP, CS::Open)]);
    let bea = list[0]
        .parties
        .iter()
        .find(|p| p.organisation == a.key(1))
        .expect("party 1");
    assert_eq!(
        (bea.status, bea.candidate.as_str()),
        (S::Confirmed as i32, "Bea")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_goes_pending_then_resolved_then_breached() {
    let (a, _node, mut c) = home_to_all(2, 1).await;
    for who in [0, 1] {
        publish(&mut c, a.member(who), intention(LEEDS_HHP, S::Intends, ""))
            .await
            .unwrap();
    }
    assert_eq!(ballots(&all_clashes(&mut c).await), [(LEEDS_HHP, CS::Open)]);

    let res = publish(
        &mut c,
        a.secretary(0),
        resolution(LEEDS_HHP, vec![a.key(0)], vec![a.key(1)]),
    )
    .await
    .unwrap();
    let list = all_clashes(&mut c).await;
    assert_eq!(ballots(&list), [(LEEDS_HHP, CS::Pending)]);
    assert_eq!(list[0].resolution, res.id);
    let resolutions = c
        .list_resolutions(pb::ListResolutionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .resolutions;
    assert_eq!(resolutions.len(), 1);
    assert_eq!(resolutions[0].id, res.id);
    assert_eq!(resolutions[0].author, a.secretary_key(0));
    assert_eq!(resolutions[0].state, CS::Pending as i32);

    publish(&mut c, a.member(1), intention(LEEDS_HHP, S::StoodAside, ""))
        .await
        .unwrap();
    assert_eq!(
        ballots(&all_clashes(&mut c).await),
        [(LEEDS_HHP, CS::Resolved)]
    );

    // After the resolution because the node had it when it signed (causal order).
    publish(&mut c, a.member(1), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    assert_eq!(
        ballots(&all_clashes(&mut c).await),
        [(LEEDS_HHP, CS::Breached)]
    );
    let resolutions = c
        .list_resolutions(pb::ListResolutionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .resolutions;
    assert_eq!(resolutions[0].state, CS::Breached as i32);
}

/// "After the resolution" is what the signing node had seen, not the clocks: a
/// resolution stamped two minutes ahead (within the allowed skew) is still breached
/// by an intention the node signs at once, stamped before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_is_breached_by_what_the_signer_had_seen_not_by_clocks() {
    let (a, _node, mut c) = home_to_all(2, 1).await;
    for i in 0..2 {
        publish(&mut c, a.member(i), intention(LEEDS_HHP, S::Intends, ""))
            .await
            .unwrap();
    }
    let ahead = now_ms() + 120_000;
    let (kind, body) =
        accord_core::body::encode(&resolution(LEEDS_HHP, vec![a.key(0)], vec![a.key(1)]));
    let res = a.signer(a.secretary(0)).peek_raw(ahead, kind as i32, body);
    submit(&mut c, res).await.unwrap();
    assert_eq!(
        ballots(&all_clashes(&mut c).await),
        [(LEEDS_HHP, CS::Pending)]
    );
    let again = publish(&mut c, a.member(1), intention(LEEDS_HHP, S::Intends, ""))
        .await
        .unwrap();
    let log = full_log(&mut c, &a.key(1)).await.unwrap();
    let signed = log.iter().find(|e| entry_id(e) == again.id).unwrap();
    let entry = <pb::Entry as prost::Message>::decode(signed.entry.as_slice()).unwrap();
    assert!(entry.timestamp_ms < ahead, "stamped before the resolution");
    let seen = entry.seen.expect("the node signs a causal reference");
    assert!(
        seen.heads
            .iter()
            .any(|h| h.author == a.secretary_key(0) && h.seq == 1),
        "it names the resolution as seen: {seen:?}"
    );
    assert_eq!(
        ballots(&all_clashes(&mut c).await),
        [(LEEDS_HHP, CS::Breached)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_statement_once_every_cosigner_endorses_then_withdrawn() {
    let (a, _node, mut c) = home_to_all(3, 1).await;
    let st = publish(
        &mut c,
        a.member(0),
        statement("No splitting the vote", vec![a.key(1), a.key(2)]),
    )
    .await
    .unwrap();
    let view = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            let list = c
                .list_statements(pb::ListStatementsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .statements;
            assert_eq!(list.len(), 1, "{list:?}");
            list.into_iter().next().unwrap()
        }
    };
    let v = view(&mut c).await;
    assert_eq!(
        (v.id.clone(), v.author.clone(), v.joint, v.withdrawn),
        (st.id.clone(), a.key(0), false, false)
    );
    assert_eq!(v.statement.unwrap().title, "No splitting the vote");

    publish(&mut c, a.member(1), endorsement(&st.id))
        .await
        .unwrap();
    let v = view(&mut c).await;
    assert_eq!((v.endorsed_by.clone(), v.joint), (vec![a.key(1)], false));

    publish(&mut c, a.member(2), endorsement(&st.id))
        .await
        .unwrap();
    publish(&mut c, a.secretary(0), endorsement(&st.id))
        .await
        .unwrap();
    let v = view(&mut c).await;
    let mut cosigners = vec![a.key(1), a.key(2)];
    cosigners.sort();
    assert_eq!(v.endorsed_by, cosigners);
    assert_eq!(v.supporters, vec![a.secretary_key(0)]);
    assert!(v.joint);
    assert!(!v.withdrawn);

    publish(&mut c, a.member(0), withdrawal(&st.id, "superseded"))
        .await
        .unwrap();
    assert!(view(&mut c).await.withdrawn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_by_time_range_and_clash_at_one_venue() {
    let (a, _node, mut c) = home_to_all(3, 0).await;
    let e1 = event(
        "hustings",
        "2027-03-10T19:00",
        "2027-03-10T21:00",
        "Leeds Civic Hall",
    );
    let e2 = event(
        "rally",
        "2027-03-10T20:00",
        "2027-03-10T22:00",
        "  leeds civic   HALL ",
    );
    let e3 = event(
        "summer",
        "2027-06-01T18:00",
        "2027-06-01T20:00",
        "Leeds Civic Hall",
    );
    publish(&mut c, a.member(0), Body::Event(e1.clone()))
        .await
        .unwrap();
    publish(&mut c, a.member(1), Body::Event(e2)).await.unwrap();
    publish(&mut c, a.member(2), Body::Event(e3)).await.unwrap();

    let reader = c.clone();
    let list = |from: &str, to: &str, cancelled: bool| {
        let mut c = reader.clone();
        let req = pb::ListEventsRequest {
            from: from.into(),
            to: to.into(),
            include_cancelled: cancelled,
            ..Default::default()
        };
        async move {
            let mut uids: Vec<(String, u32)> = c
                .list_events(req)
                .await
                .unwrap()
                .into_inner()
                .events
                .into_iter()
                .map(|e| (e.event.unwrap().uid, e.sequence))
                .collect();
            uids.sort();
            uids
        }
    };
    let march = ("2027-03-01T00:00:00Z", "2027-04-01T00:00:00Z");
    assert_eq!(list("", "", false).await.len(), 3);
    assert_eq!(
        list(march.0, march.1, false).await,
        [("hustings".into(), 0), ("rally".into(), 0)]
    );
    // [from, to) overlap: an event ending exactly at `from` is out; one spanning it is in.
    assert_eq!(
        list("2027-03-10T21:00:00Z", "2027-03-10T21:30:00Z", false).await,
        [("rally".into(), 0)]
    );

    let events = c
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    let hustings = events
        .iter()
        .find(|e| e.event.as_ref().unwrap().uid == "hustings")
        .unwrap();
    // March is GMT in London.
    assert_eq!(
        parse_utc(&hustings.start_utc),
        parse_utc("2027-03-10T19:00:00Z")
    );
    assert_eq!(
        parse_utc(&hustings.end_utc),
        parse_utc("2027-03-10T21:00:00Z")
    );
    assert_eq!(hustings.author, a.key(0));

    let clashes = c
        .list_event_clashes(pb::ListEventClashesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clashes;
    assert_eq!(clashes.len(), 1, "{clashes:?}");
    let pair = |e: &Option<pb::EventView>| e.as_ref().unwrap().event.as_ref().unwrap().uid.clone();
    let mut uids = [pair(&clashes[0].first), pair(&clashes[0].second)];
    uids.sort();
    assert_eq!(uids, ["hustings", "rally"]);
    assert_eq!(clashes[0].reason, "venue");

    // Cancelling the hustings: an update (SEQUENCE 1), hidden unless asked for, and
    // the clash is gone.
    let mut cancelled = e1;
    cancelled.cancelled = true;
    publish(&mut c, a.member(0), Body::Event(cancelled))
        .await
        .unwrap();
    assert_eq!(list(march.0, march.1, false).await, [("rally".into(), 0)]);
    assert_eq!(
        list(march.0, march.1, true).await,
        [("hustings".into(), 1), ("rally".into(), 0)]
    );
    let clashes = c
        .list_event_clashes(pb::ListEventClashesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clashes;
    assert!(clashes.is_empty(), "{clashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_log_returns_the_exact_stored_bytes() {
    // The node is home to member 0 only; member 1 signs elsewhere and submits.
    let mut a = TestAlliance::new(2, 0);
    let home = a.member(0).clone();
    let config = a.node_config(&[&home], &[]);
    let node = TestNode::start(&config).await.unwrap();
    let mut c = node.client().await.unwrap();

    let mut published = Vec::new();
    for (i, ballot) in [LEEDS_HHP, LEEDS_KIRKSTALL, HARTLEPOOL_BY]
        .into_iter()
        .enumerate()
    {
        let r = publish(&mut c, &home, intention(ballot, S::Considering, ""))
            .await
            .unwrap();
        assert_eq!((r.author.clone(), r.seq), (a.key(0), i as u64 + 1));
        published.push(r.id);
    }
    let mut signer = a.signer(a.member(1));
    let mut submitted = Vec::new();
    for ballot in [LEEDS_HHP, HARTLEPOOL_BY] {
        let entry = signer.next(&intention(ballot, S::Intends, ""));
        let r = submit(&mut c, entry.clone()).await.unwrap();
        assert_eq!(r.id, entry_id(&entry));
        assert_eq!(r.author, a.key(1));
        submitted.push(entry);
    }

    let log0 = full_log(&mut c, &a.key(0)).await.unwrap();
    let ids: Vec<Vec<u8>> = log0.iter().map(entry_id).collect();
    assert_eq!(ids, published);
    let log1 = full_log(&mut c, &a.key(1)).await.unwrap();
    assert_eq!(log1, submitted, "submitted bytes come back exactly");

    // Paging: from_seq and limit.
    let page = c
        .get_log(pb::GetLogRequest {
            author: a.key(0),
            from_seq: 2,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(page, log0[1..2]);

    // Status: heads name the last ids, and the digest is the derived state of exactly
    // these entries.
    let status = c
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.entries, 5);
    assert_eq!(status.alliance, a.charter.id().to_vec());
    assert_eq!(status.alliance_name, "Test Alliance");
    let mut heads: Vec<(Vec<u8>, u64, Vec<u8>)> = status
        .heads
        .iter()
        .map(|h| (h.author.clone(), h.seq, h.id.clone()))
        .collect();
    heads.sort();
    let mut want = vec![
        (a.key(0), 3, published[2].clone()),
        (a.key(1), 2, entry_id(&submitted[1])),
    ];
    want.sort();
    assert_eq!(heads, want);
    let all: Vec<pb::SignedEntry> = log0.iter().chain(&log1).cloned().collect();
    assert_eq!(status.digest, a.digest_of(&all).unwrap().to_vec());
    let home_flags: Vec<(Vec<u8>, bool)> = status
        .organisations
        .iter()
        .map(|o| (o.key.clone(), o.home))
        .collect();
    assert!(home_flags.contains(&(a.key(0), true)), "{home_flags:?}");
    assert!(home_flags.contains(&(a.key(1), false)), "{home_flags:?}");

    let charter = c
        .get_charter(pb::GetCharterRequest {})
        .await
        .unwrap()
        .into_inner()
        .charter;
    assert_eq!(charter, a.charter.bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_clashes_pushes_the_new_list_after_a_publish() {
    let (a, _node, mut c) = home_to_all(2, 0).await;
    let mut stream = c
        .watch_clashes(pb::ListClashesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        next_list(&mut stream).await.is_empty(),
        "the current list comes first"
    );
    for who in [0, 1] {
        publish(&mut c, a.member(who), intention(LEEDS_HHP, S::Intends, ""))
            .await
            .unwrap();
    }
    // Bounded: at most a few intermediate lists before the clash shows.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let list = next_list(&mut stream).await;
        if !list.is_empty() {
            assert_eq!(ballots(&list), [(LEEDS_HHP, CS::Open)]);
            return;
        }
        seen.push(list);
    }
    panic!("no clash pushed; saw {seen:?}");
}

async fn next_list(stream: &mut tonic::Streaming<pb::ListClashesResponse>) -> Vec<pb::Clash> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a clash list within 10s")
        .expect("stream ok")
        .expect("stream open")
        .clashes
}
