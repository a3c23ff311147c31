//! Runs a parsed command line.

pub mod backup;
pub mod feed;
pub mod governance;
mod health;
pub mod join;
pub mod node;
pub mod publish;
mod query;
pub mod setup;
pub mod store;

use anyhow::Result;

use crate::cli::{
    BackupCommand, CharterCommand, ClashesCommand, Cli, Command, EventCommand, FeedCommand,
    IntentionCommand, KeyCommand, StatementCommand, StoreCommand, TlsCommand, TokenCommand,
};

pub async fn run(cli: Cli) -> Result<()> {
    if let Some(config) = cli.config {
        let _ = crate::cli::DEFAULT_CLIENT_CONFIG.set(config);
    }
    match cli.command {
        Command::Keygen { out, force } => setup::keygen(&out, force),
        Command::Key(KeyCommand::Show { file }) => setup::key_show(&file),
        Command::Key(KeyCommand::Rotate { publish }) => governance::rotate_key(&publish).await,
        Command::Charter {
            show: Some(CharterCommand::Show { file, json }),
            ..
        } => setup::charter_show(&file, json),
        Command::Charter { show: None, build } => setup::charter_build(&build),
        Command::Token(TokenCommand::New { out, force }) => setup::token_new(&out, force),
        Command::Tls(TlsCommand::New {
            cert,
            key,
            names,
            force,
        }) => setup::tls_new(&cert, &key, &names, force),
        Command::Tls(TlsCommand::Show { cert }) => setup::tls_show(&cert),
        Command::Node {
            config,
            rebuild,
            log_format,
        } => node::run(&config, rebuild, log_format).await,
        Command::Healthcheck { config, address } => health::check(&config, address).await,
        Command::Store(StoreCommand::Check {
            config,
            json,
            scratch,
        }) => store::check(&config, json, scratch.as_deref()).await,
        Command::Status(list) => query::status(&list).await,
        Command::Intention(IntentionCommand::Declare {
            publish,
            ballot,
            status,
            candidate,
            visibility,
            area,
            note,
        }) => {
            publish::intention(
                &publish,
                publish::IntentionArgs {
                    ballot,
                    status,
                    candidate,
                    visibility,
                    area,
                    note,
                },
            )
            .await
        }
        Command::Intentions {
            list,
            ballot,
            election,
            org,
        } => query::intentions(&list, ballot, election, org).await,
        Command::Clashes {
            watch: Some(ClashesCommand::Watch { filter, list }),
            ..
        } => query::watch_clashes(&list, &filter).await,
        Command::Clashes {
            watch: None,
            filter,
            list,
        } => query::clashes(&list, &filter).await,
        Command::Resolve {
            publish,
            ballot,
            stands,
            stand_aside,
            rationale,
        } => publish::resolve(&publish, ballot, &stands, &stand_aside, rationale).await,
        Command::Resolutions(list) => query::resolutions(&list).await,
        Command::Statement(StatementCommand::Publish {
            publish,
            title,
            text,
            cosigner,
        }) => publish::statement(&publish, title, text, &cosigner).await,
        Command::Statement(StatementCommand::Endorse { publish, id }) => {
            publish::endorse(&publish, &id).await
        }
        Command::Statement(StatementCommand::Withdraw {
            publish,
            id,
            reason,
        }) => publish::withdraw(&publish, &id, reason).await,
        Command::Statements(list) => query::statements(&list).await,
        Command::Event(EventCommand::Publish { publish, event }) => {
            publish::event(&publish, event).await
        }
        Command::Event(EventCommand::Cancel { publish, uid }) => {
            publish::cancel_event(&publish, &uid).await
        }
        Command::Events {
            list,
            from,
            to,
            include_cancelled,
        } => query::events(&list, from, to, include_cancelled).await,
        Command::EventClashes(list) => query::event_clashes(&list).await,
        Command::Feed(FeedCommand::Link { list, label }) => feed::link(&list, &label).await,
        Command::Feed(FeedCommand::Revoke { list, link }) => feed::revoke(&list, &link).await,
        Command::Feed(FeedCommand::List(list)) => feed::list(&list).await,
        Command::Log {
            list,
            author,
            from_seq,
            limit,
        } => query::log(&list, &author, from_seq, limit).await,
        Command::Submit { client, file, json } => publish::submit(&client, &file, json).await,
        Command::Backup {
            verify: Some(BackupCommand::Verify { file, json }),
            ..
        } => backup::verify(&file, json).await,
        Command::Backup {
            verify: None,
            client,
            out,
        } => backup::backup(&client, &out.expect("clap requires --out")).await,
        Command::Restore { file, config } => backup::restore(&file, &config).await,
        Command::Export {
            client,
            format,
            out,
            from_backup,
        } => backup::export(&client, format, out.as_deref(), from_backup.as_deref()).await,
        Command::Demo {
            dir,
            listen,
            compose,
        } => crate::demo::run(&dir, listen, compose).await,
        Command::Roster(list) => governance::roster(&list).await,
        Command::Proposals { list, open } => governance::proposals(&list, open).await,
        Command::Propose(change) => governance::propose(change).await,
        Command::Approve { publish, id } => governance::vote(&publish, &id, None).await,
        Command::Object {
            publish,
            id,
            reason,
        } => governance::vote(&publish, &id, Some(reason)).await,
        Command::Leave { publish, reason } => governance::leave(&publish, reason).await,
        Command::Announce {
            publish,
            address,
            cert_sha256,
        } => join::announce(&publish, address, cert_sha256).await,
        Command::Invite {
            client,
            out,
            force,
            json,
        } => join::invite(&client, &out, force, json).await,
        Command::Join {
            invitation,
            dir,
            name,
            listen,
            advertise,
            json,
        } => join::join(join::JoinArgs {
            invitation,
            dir,
            name,
            listen,
            advertise,
            json,
        }),
    }
}
