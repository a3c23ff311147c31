//! Derived state scenarios, snapshotted as readable text (`UPDATE_EXPECT=1 cargo test`
//! rewrites the expectations).

use accord_core::State;
use accord_core::pb;
use accord_core::pb::IntentionStatus as S;
use accord_core::pb::publish_request::Body as B;
use expect_test::{Expect, expect};

use crate::fixture::*;

/// Applies each (author, body) in turn and renders the derived state.
fn check(steps: Vec<Step>, expected: Expect) {
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    for (who, make) in steps {
        let body = make(&alliance);
        let entry = alliance.verified(&state, who, body);
        state.apply(&entry);
    }
    expected.assert_eq(&render(&alliance, &state));
    // The digest kept item by item is the digest of the views made whole.
    assert_eq!(
        state.digest(),
        accord_core::state::digest_of(&state.derived())
    );
}

fn render(alliance: &Alliance, state: &State) -> String {
    let name = |k: &accord_core::PublicId| alliance.charter.name_of(k).unwrap_or("?").to_owned();
    let mut out = String::new();
    for c in state.clashes() {
        let parties: Vec<String> = c
            .parties
            .iter()
            .map(|p| {
                format!(
                    "{}={}",
                    name(&p.organisation),
                    p.status.map_or("-", |s| s.as_str())
                )
            })
            .collect();
        let close = c
            .nominations_close
            .map_or("none".to_owned(), |t| t.to_rfc3339());
        out += &format!(
            "clash {} {} [{}] close {}\n",
            c.ballot,
            c.state.as_str(),
            parties.join(", "),
            close
        );
    }
    for r in state.resolutions() {
        out += &format!("resolution {} {}\n", r.resolution.ballot, r.state.as_str());
    }
    for s in state.statements() {
        let by: Vec<String> = s.endorsed_by.iter().map(name).collect();
        out += &format!(
            "statement {:?} by {} endorsed [{}] joint={} withdrawn={}\n",
            s.statement.title,
            name(&s.author),
            by.join(", "),
            s.joint,
            s.withdrawn
        );
    }
    for e in state.events() {
        out += &format!(
            "event {} {:?} {}..{} seq={} cancelled={}\n",
            e.event.uid,
            e.event.title,
            e.event.start_utc.to_rfc3339(),
            e.event.end_utc.to_rfc3339(),
            e.sequence,
            e.event.cancelled
        );
    }
    for c in state.event_clashes() {
        out += &format!(
            "event-clash {} ~ {} ({})\n",
            c.first.uid, c.second.uid, c.reason
        );
    }
    out
}

type Step = (usize, Box<dyn Fn(&Alliance) -> B>);

fn step(who: usize, f: impl Fn(&Alliance) -> B + 'static) -> Step {
    (who, Box::new(f))
}

const LEEDS: &str = "local.leeds.headingley-hyde-park.2027-05-06";
const BY: &str = "parl.runcorn-and-helsby.by.2027-03-04";

#[test]
fn two_allies_intending_to_stand_clash() {
    check(
        vec![
            step(A, |_| intention(LEEDS, S::Intends, "")),
            step(B_, |_| intention(LEEDS, S::Confirmed, "Jo Bloggs")),
            step(C, |_| intention(BY, S::Considering, "")),
            step(A, |_| intention(BY, S::Intends, "")),
        ],
        expect![[r#"
            clash parl.runcorn-and-helsby.by.2027-03-04 potential [Alpha Party=intends, Gamma Party=considering] close 2027-02-05T16:00:00+00:00
            clash local.leeds.headingley-hyde-park.2027-05-06 open [Beta Party=confirmed, Alpha Party=intends] close 2027-04-08T15:00:00+00:00
        "#]],
    );
}

#[test]
fn a_resolution_is_pending_then_resolved_then_breached() {
    let resolve = |a: &Alliance| resolution(LEEDS, vec![a.key_bytes(A)], vec![a.key_bytes(B_)]);
    let base = || {
        vec![
            step(A, |_| intention(LEEDS, S::Intends, "")),
            step(B_, |_| intention(LEEDS, S::Intends, "")),
            step(SEC, resolve),
        ]
    };
    check(
        base(),
        expect![[r#"
            clash local.leeds.headingley-hyde-park.2027-05-06 pending [Beta Party=intends, Alpha Party=intends] close 2027-04-08T15:00:00+00:00
            resolution local.leeds.headingley-hyde-park.2027-05-06 pending
        "#]],
    );
    let mut resolved = base();
    resolved.push(step(B_, |_| intention(LEEDS, S::StoodAside, "")));
    check(
        resolved,
        expect![[r#"
            clash local.leeds.headingley-hyde-park.2027-05-06 resolved [Beta Party=stood-aside, Alpha Party=intends] close 2027-04-08T15:00:00+00:00
            resolution local.leeds.headingley-hyde-park.2027-05-06 resolved
        "#]],
    );
    let mut breached = base();
    breached.push(step(B_, |_| intention(LEEDS, S::StoodAside, "")));
    breached.push(step(B_, |_| intention(LEEDS, S::Intends, "")));
    check(
        breached,
        expect![[r#"
            clash local.leeds.headingley-hyde-park.2027-05-06 breached [Beta Party=intends, Alpha Party=intends] close 2027-04-08T15:00:00+00:00
            resolution local.leeds.headingley-hyde-park.2027-05-06 breached
        "#]],
    );
}

#[test]
fn a_third_party_reopens_a_resolved_clash() {
    check(
        vec![
            step(A, |_| intention(LEEDS, S::Intends, "")),
            step(B_, |_| intention(LEEDS, S::Intends, "")),
            step(SEC, |a| {
                resolution(LEEDS, vec![a.key_bytes(A)], vec![a.key_bytes(B_)])
            }),
            step(B_, |_| intention(LEEDS, S::Withdrawn, "")),
            step(C, |_| intention(LEEDS, S::Intends, "")),
        ],
        expect![[r#"
            clash local.leeds.headingley-hyde-park.2027-05-06 open [Beta Party=withdrawn, Alpha Party=intends, Gamma Party=intends] close 2027-04-08T15:00:00+00:00
            resolution local.leeds.headingley-hyde-park.2027-05-06 resolved
        "#]],
    );
}

fn statement_with(cosigners: Vec<Vec<u8>>) -> B {
    B::Statement(pb::Statement {
        title: "Stop splitting the vote".into(),
        text: "We stand together.".into(),
        cosigners,
    })
}

#[test]
fn a_statement_becomes_joint_when_every_cosigner_endorses() {
    // The statement is A's first entry, so its id is known from the fixture's keys.
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let cosigners = vec![alliance.key_bytes(B_), alliance.key_bytes(C)];
    let statement = alliance.verified(&state, A, statement_with(cosigners));
    state.apply(&statement);
    let endorse = B::Endorsement(pb::Endorsement {
        statement: statement.id().to_vec(),
    });
    let e1 = alliance.verified(&state, B_, endorse.clone());
    state.apply(&e1);
    expect![[r#"
        statement "Stop splitting the vote" by Alpha Party endorsed [Beta Party] joint=false withdrawn=false
    "#]]
    .assert_eq(&render(&alliance, &state));
    let e2 = alliance.verified(&state, C, endorse);
    state.apply(&e2);
    expect![[r#"
        statement "Stop splitting the vote" by Alpha Party endorsed [Beta Party, Gamma Party] joint=true withdrawn=false
    "#]]
    .assert_eq(&render(&alliance, &state));
    // Only the author can withdraw it.
    let by_other = B::StatementWithdrawal(pb::StatementWithdrawal {
        statement: statement.id().to_vec(),
        reason: String::new(),
    });
    let w = alliance.verified(&state, B_, by_other.clone());
    state.apply(&w);
    assert!(!state.statements()[0].withdrawn);
    let w = alliance.verified(&state, A, by_other);
    state.apply(&w);
    assert!(state.statements()[0].withdrawn);
}

#[test]
fn events_update_cancel_and_clash() {
    check(
        vec![
            step(A, |_| {
                B::Event(event(
                    "rally",
                    "2027-04-10T11:00",
                    "2027-04-10T13:00",
                    "Leeds Town Hall",
                    "",
                ))
            }),
            step(B_, |_| {
                B::Event(event(
                    "stall",
                    "2027-04-10T12:30",
                    "2027-04-10T14:00",
                    "  leeds town   hall",
                    "",
                ))
            }),
            step(C, |_| {
                B::Event(event(
                    "canvass",
                    "2027-04-10T12:00",
                    "2027-04-10T15:00",
                    "Hyde Park",
                    "E05011400",
                ))
            }),
            step(A, |_| {
                B::Event(event(
                    "hustings",
                    "2027-04-10T14:30",
                    "2027-04-10T16:00",
                    "Library",
                    "E05011400",
                ))
            }),
            step(A, |_| {
                let mut e = event(
                    "rally",
                    "2027-04-10T10:00",
                    "2027-04-10T12:45",
                    "Leeds Town Hall",
                    "",
                );
                e.title = "Rally (moved earlier)".into();
                B::Event(e)
            }),
            step(C, |_| {
                let mut e = event(
                    "canvass",
                    "2027-04-10T12:00",
                    "2027-04-10T15:00",
                    "Hyde Park",
                    "E05011400",
                );
                e.cancelled = true;
                B::Event(e)
            }),
        ],
        expect![[r#"
            event rally "Rally (moved earlier)" 2027-04-10T09:00:00+00:00..2027-04-10T11:45:00+00:00 seq=1 cancelled=false
            event canvass "Event canvass" 2027-04-10T11:00:00+00:00..2027-04-10T14:00:00+00:00 seq=1 cancelled=true
            event stall "Event stall" 2027-04-10T11:30:00+00:00..2027-04-10T13:00:00+00:00 seq=0 cancelled=false
            event hustings "Event hustings" 2027-04-10T13:30:00+00:00..2027-04-10T15:00:00+00:00 seq=0 cancelled=false
            event-clash rally ~ stall (venue)
        "#]],
    );
}

#[test]
fn events_across_the_clock_changes_convert_to_utc() {
    check(
        vec![
            // 00:30 on the last Sunday of March is still GMT; 03:00 is BST.
            step(A, |_| {
                B::Event(event(
                    "spring",
                    "2027-03-28T00:30",
                    "2027-03-28T03:00",
                    "Hall",
                    "",
                ))
            }),
            // 01:30 on the last Sunday of October happens twice: the first (BST) is meant.
            step(A, |_| {
                B::Event(event(
                    "autumn",
                    "2027-10-31T01:30",
                    "2027-10-31T02:30",
                    "Hall",
                    "",
                ))
            }),
        ],
        expect![[r#"
            event spring "Event spring" 2027-03-28T00:30:00+00:00..2027-03-28T02:00:00+00:00 seq=0 cancelled=false
            event autumn "Event autumn" 2027-10-31T00:30:00+00:00..2027-10-31T02:30:00+00:00 seq=0 cancelled=false
        "#]],
    );
}

fn intention_in(ballot: &str, area: &str) -> B {
    match intention(ballot, S::Intends, "") {
        B::Intention(mut i) => {
            i.area = area.into();
            B::Intention(i)
        }
        _ => unreachable!(),
    }
}

/// Regression (issue 8): the deadline took the area of whichever party's key sorted
/// first. Two ballots with the same areas given by the parties the other way round
/// must get the same deadline (the earliest of the two nations', with the
/// disagreement in the rule), and the council beats an area that contradicts it.
#[test]
fn deadlines_do_not_depend_on_which_party_key_sorts_first() {
    const X: &str = "parl.glasgow-east.by.2027-04-29";
    const Y: &str = "parl.leeds-east.by.2027-04-29";
    const GLASGOW: &str = "local.glasgow-city.partick-east-kelvindale.2027-05-06";
    let mut alliance = Alliance::new();
    let mut state = State::new(alliance.charter.clone());
    let steps = [
        (A, intention_in(X, "S14000083")),
        (B_, intention_in(X, "E14001451")),
        (A, intention_in(Y, "E14001451")),
        (B_, intention_in(Y, "S14000083")),
        (A, intention_in(GLASGOW, "E05011408")),
        (B_, intention_in(GLASGOW, "")),
    ];
    for (who, body) in steps {
        let entry = alliance.verified(&state, who, body);
        state.apply(&entry);
    }
    let clashes = state.clashes();
    let lines: Vec<String> = clashes
        .iter()
        .map(|c| {
            format!(
                "{} {} {:?}\n  {}",
                c.ballot,
                c.nominations_close.unwrap().to_rfc3339(),
                c.nation,
                c.deadline_rule
            )
        })
        .collect();
    expect![[r#"
        local.glasgow-city.partick-east-kelvindale.2027-05-06 2027-04-02T15:00:00+00:00 Some(Scotland)
          23 working days before poll, 4pm, Easter Monday also excluded (Scottish Local Government Elections Order 2011, SSI 2011/399); disagreement: area E05011408 (England) given, but the council, Glasgow City, is in Scotland, whose rules apply
        parl.glasgow-east.by.2027-04-29 2027-04-02T15:00:00+00:00 None
          19 working days before poll, 4pm (Representation of the People Act 1983, Sch. 1 r. 1); nation unknown, so the earliest of the deadlines for England and Scotland; disagreement: areas in different nations given: E14001451 (England), S14000083 (Scotland)
        parl.leeds-east.by.2027-04-29 2027-04-02T15:00:00+00:00 None
          19 working days before poll, 4pm (Representation of the People Act 1983, Sch. 1 r. 1); nation unknown, so the earliest of the deadlines for England and Scotland; disagreement: areas in different nations given: E14001451 (England), S14000083 (Scotland)"#]].assert_eq(&lines.join("\n"));
}

/// Regression (issue 8): an intention on an election id (`parl.2024-07-04`) counted as
/// a position on a ballot. Publishing refuses it now; one an older release signed is
/// still stored and relayed, but counts nowhere.
#[test]
fn intentions_on_election_ids_count_nowhere() {
    check(
        vec![
            step(A, |_| intention("local.leeds.2027-05-06", S::Intends, "")),
            step(B_, |_| intention("local.leeds.2027-05-06", S::Intends, "")),
            step(C, |_| intention("parl.2027-05-06", S::Considering, "")),
            step(A, |_| intention(LEEDS, S::Intends, "")),
            step(B_, |_| intention(LEEDS, S::Intends, "")),
        ],
        expect![[r#"
            clash local.leeds.headingley-hyde-park.2027-05-06 open [Beta Party=intends, Alpha Party=intends] close 2027-04-08T15:00:00+00:00
        "#]],
    );
    let mut alliance = Alliance::new();
    let state = State::new(alliance.charter.clone());
    let entry = alliance.verified(&state, A, intention("parl.2027-05-06", S::Intends, ""));
    assert_eq!(
        accord_core::body::check_new(entry.body().expect("an intention body"))
            .unwrap_err()
            .to_string(),
        "\"parl.2027-05-06\" names an election, not a ballot: an intention is declared on one ballot, such as parl.<constituency>.2027-05-06"
    );
}

/// All-day events cover whole days in their zone (DTEND exclusive): they clash with
/// anything at the same venue or area on one of their days, and not with the day
/// after their last.
#[test]
fn all_day_events_clash_by_dates() {
    fn all_day(uid: &str, first: &str, last: &str, venue: &str) -> B {
        let mut e = event(uid, first, last, venue, "");
        e.all_day = true;
        B::Event(e)
    }
    check(
        vec![
            step(A, |_| all_day("fair", "2027-05-01", "2027-05-02", "Park")),
            // The evening of the fair's last day: a clash.
            step(B_, |_| {
                B::Event(event(
                    "gig",
                    "2027-05-02T19:00",
                    "2027-05-02T23:00",
                    "Park",
                    "",
                ))
            }),
            // The day after the last: none.
            step(C, |_| all_day("picnic", "2027-05-03", "", "Park")),
            // Overlapping days: a clash.
            step(C, |_| all_day("camp", "2027-04-30", "2027-05-01", "park")),
        ],
        expect![[r#"
            event camp "Event camp" 2027-04-29T23:00:00+00:00..2027-05-01T23:00:00+00:00 seq=0 cancelled=false
            event fair "Event fair" 2027-04-30T23:00:00+00:00..2027-05-02T23:00:00+00:00 seq=0 cancelled=false
            event gig "Event gig" 2027-05-02T18:00:00+00:00..2027-05-02T22:00:00+00:00 seq=0 cancelled=false
            event picnic "Event picnic" 2027-05-02T23:00:00+00:00..2027-05-03T23:00:00+00:00 seq=0 cancelled=false
            event-clash camp ~ fair (venue)
            event-clash fair ~ gig (venue)
        "#]],
    );
}
