//! Compiles `proto/corral/v1/*.proto` into Rust with protox (a protobuf compiler in Rust) and
//! tonic-prost-build, so building needs no `protoc` binary.

use std::path::Path;

const INCLUDE_DIR: &str = "proto";
/// The encoded `FileDescriptorSet` of the protos, in `OUT_DIR`.
const DESCRIPTOR_SET: &str = "corral_v1_descriptor_set.bin";
const PROTOS: &[&str] = &[
    "proto/corral/v1/common.proto",
    "proto/corral/v1/scheduler.proto",
    "proto/corral/v1/agent.proto",
    "proto/corral/v1/operator.proto",
    "proto/corral/v1/peer.proto",
    "proto/corral/v1/jobs.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    // A new .proto file in the directory must be added to PROTOS; rerunning on the directory
    // makes a forgotten one fail the next build rather than go unnoticed.
    println!("cargo:rerun-if-changed={INCLUDE_DIR}/corral/v1");
    check_all_listed()?;

    // protox errors carry the file, line and column; miette renders them readably.
    let fds = protox::compile(PROTOS, [INCLUDE_DIR])?;
    // The descriptors themselves, for the gRPC reflection service.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join(DESCRIPTOR_SET),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        // Maps are BTreeMaps: deterministic encoding and iteration order (stable JSON,
        // comparable test output).
        .btree_map(".")
        // `bytes` fields are `bytes::Bytes`: module chunks, file reads and inputs are decoded
        // without a copy and can be passed on cheaply.
        .bytes(".")
        // A task status is far larger than any other event: boxed, an `Event` stays small
        // (heartbeats and offers do not pay for it).
        .boxed(".corral.v1.Event.kind.update")
        // A secret env value never reaches debug output (`task::EnvVar` redacts it).
        .skip_debug([".corral.v1.EnvVar"])
        // No generated `XClient::connect(uri)`: clients are built from a channel by
        // `corral_proto::limits`, which applies message limits. (It would also clash with the
        // client method of `AgentLink.Connect`.)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}

/// Fails when a `.proto` file in the package directory is missing from [`PROTOS`].
fn check_all_listed() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(INCLUDE_DIR).join("corral/v1");
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            let listed = PROTOS.iter().any(|p| Path::new(p) == path);
            if !listed {
                return Err(format!("{} is not listed in build.rs PROTOS", path.display()).into());
            }
        }
    }
    Ok(())
}
