//! `Operator.Subscribe` as the master serves it: from the events the runtime encoded once
//! (`event_batch`), each batch written to the connection as it is, in one frame. The service
//! tonic generates would take the events one at a time and encode each again for each
//! subscriber: at thousands of events a second, a cost the whole cluster feels. Every other
//! method of the Operator service goes to the generated service.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use corral_proto::v1;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use prost::Message;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tower_service::Service;

use super::{OperatorEvents, OperatorService};
use crate::event_batch::next_message;

const PATH: &str = "/corral.v1.Operator/Subscribe";

/// Most bytes of a `Subscribe` request; its message holds one number.
const MAX_REQUEST_BYTES: usize = 4096;

/// The Operator service with `Subscribe` served from the encoded events.
#[derive(Debug, Clone)]
pub(crate) struct SubscribeRoute<S> {
    generated: S,
    operator: OperatorService,
}

impl<S> SubscribeRoute<S> {
    /// Serves `Subscribe` with `operator`, and every other method with `generated`.
    pub(crate) fn new(generated: S, operator: OperatorService) -> Self {
        Self {
            generated,
            operator,
        }
    }
}

impl<S: NamedService> NamedService for SubscribeRoute<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for SubscribeRoute<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.generated.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != PATH {
            return Box::pin(self.generated.call(request));
        }
        let operator = self.operator.clone();
        Box::pin(async move {
            Ok(match open(&operator, request).await {
                Ok(events) => respond(events),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the request and subscribes.
async fn open(
    operator: &OperatorService,
    request: Request<Body>,
) -> Result<OperatorEvents, Status> {
    let (parts, body) = request.into_parts();
    if let Some(encoding) = parts.headers.get("grpc-encoding")
        && encoding != "identity"
    {
        return Err(Status::unimplemented(format!(
            "requests compressed with {encoding:?} are not accepted"
        )));
    }
    let mut bytes = read(body).await?;
    let message = next_message(&mut bytes)
        .unwrap_or_else(|| Err(Status::internal("Missing request message.")))?;
    if !bytes.is_empty() {
        return Err(Status::invalid_argument(
            "Subscribe takes one request message",
        ));
    }
    let message = v1::SubscribeEventsRequest::decode(message)
        .map_err(|e| Status::internal(format!("the request does not decode: {e}")))?;
    operator
        .events(tonic::Request::from_http(Request::from_parts(
            parts, message,
        )))
        .await
}

/// The whole body of a request, up to [`MAX_REQUEST_BYTES`].
async fn read(mut body: Body) -> Result<Bytes, Status> {
    let mut read = BytesMut::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await
    {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if read.len() + data.len() > MAX_REQUEST_BYTES {
            return Err(Status::out_of_range(format!(
                "the request is larger than {MAX_REQUEST_BYTES} bytes"
            )));
        }
        read.extend_from_slice(&data);
    }
    Ok(read.freeze())
}

fn respond(events: OperatorEvents) -> Response<Body> {
    let mut response = Response::new(Body::new(EventsBody {
        events: Some(events),
    }));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The response's body: the events' messages as they are, then the trailers with the status
/// that ended the stream.
struct EventsBody {
    /// `None` once the trailers are sent.
    events: Option<OperatorEvents>,
}

impl http_body::Body for EventsBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        let end = match ready!(Pin::new(events).poll_next(cx)) {
            Some(Ok(messages)) => return Poll::Ready(Some(Ok(Frame::data(messages)))),
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.events = None;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&end)))))
    }

    fn is_end_stream(&self) -> bool {
        self.events.is_none()
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        // Only a message, metadata or details can fail to fit: a code alone always does.
        trailers.insert("grpc-status", HeaderValue::from(Code::Internal as i32));
    }
    trailers
}
