//! Compiles the trimmed etcd v3 API in `proto/etcd/` (KV, Lease, Election and Auth clients)
//! with protox, so building needs no `protoc` binary (as for `corral-proto`).

const INCLUDE_DIR: &str = "proto/etcd";
const PROTOS: &[&str] = &[
    "proto/etcd/kv.proto",
    "proto/etcd/rpc.proto",
    "proto/etcd/election.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, [INCLUDE_DIR])?;
    tonic_prost_build::configure()
        .build_server(false)
        // Channels are built by the store (several endpoints, timeouts).
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
