//! Compiles `proto/accord/v1` with protox (pure Rust, no system protoc). The gRPC
//! stubs are generated only with the `grpc` feature, so the core can use the entry
//! messages without depending on tonic.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: `env!` would bake in the folder the build script was compiled
    // in, and a target directory shared with another checkout (a worktree) would
    // then compile that checkout's protos.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "accord/v1/entry.proto",
        "accord/v1/ledger.proto",
        "accord/v1/federation.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("accord_descriptor.bin"), fds.encode_to_vec())?;

    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .compile_fds(fds)?;
    Ok(())
}
