//! The standard gRPC health and reflection services: what `grpcurl` sees of a master.

use crate::util::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha;

use crate::util::start;

#[tokio::test]
async fn a_leading_master_is_healthy_and_lists_its_services() {
    let m = start().await;
    let mut health = HealthClient::new(m.channel.clone());
    for service in [
        "",
        "corral.v1.Scheduler",
        "corral.v1.Operator",
        "corral.v1.MasterPeer",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "corral.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let names = reflection_v1(&m.channel, MessageRequest::ListServices(String::new())).await;
    let Some(MessageResponse::ListServicesResponse(list)) = names else {
        panic!("no service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in [
        "corral.v1.Scheduler",
        "corral.v1.AgentLink",
        "corral.v1.Operator",
        "corral.v1.MasterPeer",
        "corral.v1.Jobs",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(names.contains(&service), "{service} not in {names:?}");
    }

    // A client in another language resolves a method's messages through it, and those of
    // the health service it checks with.
    for symbol in [
        "corral.v1.Operator.ListTaskOutputs",
        "grpc.health.v1.Health",
    ] {
        let files = reflection_v1(
            &m.channel,
            MessageRequest::FileContainingSymbol(symbol.into()),
        )
        .await;
        let Some(MessageResponse::FileDescriptorResponse(files)) = files else {
            panic!("no descriptor of {symbol}");
        };
        assert!(!files.file_descriptor_proto.is_empty(), "{symbol}");
    }

    // Older clients (grpcurl before 1.8.8, most languages' reflection libraries) speak
    // v1alpha: the same answers.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(m.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("no service list over v1alpha");
    };
    let alpha_names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(alpha_names, names);
    m.master.shutdown().await;
}

/// Asks the v1 reflection service one question; its answer.
async fn reflection_v1(channel: &Channel, request: MessageRequest) -> Option<MessageResponse> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
}
