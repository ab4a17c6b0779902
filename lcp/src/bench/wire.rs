//! The load generator's own HTTP/1.1 client for single transfers (issue 21).
//!
//! On one machine every microsecond the load generator spends is taken from the issuer it
//! measures. The general client (reqwest, with its connection pool, URL parsing and header
//! maps) cost about 65 us per transfer, a third of the issuer's own figure; this one writes
//! each request whole on its wallet's own keep-alive connection and reads the answer by its
//! `Content-Length`, leaving the signing (which every real wallet does) as its main cost. It
//! speaks plain `http://` only; `lcp bench` uses the general client for `https://` and
//! batches.

use protocol::KeyPair;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest status line plus headers the client reads before it gives up on an answer.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest answer body it accepts (a transfer's receipt is a few hundred bytes).
const BODY_BYTES_MAX: usize = 1024 * 1024;

/// One answer: status, body and the receipt signature header.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    /// The server said `Connection: close`: the next request needs a new connection.
    pub closing: bool,
}

/// One keep-alive connection to the issuer.
pub struct Wire {
    stream: BufReader<TcpStream>,
    host: String,
    audience: String,
}

impl Wire {
    /// Connect to `url` (`http://host:port`) for a server whose entity id is `audience`.
    /// `None` when the URL is not plain HTTP (the caller then uses the general client).
    pub async fn connect(url: &str, audience: &str) -> anyhow::Result<Option<Wire>> {
        let Some(host) = url
            .strip_prefix("http://")
            .map(|h| h.trim_end_matches('/').to_owned())
        else {
            return Ok(None);
        };
        if host.contains('/') {
            return Ok(None);
        }
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Some(Wire {
            stream: BufReader::new(stream),
            host,
            audience: audience.to_owned(),
        }))
    }

    /// Send one signed transfer of `amount` to `to` under `counter` and read the answer.
    pub async fn transfer(
        &mut self,
        key: &KeyPair,
        counter: u64,
        to: &str,
        amount: u64,
    ) -> anyhow::Result<Answer> {
        let body = format!("{{\"recipient\":\"{to}\",\"amount\":{amount}}}");
        let path = "/lcp/v1/transfers";
        let auth = protocol::sign_request(
            key,
            &self.audience,
            "POST",
            path,
            node::now_ms(),
            Some(counter),
            body.as_bytes(),
        );
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in auth.headers() {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(&value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(&body);
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> anyhow::Result<Answer> {
        let mut line = String::new();
        let mut head_bytes = 0usize;
        let mut status = None;
        let mut length = None;
        let mut signature = None;
        let mut closing = false;
        loop {
            line.clear();
            let n = self.stream.read_line(&mut line).await?;
            anyhow::ensure!(n > 0, "the issuer closed the connection");
            head_bytes += n;
            anyhow::ensure!(head_bytes <= HEAD_BYTES_MAX, "answer head too long");
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            if status.is_none() {
                // "HTTP/1.1 200 OK"
                status = text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
                anyhow::ensure!(status.is_some(), "not an HTTP status line: {text}");
                continue;
            }
            let Some((name, value)) = text.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case(protocol::HEADER_SIGNATURE) {
                signature = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("connection") {
                closing = value.eq_ignore_ascii_case("close");
            }
        }
        let length = length.ok_or_else(|| anyhow::anyhow!("answer without content-length"))?;
        anyhow::ensure!(length <= BODY_BYTES_MAX, "answer body too large");
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Answer {
            status: status.unwrap_or(0),
            body,
            signature,
            closing,
        })
    }
}
