//! The `accord` command: keys, charters, tokens, running a node, publishing and
//! querying through a node's `accord.v1.Ledger` API, and a self-contained demo.

mod cli;
mod client;
mod commands;
mod demo;
mod files;
mod render;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}");
            // One line: the causes joined, never a backtrace.
            eprintln!("error: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
