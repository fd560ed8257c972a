//! A plain HTTP/1.1 server on 127.0.0.1 for the fakes: from the request head alone
//! (`fake_kube`, `fake_pod_identity`), or from the whole request, answering when it will
//! (`fake_lambda`); on its own thread and runtime as `CountingProxy` is, so that it answers
//! whatever the test does with its own runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// What a fake answers to a request, from its method, path and headers.
pub type Answer = Response<Full<Bytes>>;

pub struct LocalServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LocalServer {
    /// Listens at once (the port is connectable when this returns); `what` names the fake in
    /// panics.
    pub fn start<F>(what: &'static str, answer: F) -> LocalServer
    where
        F: Fn(&Parts) -> Answer + Send + Sync + 'static,
    {
        LocalServer::serve(what, move |request: Request<Incoming>| {
            let (parts, _body) = request.into_parts();
            std::future::ready(answer(&parts))
        })
    }

    /// Like [`LocalServer::start`], for a fake that reads the body or waits before answering
    /// (the Lambda Extensions API's long poll).
    pub fn serve<F, Fut>(what: &'static str, answer: F) -> LocalServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Answer> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("{what}: bind: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{what}: nonblocking: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{what}: address: {e}"));
        let answer = Arc::new(answer);
        let (shutdown, mut stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(what.replace(' ', "-"))
            .spawn(move || {
                // One worker: answers are computed at once, and the machine is small.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{what}: runtime: {e}"));
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .unwrap_or_else(|e| panic!("{what}: listener: {e}"));
                    loop {
                        tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else {
                                    // Out of file descriptors, typically: back off, do not spin.
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                };
                                let answer = Arc::clone(&answer);
                                tokio::spawn(async move {
                                    let service = service_fn(move |request: Request<Incoming>| {
                                        let response = answer(request);
                                        async move { Ok::<_, std::convert::Infallible>(response.await) }
                                    });
                                    // Errors here are clients going away.
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Keep-alive connections end with the fake instead of outliving it.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .unwrap_or_else(|e| panic!("{what}: thread: {e}"));
        LocalServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A JSON answer.
pub fn json_answer(status: StatusCode, body: &serde_json::Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
