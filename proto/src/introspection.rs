//! The standard gRPC health (`grpc.health.v1.Health`) and reflection
//! (`grpc.reflection.v1.ServerReflection`, and its `v1alpha`) services that masters and agents
//! serve beside Corral's own, so `grpcurl` and clients in other languages can check and
//! discover them.

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

/// The reflection names of the standard services every Corral server also serves: `grpcurl
/// list` shows them beside Corral's, as it does on any gRPC server with health and reflection.
const STANDARD_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// `routes` with the reflection service added in both versions clients speak: `v1`, and the
/// `v1alpha` that older `grpcurl`, Postman and most languages' reflection clients still ask
/// for. Both advertise `services`, health and reflection, and describe all of them.
///
/// # Panics
///
/// Never: the descriptor sets are the ones this crate and tonic's were built from.
#[must_use]
pub fn with_reflection(
    routes: tonic::service::Routes,
    services: &[&str],
) -> tonic::service::Routes {
    let builder = || {
        services.iter().chain(STANDARD_SERVICES).fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, service| builder.with_service_name(*service),
        )
    };
    #[expect(
        clippy::expect_used,
        reason = "the descriptor sets are generated with these crates and always decode"
    )]
    routes
        .add_service(
            builder()
                .build_v1()
                .expect("the built-in descriptor set is valid"),
        )
        .add_service(
            builder()
                .build_v1alpha()
                .expect("the built-in descriptor set is valid"),
        )
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
