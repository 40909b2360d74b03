//! The standard gRPC health (`grpc.health.v1.Health`) and reflection
//! (`grpc.reflection.v1.ServerReflection`) services that masters and agents serve beside
//! Corral's own, so `grpcurl` and clients in other languages can check and discover them.

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The content type of `/metrics` on masters and agents: the OpenMetrics text that
/// `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The encoded `FileDescriptorSet` of every `corral.v1` proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/corral_v1_descriptor_set.bin"));

/// Services of the master that only its leader serves (standbys redirect).
pub const LEADER_SERVICES: &[&str] = &[
    "corral.v1.Scheduler",
    "corral.v1.AgentLink",
    "corral.v1.Operator",
];

/// Services every master serves.
pub const MASTER_SERVICES: &[&str] = &[
    "corral.v1.Scheduler",
    "corral.v1.AgentLink",
    "corral.v1.Operator",
    "corral.v1.MasterPeer",
    "corral.v1.Jobs",
];

/// Services of an agent (its task files API).
pub const AGENT_SERVICES: &[&str] = &["corral.v1.Operator"];

/// A reflection service advertising `services` (and itself).
///
/// # Panics
///
/// Never: the descriptor set is the one this crate was built from.
#[must_use]
pub fn reflection(
    services: &[&str],
) -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    let builder = services.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET),
        |builder, service| builder.with_service_name(*service),
    );
    #[expect(
        clippy::expect_used,
        reason = "the descriptor set is generated with this crate and always decodes"
    )]
    builder
        .build_v1()
        .expect("the built-in descriptor set is valid")
}

/// A health service and its reporter; the server as a whole (`""`) is SERVING.
pub fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    (reporter, server)
}

/// Sets every one of `services` to SERVING or NOT_SERVING.
pub async fn report(reporter: &HealthReporter, services: &[&str], serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in services {
        reporter.set_service_status(*service, status).await;
    }
}
