//! Where a provider's gateway is, and one HTTP/1.1 connection to it.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::fetch::FetchError;
use crate::walk::Spec;

/// A provider's gateway: `http://host:port` (and a base path, if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    host: String,
    port: u16,
    base: String,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.base)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.base)
        }
    }
}

impl Provider {
    /// Parses `http://HOST[:PORT][/BASE]` or a multiaddr ending in `/tcp/PORT/http`
    /// (`/ip4/…`, `/ip6/…`, `/dns/…`, `/dns4/…`, `/dns6/…`). `https` is refused: this
    /// client speaks plain HTTP/1.1 (use it on a LAN or behind a local TLS proxy).
    pub fn parse(text: &str) -> Result<Provider, FetchError> {
        let bad = |why: &str| FetchError::BadProvider(format!("{text:?}: {why}"));
        if text.starts_with('/') {
            let parts: Vec<&str> = text.trim_end_matches('/').split('/').skip(1).collect();
            match parts.as_slice() {
                [kind, host, "tcp", port, "http"]
                    if ["ip4", "ip6", "dns", "dns4", "dns6"].contains(kind) =>
                {
                    let port = port.parse().map_err(|_| bad("bad port"))?;
                    return Ok(Provider {
                        host: (*host).to_owned(),
                        port,
                        base: String::new(),
                    });
                }
                [.., "https"] | [.., "tls", "http"] => {
                    return Err(bad("https is not supported; use an http:// address"));
                }
                _ => return Err(bad("not an HTTP multiaddr (…/tcp/PORT/http)")),
            }
        }
        if text.starts_with("https://") {
            return Err(bad("https is not supported; use an http:// address"));
        }
        let uri: http::Uri = text.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs"));
        }
        let host = uri
            .host()
            .ok_or_else(|| bad("no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        Ok(Provider {
            host,
            port: uri.port_u16().unwrap_or(80),
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The path and query of a CAR request for `spec`.
    pub fn car_path(&self, spec: &Spec) -> String {
        let mut path = format!("{}/ipfs/{}", self.base, spec.root);
        for s in &spec.path {
            path.push('/');
            path.push_str(&percent_encoding::utf8_percent_encode(s, SEGMENT).to_string());
        }
        path.push_str("?format=car&car-dups=y&car-order=dfs&dag-scope=");
        path.push_str(spec.scope.as_str());
        if let Some(b) = &spec.bytes {
            path.push_str(&format!("&entity-bytes={b}"));
        }
        path
    }

    /// Opens a connection.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Connection, FetchError> {
        let addr = format!("{}:{}", self.host, self.port);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| FetchError::Timeout("connecting"))?
            .map_err(|e| FetchError::Connect(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(4 << 20)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Connect(e.to_string()))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            sender,
            task,
            host: self.host.clone(),
        })
    }
}

/// Characters escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One kept-alive connection.
pub(crate) struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    task: tokio::task::JoinHandle<()>,
    host: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Connection {
    /// Sends `GET path` asking for a CAR.
    pub(crate) async fn get_car(
        &mut self,
        path: &str,
        timeout: Duration,
    ) -> Result<Response<Incoming>, FetchError> {
        let req = Request::get(path)
            .header(header::HOST, self.host.as_str())
            .header(
                header::ACCEPT,
                "application/vnd.ipld.car; version=1; order=dfs; dups=y",
            )
            .body(Empty::new())
            .map_err(|e| FetchError::Connect(e.to_string()))?;
        tokio::time::timeout(timeout, self.sender.send_request(req))
            .await
            .map_err(|_| FetchError::Timeout("waiting for the response headers"))?
            .map_err(|e| FetchError::Connect(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_from_urls_and_multiaddrs() {
        let p = Provider::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(p.to_string(), "http://127.0.0.1:8080");
        let p = Provider::parse("/ip4/127.0.0.1/tcp/8080/http").unwrap();
        assert_eq!(p.to_string(), "http://127.0.0.1:8080");
        let p = Provider::parse("/ip6/::1/tcp/81/http").unwrap();
        assert_eq!(p.to_string(), "http://[::1]:81");
        let p = Provider::parse("http://example.org/gw/").unwrap();
        assert_eq!(p.to_string(), "http://example.org:80/gw");
        for bad in [
            "https://x.org",
            "/ip4/1.2.3.4/tcp/443/tls/http",
            "/ip4/1.2.3.4/tcp/4001",
            "ftp://x",
            "nonsense",
        ] {
            assert!(Provider::parse(bad).is_err(), "{bad}");
        }
        let spec = Spec {
            root: "bafkqaaa".parse().unwrap(),
            path: vec!["a b".into(), "c".into()],
            scope: crate::Scope::Entity,
            bytes: crate::EntityBytes::parse("-5:*"),
        };
        assert_eq!(
            Provider::parse("http://h:1").unwrap().car_path(&spec),
            "/ipfs/bafkqaaa/a%20b/c?format=car&car-dups=y&car-order=dfs&dag-scope=entity&entity-bytes=-5:*"
        );
    }
}
