//! Generated code for the `accord.v1` protobuf package. Nothing here is written by
//! hand: the schema lives in `proto/accord/v1/`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// The `accord.v1` package: entry messages, and with the `grpc` feature the `Ledger`
/// service client and server.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/accord.v1.rs"));
}

/// Encoded `FileDescriptorSet` of the schema, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/accord_descriptor.bin"));
