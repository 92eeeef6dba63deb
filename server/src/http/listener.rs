//! The HTTP port: its accept loop and one connection's service, hyper's
//! HTTP/1 server (keep-alive, HTTP/1.0 too) over any byte stream.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

use tokio::net::{TcpListener, TcpStream};

use super::{route, ConnInfo};
use crate::tls::Port;
use crate::Shared;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// When the server stops, how long a connection may take to finish the
/// response it is writing (a request still waiting for its job is answered
/// 503 at once).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Accepts HTTP connections until the server stops (or, on a graceful
/// shutdown, stops accepting: open connections are served until the end).
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let graceful = shared.graceful_notify.notified();
        tokio::pin!(graceful);
        graceful.as_mut().enable();
        if shared.graceful.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(open_and_serve(shared.clone(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shared.stop.cancelled() => return,
            _ = graceful => {}
        }
    }
}

/// Serves one accepted connection, over TLS (after its handshake) when
/// the server has TLS on.
async fn open_and_serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let Some(tls) = shared.http_tls.clone() else {
        let info = ConnInfo {
            peer,
            client_cert_verified: false,
        };
        return serve(shared, tcp, info).await;
    };
    let accepted = tokio::select! {
        a = tls.handshake(tcp, Port::Http) => a,
        _ = shared.stop.cancelled() => None,
    };
    if let Some((stream, client_cert_verified)) = accepted {
        let info = ConnInfo {
            peer,
            client_cert_verified,
        };
        serve(shared, stream, info).await
    }
}

/// Counts a connection in the server's live connections while it lives
/// (the server's shutdown waits for them).
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: &Arc<Shared>) -> Live {
        shared.live_conns.fetch_add(1, Ordering::AcqRel);
        Live(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.conn_closed();
    }
}

/// Serves HTTP on one connection until the client closes it, a protocol
/// error ends it (hyper answers a malformed request 400 itself) or the
/// server stops. `io` is any byte stream: a TCP stream, or a TLS stream
/// over one (then `info` says whether the client's certificate was verified).
pub(crate) async fn serve<IO>(shared: Arc<Shared>, io: IO, info: ConnInfo)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _live = Live::new(&shared);
    let stop = shared.stop.clone();
    let server = HeaderValue::from_static(concat!("polygeard/", env!("CARGO_PKG_VERSION")));
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let server = server.clone();
        async move {
            let mut r = route(&shared, req, &info).await;
            r.headers_mut().insert(SERVER, server);
            Ok::<_, Infallible>(r)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            // Finish the response being written (like the Gearman port's
            // queued replies), then close; an idle connection closes now.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(STOP_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = r {
        tracing::debug!("HTTP connection from {}: {e}", info.peer);
    }
}
