//! The HTTP scenarios: `POST /<function>` with the job's data as the body,
//! as gearmand's HTTP plugin and polygeard's `-r http` take it.
//!
//! Without `--keepalive` every request is HTTP/1.0 on a new TCP connection,
//! read until the server closes it (gearmand's plugin always closes, so
//! this treats both servers alike). With `--keepalive` each client keeps one
//! HTTP/1.1 connection (polygeard only: gearmand closes after every reply).

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::BoxError;

/// What one client sends, built once.
#[derive(Debug, Clone)]
pub struct Request {
    bytes: Vec<u8>,
    keepalive: bool,
}

impl Request {
    /// A POST of `size` bytes to `/<func>`; `background` adds
    /// `X-Gearman-Background: true`.
    pub fn new(addr: &str, func: &str, size: usize, background: bool, keepalive: bool) -> Request {
        let version = if keepalive { "1.1" } else { "1.0" };
        let mut head = format!(
            "POST /{func} HTTP/{version}\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {size}\r\n"
        );
        if background {
            head.push_str("X-Gearman-Background: true\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.resize(bytes.len() + size, b'x');
        Request { bytes, keepalive }
    }
}

/// One client: `n` requests one after the other, each answered 200.
pub async fn client(addr: String, req: Request, n: u64) -> Result<(), BoxError> {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut body = Vec::new();
    for _ in 0..n {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let s = TcpStream::connect(&addr).await?;
                s.set_nodelay(true)?;
                conn.insert(BufReader::new(s))
            }
        };
        c.get_mut().write_all(&req.bytes).await?;
        let reply = read_response(c, &mut body).await?;
        if reply.status != 200 {
            return Err(
                format!("HTTP {}: {}", reply.status, String::from_utf8_lossy(&body)).into(),
            );
        }
        if !(req.keepalive && reply.keep_open) {
            // HTTP/1.0: the server closes; wait for it, as a 1.0 client does.
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).await?;
            conn = None;
        }
    }
    Ok(())
}

struct Reply {
    status: u16,
    /// The connection may carry the next request.
    keep_open: bool,
}

/// Reads one response (status line, headers, body by Content-Length,
/// chunked encoding, or until the close) into `body`.
async fn read_response(
    c: &mut BufReader<TcpStream>,
    body: &mut Vec<u8>,
) -> Result<Reply, BoxError> {
    let mut line = String::new();
    if c.read_line(&mut line).await? == 0 {
        return Err("server closed the connection before replying".into());
    }
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut keep_open = version == "HTTP/1.1";
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if c.read_line(&mut line).await? == 0 {
            return Err("server closed the connection in the headers".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse::<usize>()?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep_open = value.eq_ignore_ascii_case("keep-alive"),
            _ => {}
        }
    }
    body.clear();
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if c.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            c.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        c.read_exact(body).await?;
    } else {
        c.read_to_end(body).await?;
        keep_open = false;
    }
    Ok(Reply { status, keep_open })
}
