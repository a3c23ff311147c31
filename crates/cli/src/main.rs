//! The `accord` command: keys, charters, tokens, running a node, publishing and
//! querying through a node's `accord.v1.Ledger` API, and a self-contained demo.

mod cli;
mod client;
mod commands;
mod compose;
mod demo;
mod files;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    // sled panics on some damage to its files: the store turns that into an error,
    // and this keeps the message from being printed as if `accord` had crashed.
    accord_node::quiet_engine_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

/// Caps glibc's malloc at two arenas, before any thread starts. By default glibc
/// gives threads up to eight arenas per core, and a node's threads (async workers,
/// batched signature verification) fragmented them enough to keep a node holding a
/// million entries well above its memory budget (BENCHMARKS.md). The one `unsafe`
/// call in the workspace: a plain libc call with constant arguments.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn run() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, never a backtrace. A cause that repeats the
/// text of the one before (tonic nests identical transport errors) is shown once.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
