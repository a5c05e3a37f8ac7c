//! Small HTTP/1.1 servers on loopback that play a hostile registry, or the internal service
//! it points at: each answers with a function of the request, and counts what reached it
//! (connections, requests) and how many body bytes it produced before the client let go.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub type Body = BoxBody<Bytes, Infallible>;

/// What reached a server.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    /// `METHOD path?query` of each request, with its `Authorization` header if any.
    pub requests: Mutex<Vec<String>>,
    /// Body bytes handed to the connection by [`Hostile::huge`] bodies.
    pub produced: AtomicUsize,
}

pub struct Hostile {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Hostile {
    /// A server on a free loopback port answering every request with `answer`.
    pub async fn start<F>(answer: F) -> Hostile
    where
        F: Fn(&Request<Incoming>, &Arc<Seen>) -> Response<Body> + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let answer = Arc::new(answer);
        let served = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                served.connections.fetch_add(1, Ordering::SeqCst);
                let (seen, answer) = (served.clone(), answer.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let auth = request
                            .headers()
                            .get(hyper::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| format!(" [{v}]"))
                            .unwrap_or_default();
                        seen.requests.lock().unwrap().push(format!(
                            "{} {}{auth}",
                            request.method(),
                            request.uri()
                        ));
                        let response = answer(&request, &seen);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Hostile { addr, seen }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    pub fn produced(&self) -> usize {
        self.seen.produced.load(Ordering::SeqCst)
    }

    /// `total` bytes of `fill`, streamed in 64 KiB chunks as the client reads them, with a
    /// Content-Length or without one (chunked).
    pub fn huge(
        seen: &Arc<Seen>,
        status: StatusCode,
        total: usize,
        fill: u8,
        content_length: bool,
    ) -> Response<Body> {
        const CHUNK: usize = 64 * 1024;
        let seen = seen.clone();
        let chunks = futures_util::stream::iter(0..total.div_ceil(CHUNK)).map(move |i| {
            let n = CHUNK.min(total - i * CHUNK);
            seen.produced.fetch_add(n, Ordering::SeqCst);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![fill; n])))
        });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
        *response.status_mut() = status;
        if content_length {
            response.headers_mut().insert(
                hyper::header::CONTENT_LENGTH,
                HeaderValue::from(total as u64),
            );
        }
        response
    }
}

/// A response with this status, headers and body.
pub fn respond(
    status: StatusCode,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}
