//! Ballots through the real binary (issue 8): readable names beside the ids, the
//! nation taken from the council, deadlines that say why they are missing or
//! uncertain, and election ids refused where a ballot is needed.

use super::{Alliance, fails};

const GLASGOW: &str = "local.glasgow-city.partick-east-kelvindale.2027-05-06";
const BELFAST: &str = "local.belfast.botanic.2027-05-06";
const UNKNOWN_COUNCIL: &str = "local.atlantis.harbour.2027-05-06";
const OUTSIDE_TABLE: &str = "local.leeds.kirkstall.by.2031-02-13";

/// Both members intend to stand on each ballot: one open clash per ballot.
fn clash_on(a: &Alliance, ballots: &[&str]) {
    for ballot in ballots {
        a.ok(&[
            "intention",
            "declare",
            "--ballot",
            ballot,
            "--status",
            "intends",
        ]);
        a.ok(&[
            "intention",
            "declare",
            "--as",
            "Green Party",
            "--ballot",
            ballot,
            "--status",
            "intends",
        ]);
    }
}

/// Regression (issue 8): a local ballot without `--area` got England's timetable
/// (Glasgow 8 April instead of 2 April 2027, Belfast 8 instead of 13 April); an
/// unknown council was silently English; the table showed no reason for a missing
/// deadline; ballots were shown by id only.
#[test]
fn clash_table_names_ballots_and_says_why_deadlines_are_missing_or_uncertain() {
    let a = Alliance::start();
    clash_on(&a, &[GLASGOW, BELFAST, UNKNOWN_COUNCIL, OUTSIDE_TABLE]);

    let table = a.ok(&["clashes"]);
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"))
            .to_owned()
    };
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NOMINATIONS CLOSE")
            && header.contains("BALLOT")
            && header.contains("ID"),
        "{table}"
    );
    let glasgow = line(GLASGOW);
    assert!(
        glasgow.starts_with("2027-04-02 15:00Z ")
            && glasgow
                .contains("Glasgow City: Partick East Kelvindale, local election, 6 May 2027"),
        "{glasgow}"
    );
    assert!(!glasgow.contains("nation unknown"), "{glasgow}");
    let belfast = line(BELFAST);
    assert!(
        belfast.starts_with("2027-04-13 15:00Z ")
            && belfast.contains("Belfast: Botanic, local election, 6 May 2027"),
        "{belfast}"
    );
    // Unknown council, no area: the earliest possible deadline (Scotland's), flagged.
    let unknown = line(UNKNOWN_COUNCIL);
    assert!(
        unknown.starts_with("2027-04-02 15:00Z (nation unknown) "),
        "{unknown}"
    );
    let outside = line(OUTSIDE_TABLE);
    assert!(
        outside.starts_with(
            "not known: no bank-holiday data for 2031 (the table covers 2024 to 2030) "
        ),
        "{outside}"
    );
    // Soonest first, unknown deadlines last.
    let order: Vec<usize> = [GLASGOW, BELFAST, OUTSIDE_TABLE]
        .iter()
        .map(|id| table.find(id).unwrap())
        .collect();
    assert!(order.is_sorted(), "{table}");

    let json = a.json(&["clashes", "--json"]);
    let clash = |id: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|c| c["ballot"] == id)
            .unwrap_or_else(|| panic!("no {id} in {json}"))
            .clone()
    };
    let c = clash(UNKNOWN_COUNCIL);
    assert_eq!(c["nation_unknown"], true);
    assert_eq!(
        c["ballot_name"],
        "Atlantis: Harbour, local election, 6 May 2027"
    );
    assert!(
        c["deadline_rule"]
            .as_str()
            .unwrap()
            .contains("nation unknown, so the earliest of the deadlines for England and Wales, Scotland and Northern Ireland"),
        "{c}"
    );
    let c = clash(GLASGOW);
    assert_eq!(c["nation_unknown"], false);
    assert_eq!(c["nominations_close"], "2027-04-02T15:00:00Z");
    assert!(
        c["deadline_rule"]
            .as_str()
            .unwrap()
            .contains("23 working days"),
        "{c}"
    );
    assert_eq!(clash(BELFAST)["nominations_close"], "2027-04-13T15:00:00Z");
}

/// Regression (issue 8): an area contradicting the council, or areas in different
/// nations, gave a deadline that depended on which party's key sorted first.
#[test]
fn contradicting_areas_lose_to_the_council_and_are_shown() {
    let a = Alliance::start();
    a.ok(&[
        "intention",
        "declare",
        "--ballot",
        GLASGOW,
        "--status",
        "intends",
        "--area",
        "E05011408",
    ]);
    a.ok(&[
        "intention",
        "declare",
        "--as",
        "Green Party",
        "--ballot",
        GLASGOW,
        "--status",
        "intends",
        "--area",
        "S13002982",
    ]);
    let table = a.ok(&["clashes"]);
    assert!(
        table.contains("2027-04-02 15:00Z (areas disagree)  Glasgow City: Partick East Kelvindale"),
        "{table}"
    );
    let json = a.json(&["clashes", "--json"]);
    let c = &json[0];
    assert_eq!(c["nominations_close"], "2027-04-02T15:00:00Z", "{c}");
    assert_eq!(c["areas_disagree"], true, "{c}");
    assert!(
        c["deadline_rule"].as_str().unwrap().ends_with(
            "; disagreement: area E05011408 (England) given, but the council, Glasgow City, is in Scotland, whose rules apply"
        ),
        "{c}"
    );
}

/// Regression (issue 8): intentions on election ids were accepted, and a query with a
/// malformed ballot id answered an empty list.
#[test]
fn election_ids_and_malformed_query_ids_are_refused() {
    let a = Alliance::start();
    for (election, form) in [
        ("parl.2024-07-04", "parl.<constituency>.2024-07-04"),
        ("local.leeds.2027-05-06", "local.leeds.<ward>.2027-05-06"),
        ("sp.c.2026-05-07", "sp.c.<constituency>.2026-05-07"),
    ] {
        let err = fails(&a.args(&[
            "intention",
            "declare",
            "--ballot",
            election,
            "--status",
            "intends",
        ]));
        assert!(
            err.contains(&format!(
                "\"{election}\" names an election, not a ballot: an intention is declared on one ballot, such as {form}"
            )) && err.contains("invalid argument"),
            "{err}"
        );
    }
    assert_eq!(a.entries(), 0, "nothing stored");

    let err = fails(&a.args(&["intentions", "--ballot", "parl.x.2017-02-30"]));
    assert!(
        err.contains("ballot: ballot id \"parl.x.2017-02-30\" has an impossible date 2017-02-30"),
        "{err}"
    );
    let err = fails(&a.args(&["intentions", "--ballot", "parl.2024-07-04"]));
    assert!(err.contains("names an election, not a ballot"), "{err}");
    let err = fails(&a.args(&["intentions", "--election", "local.leeds.2027-02-30"]));
    assert!(err.contains("election: ballot id"), "{err}");
    let err = fails(&a.args(&["clashes", "--election", "local.Leeds.2027-05-06"]));
    assert!(err.contains("election: bad character 'L'"), "{err}");

    // A council's GSS code is shown by name; the ballot by name beside its id.
    a.ok(&[
        "intention",
        "declare",
        "--ballot",
        GLASGOW,
        "--status",
        "intends",
        "--area",
        "S12000049",
    ]);
    let table = a.ok(&["intentions"]);
    assert!(
        table.contains("Glasgow City: Partick East Kelvindale, local election, 6 May 2027  local.glasgow-city.partick-east-kelvindale.2027-05-06")
            && table.contains("Glasgow City (S12000049)"),
        "{table}"
    );
}
