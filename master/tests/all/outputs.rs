//! AgentLink.UploadOutput against a real master: outputs are stored once and fetched back
//! byte-identical; a stream that lies about its bytes, a size over the limit or a full
//! output store are refused, and nothing of a refused upload is kept.

use crate::util::Channel;
use bytes::Bytes;
use corral_proto::{limits, v1};
use corral_types::Digest;

use crate::util::{start, start_with};

async fn upload(
    channel: &Channel,
    chunks: Vec<v1::OutputChunk>,
) -> Result<v1::UploadOutputResponse, tonic::Status> {
    limits::agent_link_client(channel.clone())
        .upload_output(tokio_stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

/// `data` announced as `digest` (its own when `None`), in two chunks.
fn chunks(data: &[u8], digest: Option<Digest>) -> Vec<v1::OutputChunk> {
    let digest = digest.unwrap_or_else(|| Digest::of(data));
    let (a, b) = data.split_at(data.len() / 2);
    vec![
        v1::OutputChunk {
            digest: digest.to_string(),
            total_size: data.len() as u64,
            data: Bytes::copy_from_slice(a),
        },
        v1::OutputChunk {
            digest: String::new(),
            total_size: 0,
            data: Bytes::copy_from_slice(b),
        },
    ]
}

async fn fetch(channel: &Channel, digest: &Digest) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = limits::operator_client(channel.clone())
        .fetch_artifact(v1::FetchModuleRequest {
            digest: digest.to_string(),
            offset: 0,
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes)
}

#[tokio::test]
async fn outputs_are_stored_once_and_fetched_back() {
    let m = start().await;
    let data = b"a,b\n1,2\n".to_vec();
    let first = upload(&m.channel, chunks(&data, None)).await.unwrap();
    assert!(!first.already_present);
    assert_eq!(first.digest, Digest::of(&data).to_string());
    let again = upload(&m.channel, chunks(&data, None)).await.unwrap();
    assert!(again.already_present);
    assert_eq!(fetch(&m.channel, &Digest::of(&data)).await.unwrap(), data);
    // An empty file is an output too.
    upload(&m.channel, chunks(b"", None)).await.unwrap();
    assert_eq!(fetch(&m.channel, &Digest::of(b"")).await.unwrap(), b"");
}

#[tokio::test]
async fn lying_oversized_and_unannounced_uploads_are_refused_and_nothing_is_kept() {
    let m = start().await;
    let lie = Digest::of(b"what was announced");
    let err = upload(&m.channel, chunks(b"what was sent", Some(lie)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(
        fetch(&m.channel, &lie).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        fetch(&m.channel, &Digest::of(b"what was sent"))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    let mut big = chunks(b"x", None);
    big[0].total_size = limits::MAX_ARTIFACT_BYTES + 1;
    let err = upload(&m.channel, big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    let mut short = chunks(b"four", None);
    short[0].total_size = 5;
    let err = upload(&m.channel, short).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(
        fetch(&m.channel, &Digest::of(b"four"))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    let err = upload(&m.channel, Vec::new()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let mut bad = chunks(b"x", None);
    bad[0].digest = "sha256:nope".into();
    let err = upload(&m.channel, bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn a_full_output_store_refuses_new_outputs_but_not_ones_it_holds() {
    let m = start_with(|c| c.max_output_bytes = 10).await;
    upload(&m.channel, chunks(b"eight by", None)).await.unwrap();
    let err = upload(&m.channel, chunks(b"three", None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("output store is full"),
        "{}",
        err.message()
    );
    let again = upload(&m.channel, chunks(b"eight by", None)).await.unwrap();
    assert!(again.already_present);
}
