//! `accord demo`: a ready-made alliance in one folder, served by one in-process node
//! that is home to every demo identity, seeded through the real gRPC API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord_core::pb::publish_request::Body;
use accord_core::{Charter, Identity, PublicId, pb};
use anyhow::{Context, Result, anyhow, bail};
use chrono::{Days, NaiveDate, Utc};
use serde_json::json;

use crate::client::{Client, rpc};
use crate::commands::{node, publish, setup};
use crate::files;
use crate::render::println;

const ALLIANCE: &str = "Progressive Alliance of the Left";
const NODE_NAME: &str = "pal-node";
const BREAKTHROUGH: &str = "Breakthrough Party";
const GREEN_LEFT: &str = "Northern Green Left";
const RADICAL: &str = "Radical Socialist Alliance";
const SECRETARIAT: &str = "PAL Secretariat";

/// The demo identities: name, key file, sample Electoral Commission id (members only).
const ORGS: &[(&str, &str, Option<&str>)] = &[
    (BREAKTHROUGH, "keys/breakthrough-party.pem", Some("PP99901")),
    (GREEN_LEFT, "keys/northern-green-left.pem", Some("PP99902")),
    (
        RADICAL,
        "keys/radical-socialist-alliance.pem",
        Some("PP99903"),
    ),
    (SECRETARIAT, "keys/pal-secretariat.pem", None),
];

struct Demo {
    dir: PathBuf,
    charter: Charter,
    identities: Vec<(String, Identity)>,
    token: String,
}

impl Demo {
    fn key(&self, name: &str) -> PublicId {
        self.identities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i.public_id())
            .expect("a demo identity")
    }
}

pub async fn run(dir: &Path, listen: SocketAddr) -> Result<()> {
    // The summary on stdout is what a demo user reads; the node's logs stay quiet.
    node::init_tracing("warn");
    std::fs::create_dir_all(dir.join("keys"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    // A demo.json from an earlier run names an address that is gone: it reappears
    // once this run is ready.
    let manifest = dir.join("demo.json");
    if manifest.exists() {
        std::fs::remove_file(&manifest)
            .with_context(|| format!("cannot remove {}", manifest.display()))?;
    }
    let demo = prepare(&dir)?;
    let shutdown = node::shutdown_signal()?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let grpc = format!("http://{address}");
    write_configs(&demo, address)?;
    let config = accord_node::NodeConfig::load(&dir.join("node.toml"))?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut node = tokio::spawn(accord_node::run(config, listener, async {
        let _ = stopped.await;
    }));

    tokio::pin!(shutdown);
    let seeded = tokio::select! {
        seeded = seed_if_empty(&demo, &grpc) => seeded?,
        result = &mut node => return node_ended(result),
        () = &mut shutdown => {
            let _ = stop.send(());
            return node_ended(node.await);
        }
    };
    write_demo_json(&demo, &grpc)?;
    print_summary(&demo, &grpc, seeded);

    tokio::select! {
        result = &mut node => node_ended(result),
        () = &mut shutdown => {
            let _ = stop.send(());
            node_ended(node.await)
        }
    }
}

fn node_ended(
    result: Result<Result<(), accord_node::NodeError>, tokio::task::JoinError>,
) -> Result<()> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(anyhow!("node stopped: {error}")),
        Err(error) => Err(anyhow!("node failed: {error}")),
    }
}

/// Creates the keys, charter and token, or reuses them if the charter exists.
fn prepare(dir: &Path) -> Result<Demo> {
    let charter_path = dir.join("charter.json");
    let token_path = dir.join("token");
    if charter_path.exists() {
        let bytes = std::fs::read(&charter_path)
            .with_context(|| format!("cannot read {}", charter_path.display()))?;
        let charter =
            Charter::from_bytes(bytes).with_context(|| charter_path.display().to_string())?;
        let mut identities = Vec::new();
        for (name, file, _) in ORGS {
            let identity = setup::read_identity(&dir.join(file))
                .context("the demo folder is incomplete; remove it or choose another")?;
            if charter.find(name) != Some(identity.public_id()) {
                bail!(
                    "{} does not hold the key of {name} in {}; remove the folder or choose another",
                    file,
                    charter_path.display()
                );
            }
            identities.push(((*name).to_owned(), identity));
        }
        let token = crate::client::read_token(&token_path)
            .context("the demo folder is incomplete; remove it or choose another")?;
        return Ok(Demo {
            dir: dir.to_owned(),
            charter,
            identities,
            token,
        });
    }
    if dir.join("data").exists() {
        bail!(
            "{} holds node data but no charter.json; remove it or choose another folder",
            dir.display()
        );
    }
    let mut identities = Vec::new();
    for (name, file, _) in ORGS {
        let identity = setup::write_new_identity(&dir.join(file), true)?;
        identities.push(((*name).to_owned(), identity));
    }
    let key_of = |name: &str| {
        identities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i): &(String, Identity)| i.public_id())
            .expect("a demo identity")
    };
    let members: Vec<(String, PublicId, Option<String>)> = ORGS
        .iter()
        .filter_map(|(name, _, ec)| {
            ec.map(|ec| ((*name).to_owned(), key_of(name), Some(ec.to_owned())))
        })
        .collect();
    let secretaries = vec![(SECRETARIAT.to_owned(), key_of(SECRETARIAT))];
    let (bytes, charter) = setup::charter_file_bytes(ALLIANCE, &members, &secretaries)?;
    let token = setup::new_token()?;
    files::write_secret(&token_path, format!("{token}\n").as_bytes(), true)?;
    // The charter last: its presence marks a complete demo folder.
    files::write_new(&charter_path, &bytes, true)?;
    Ok(Demo {
        dir: dir.to_owned(),
        charter,
        identities,
        token,
    })
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

fn write_configs(demo: &Demo, address: SocketAddr) -> Result<()> {
    let identities: Vec<String> = ORGS.iter().map(|(_, f, _)| toml_string(f)).collect();
    let names: Vec<String> = ORGS.iter().map(|(n, _, _)| toml_string(n)).collect();
    let node_toml = format!(
        "# Written by `accord demo`; rewritten on every start.\n\
         data_dir = \"data\"\n\
         listen = \"{address}\"\n\
         charter = \"charter.json\"\n\
         identities = [{}]\n\
         cache_capacity_mb = 32\n\n\
         [[operators]]\n\
         name = \"demo-operator\"\n\
         token_sha256 = \"{}\"\n\
         identities = [{}]\n",
        identities.join(", "),
        setup::token_sha256(&demo.token),
        names.join(", "),
    );
    files::write_new(&demo.dir.join("node.toml"), node_toml.as_bytes(), true)?;
    let client_toml = format!(
        "# Written by `accord demo`; rewritten on every start.\n\
         node = \"http://{address}\"\n\
         token_file = \"token\"\n\
         as = {}\n",
        toml_string(BREAKTHROUGH)
    );
    files::write_new(&demo.dir.join("client.toml"), client_toml.as_bytes(), true)
}

/// Publishes the sample data if the ledger is empty. Returns whether it did.
async fn seed_if_empty(demo: &Demo, grpc: &str) -> Result<bool> {
    let mut client = connect(grpc, &demo.token).await?;
    let status = client
        .ledger
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(rpc)?
        .into_inner();
    if status.entries > 0 {
        return Ok(false);
    }
    seed(demo, &mut client, Utc::now().date_naive()).await?;
    Ok(true)
}

/// Connects, retrying briefly while the node starts (at most ten seconds).
async fn connect(grpc: &str, token: &str) -> Result<Client> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect_with(grpc, token, None).await {
            Ok(mut client) => match client.ledger.get_status(pb::GetStatusRequest {}).await {
                Ok(_) => return Ok(client),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(rpc(e)),
                Err(_) => {}
            },
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn intention(ballot: &str, status: pb::IntentionStatus) -> pb::Intention {
    pb::Intention {
        ballot: ballot.to_owned(),
        status: status as i32,
        visibility: pb::Visibility::Alliance as i32,
        ..Default::default()
    }
}

const HEADINGLEY: &str = "local.leeds.headingley-hyde-park.2027-05-06";
const LITTLE_LONDON: &str = "local.leeds.little-london-and-woodhouse.2027-05-06";
const HULME: &str = "local.manchester.hulme.2027-05-06";
const BROOMHILL: &str = "local.sheffield.broomhill-and-sharrow-vale.2027-05-06";
const ASHLEY: &str = "local.bristol.ashley.2027-05-06";
const BY_ELECTION: &str = "parl.leeds-central-and-headingley.by.2027-03-04";

struct SampleEvent {
    by: PublicId,
    uid: &'static str,
    title: &'static str,
    /// Days from today.
    day: u64,
    start: &'static str,
    end: &'static str,
    venue: &'static str,
    area: &'static str,
    /// Organisers besides the author.
    with: Vec<PublicId>,
    public: bool,
}

async fn seed(demo: &Demo, client: &mut Client, today: NaiveDate) -> Result<()> {
    use pb::IntentionStatus as S;
    let b = demo.key(BREAKTHROUGH);
    let g = demo.key(GREEN_LEFT);
    let r = demo.key(RADICAL);
    let s = demo.key(SECRETARIAT);

    let mut steps: Vec<(PublicId, Body)> = Vec::new();
    let mut declare = |who: PublicId, i: pb::Intention| steps.push((who, Body::Intention(i)));
    // An open clash: two members intend to stand in Headingley & Hyde Park.
    declare(
        b,
        pb::Intention {
            candidate: "Sam Example".into(),
            note: "Sample data: our strongest ward in Leeds".into(),
            visibility: pb::Visibility::Public as i32,
            ..intention(HEADINGLEY, S::Intends)
        },
    );
    declare(g, intention(HEADINGLEY, S::Intends));
    // Resolved: both intend in Hulme, the secretariat decides, the Radical Socialist
    // Alliance stands aside.
    declare(b, intention(HULME, S::Intends));
    declare(r, intention(HULME, S::Intends));
    // Pending: resolved on paper, Breakthrough has not yet stood aside.
    declare(b, intention(LITTLE_LONDON, S::Intends));
    declare(g, intention(LITTLE_LONDON, S::Intends));
    // Potential: one intends, another is considering, in a Westminster by-election.
    declare(b, intention(BY_ELECTION, S::Intends));
    declare(g, intention(BY_ELECTION, S::Considering));
    // No clash: one confirmed candidate, and a ballot only one member wants.
    declare(
        b,
        pb::Intention {
            candidate: "Alex Sample".into(),
            visibility: pb::Visibility::Public as i32,
            ..intention(BROOMHILL, S::Confirmed)
        },
    );
    declare(r, intention(ASHLEY, S::Considering));
    for (who, body) in steps.drain(..) {
        publish::publish(client, who, body).await?;
    }

    publish::publish(
        client,
        s,
        Body::Resolution(pb::Resolution {
            ballot: HULME.into(),
            stands: vec![b.to_vec()],
            stand_aside: vec![r.to_vec()],
            rationale: "Breakthrough came second here in 2024; RSA concentrates on Ashley".into(),
        }),
    )
    .await?;
    publish::publish(
        client,
        r,
        Body::Intention(pb::Intention {
            note: "Standing aside for Breakthrough, as the secretariat resolved".into(),
            ..intention(HULME, S::StoodAside)
        }),
    )
    .await?;
    publish::publish(
        client,
        s,
        Body::Resolution(pb::Resolution {
            ballot: LITTLE_LONDON.into(),
            stands: vec![g.to_vec()],
            stand_aside: vec![b.to_vec()],
            rationale: "Northern Green Left has the sitting councillor".into(),
        }),
    )
    .await?;

    // A joint statement: Breakthrough asks two partners to co-sign, both endorse.
    let statement = publish::publish(
        client,
        b,
        Body::Statement(pb::Statement {
            title: "One progressive candidate per ward in May 2027".into(),
            text: "The parties of the Progressive Alliance of the Left will not split the \
                   vote: in every ward of the May 2027 local elections we back one \
                   progressive candidate. (Sample text.)"
                .into(),
            cosigners: vec![g.to_vec(), r.to_vec()],
        }),
    )
    .await?;
    for who in [g, r] {
        publish::publish(
            client,
            who,
            Body::Endorsement(pb::Endorsement {
                statement: statement.id.clone(),
            }),
        )
        .await?;
    }
    publish::publish(
        client,
        s,
        Body::Statement(pb::Statement {
            title: "Clash resolution timetable".into(),
            text: "Declare intentions for May 2027 by the end of January; the secretariat \
                   resolves clashes in order of close of nominations. (Sample text.)"
                .into(),
            cosigners: Vec::new(),
        }),
    )
    .await?;

    // A week of events from tomorrow, two of them at the same venue at the same time.
    let day = |n: u64| {
        today
            .checked_add_days(Days::new(n))
            .expect("a date in range")
            .format("%Y-%m-%d")
            .to_string()
    };
    let events = [
        SampleEvent {
            by: b,
            uid: "canvass-briefing-headingley",
            title: "Canvass briefing: Headingley & Hyde Park",
            day: 1,
            start: "19:00",
            end: "21:00",
            venue: "Headingley Community Centre, Leeds",
            area: "",
            with: vec![g],
            public: true,
        },
        SampleEvent {
            by: g,
            uid: "members-meeting-hyde-park",
            title: "Hyde Park members' meeting",
            day: 1,
            start: "19:30",
            end: "21:00",
            venue: "Headingley Community Centre, Leeds",
            area: "",
            with: vec![],
            public: false,
        },
        SampleEvent {
            by: r,
            uid: "hulme-stand-aside-explained",
            title: "Hulme: why we stand aside",
            day: 2,
            start: "18:30",
            end: "20:00",
            venue: "Zion Arts Centre, Manchester",
            area: "E05011368",
            with: vec![b],
            public: true,
        },
        SampleEvent {
            by: g,
            uid: "leafleting-little-london",
            title: "Leafleting day, Little London",
            day: 3,
            start: "10:00",
            end: "13:00",
            venue: "Little London Community Centre, Leeds",
            area: "",
            with: vec![],
            public: true,
        },
        SampleEvent {
            by: b,
            uid: "hustings-prep-broomhill",
            title: "Hustings preparation, Broomhill",
            day: 4,
            start: "19:00",
            end: "21:00",
            venue: "Broomhill Community Hall, Sheffield",
            area: "E05010857",
            with: vec![],
            public: false,
        },
        SampleEvent {
            by: s,
            uid: "secretariat-open-meeting",
            title: "Secretariat open meeting",
            day: 5,
            start: "14:00",
            end: "16:00",
            venue: "Online (link sent to members)",
            area: "",
            with: vec![],
            public: false,
        },
        SampleEvent {
            by: b,
            uid: "street-stall-hulme",
            title: "Joint street stall, Hulme",
            day: 6,
            start: "11:00",
            end: "15:00",
            venue: "Hulme High Street, Manchester",
            area: "",
            with: vec![r],
            public: true,
        },
        SampleEvent {
            by: g,
            uid: "by-election-launch",
            title: "By-election campaign launch",
            day: 7,
            start: "18:00",
            end: "20:00",
            venue: "Leeds Civic Hall steps",
            area: "",
            with: vec![b],
            public: true,
        },
        SampleEvent {
            by: r,
            uid: "ashley-social",
            title: "Ashley social evening",
            day: 5,
            start: "19:00",
            end: "22:00",
            venue: "Easton Community Centre, Bristol",
            area: "",
            with: vec![],
            public: false,
        },
    ];
    for e in events {
        let SampleEvent {
            by: who,
            uid,
            title,
            day: n,
            start,
            end,
            venue,
            area,
            with,
            public,
        } = e;
        let mut organisers = vec![who.to_vec()];
        organisers.extend(with.iter().map(PublicId::to_vec));
        publish::publish(
            client,
            who,
            Body::Event(pb::Event {
                uid: uid.into(),
                title: title.into(),
                description: "Sample event".into(),
                start: format!("{}T{start}", day(n)),
                end: format!("{}T{end}", day(n)),
                time_zone: "Europe/London".into(),
                venue: venue.into(),
                area: area.into(),
                organisers,
                visibility: if public {
                    pb::Visibility::Public
                } else {
                    pb::Visibility::Alliance
                } as i32,
                cancelled: false,
            }),
        )
        .await?;
    }
    // One cancelled event, kept for the record.
    let mut cancelled = pb::Event {
        uid: "ashley-quiz-night".into(),
        title: "Ashley quiz night".into(),
        description: "Sample event, later cancelled".into(),
        start: format!("{}T19:30", day(4)),
        end: format!("{}T22:00", day(4)),
        time_zone: "Europe/London".into(),
        venue: "The Plough, Bristol".into(),
        area: String::new(),
        organisers: vec![r.to_vec()],
        visibility: pb::Visibility::Alliance as i32,
        cancelled: false,
    };
    publish::publish(client, r, Body::Event(cancelled.clone())).await?;
    cancelled.cancelled = true;
    publish::publish(client, r, Body::Event(cancelled)).await?;
    Ok(())
}

fn write_demo_json(demo: &Demo, grpc: &str) -> Result<()> {
    let dir = &demo.dir;
    let value = json!({
        "alliance": {"id": demo.charter.id().to_string(), "name": demo.charter.name()},
        "nodes": [{
            "name": NODE_NAME,
            "grpc": grpc,
            "client_config": dir.join("client.toml"),
            "node_config": dir.join("node.toml"),
            "token_file": dir.join("token"),
            "data_dir": dir.join("data"),
        }],
        "organisations": ORGS.iter().map(|(name, file, ec)| json!({
            "name": name,
            "id": demo.key(name).to_string(),
            "role": if ec.is_some() { "member" } else { "secretary" },
            "ec_id": ec,
            "node": NODE_NAME,
            "key_file": dir.join(file),
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&value)? + "\n";
    // Written whole, then renamed: a reader never sees half a file.
    let temporary = dir.join("demo.json.tmp");
    std::fs::write(&temporary, text)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, dir.join("demo.json"))
        .with_context(|| format!("cannot write {}", dir.join("demo.json").display()))
}

fn print_summary(demo: &Demo, grpc: &str, seeded: bool) {
    let dir = demo.dir.display();
    let config = demo.dir.join("client.toml");
    let config = config.display();
    println(&format!(
        "Demo alliance \"{ALLIANCE}\" ({})\n\
         node {NODE_NAME} listening on {grpc}, home to {}\n\
         {}\n\
         files in {dir}: demo.json, charter.json, client.toml, node.toml, token, keys/, data/\n\
         \n\
         Try, in another terminal:\n  \
           export ACCORD_CONFIG={config}\n  \
           accord status\n  \
           accord clashes\n  \
           accord resolutions\n  \
           accord statements\n  \
           accord events\n  \
           accord event-clashes\n  \
           accord intention declare --as \"{GREEN_LEFT}\" --ballot {ASHLEY} --status intends\n  \
           accord clashes watch\n\
         (or run `accord --config {config} clashes` and so on)\n\
         \n\
         Press Ctrl-C to stop.",
        demo.charter.id(),
        ORGS.iter()
            .map(|(n, _, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
        if seeded {
            "published the sample intentions, resolutions, statements and events"
        } else {
            "reusing the existing ledger"
        },
    ));
}
