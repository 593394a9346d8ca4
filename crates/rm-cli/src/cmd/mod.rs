//! The commands, one module each, and what they share.

pub mod ask;
pub mod deals;
pub mod demo;
pub mod fetch;
pub mod fund;
pub mod import;
pub mod init;
pub mod pieces;
pub mod query;
pub mod retrieve;
pub mod serve;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rm_network::libp2p::multiaddr::Protocol;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_types::{Cid, TokenAmount};

use crate::output::Output;
use crate::{Cli, Command};

/// Runs one parsed command line.
pub async fn run(cli: Cli, out: &Output) -> Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Init(a) => init::run(&global, out, a).await,
        Command::Import(a) => import::run(&global, out, a).await,
        Command::Serve(a) => serve::run(&global, out, a).await,
        Command::Ask(a) => ask::run(&global, out, a).await,
        Command::Query(a) => query::run(&global, out, a).await,
        Command::Retrieve(a) => retrieve::run(&global, out, a).await,
        Command::Deals(a) => deals::run(&global, out, a).await,
        Command::Fund(a) => fund::run(&global, out, a).await,
        Command::Demo(a) => demo::run(&global, out, a).await,
        Command::Fetch(a) => fetch::run(&global, out, a).await,
        Command::Pieces(a) => pieces::run(&global, out, a).await,
    }
}

/// A provider given as a multiaddr ending in `/p2p/<peer>` (its address and id) or as a
/// bare peer id (its address is then looked up).
pub fn parse_target(text: &str) -> Result<(PeerId, Option<Multiaddr>)> {
    if text.starts_with('/') {
        let mut addr: Multiaddr = text
            .parse()
            .with_context(|| format!("{text:?} is not a multiaddr"))?;
        match addr.pop() {
            Some(Protocol::P2p(peer)) => Ok((peer, Some(addr))),
            _ => bail!("{text:?} does not end in /p2p/<peer id>"),
        }
    } else {
        let peer = text
            .parse()
            .with_context(|| format!("{text:?} is neither a multiaddr nor a peer id"))?;
        Ok((peer, None))
    }
}

/// A CID from the command line.
pub fn parse_cid(text: &str) -> Result<Cid> {
    text.trim()
        .parse()
        .with_context(|| format!("{text:?} is not a CID"))
}

/// An amount: an integer (attoFIL), `"<n> attoFIL"` or `"<decimal> FIL"`.
pub fn parse_amount(text: &str) -> Result<TokenAmount> {
    let amount: TokenAmount = text.parse().with_context(|| {
        format!("{text:?} is not an amount (e.g. 1000, '1000 attoFIL', '0.5 FIL')")
    })?;
    if amount.is_negative() {
        bail!("{text:?}: amounts may not be negative");
    }
    Ok(amount)
}

/// `addr/p2p/peer`, the form `rm query` and `rm retrieve` take.
pub fn full_addr(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    addr.clone().with(Protocol::P2p(peer))
}

/// An IPLD value from DAG-JSON text (selectors): maps, lists, strings, integers, floats,
/// booleans, null, and `{"/": "<cid>"}` links.
pub fn ipld_from_json(text: &str) -> Result<rm_types::Ipld> {
    use rm_types::Ipld;
    fn convert(v: serde_json::Value) -> Result<Ipld> {
        Ok(match v {
            serde_json::Value::Null => Ipld::Null,
            serde_json::Value::Bool(b) => Ipld::Bool(b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Ipld::Integer(i.into()),
                (_, Some(u), _) => Ipld::Integer(u.into()),
                (_, _, Some(f)) => Ipld::Float(f),
                _ => bail!("unsupported number {n}"),
            },
            serde_json::Value::String(s) => Ipld::String(s),
            serde_json::Value::Array(a) => {
                Ipld::List(a.into_iter().map(convert).collect::<Result<_>>()?)
            }
            serde_json::Value::Object(m) => {
                if m.len() == 1
                    && let Some(serde_json::Value::String(link)) = m.get("/")
                {
                    return Ok(Ipld::Link(parse_cid(link)?));
                }
                Ipld::Map(
                    m.into_iter()
                        .map(|(k, v)| Ok((k, convert(v)?)))
                        .collect::<Result<_>>()?,
                )
            }
        })
    }
    let value: serde_json::Value =
        serde_json::from_str(text).context("the selector is not valid JSON")?;
    convert(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let peer = rm_network::keys::generate().public().to_peer_id();
        let (p, a) = parse_target(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")).unwrap();
        assert_eq!(p, peer);
        assert_eq!(a.unwrap().to_string(), "/ip4/127.0.0.1/tcp/4001");
        let (p, a) = parse_target(&peer.to_string()).unwrap();
        assert_eq!((p, a), (peer, None));
        assert!(parse_target("/ip4/127.0.0.1/tcp/4001").is_err());
        assert!(parse_target("nonsense").is_err());
    }

    #[test]
    fn amounts_and_selectors() {
        assert_eq!(
            parse_amount("1000").unwrap(),
            TokenAmount::from_atto(1000u64)
        );
        assert_eq!(
            parse_amount("0.5 FIL").unwrap(),
            TokenAmount::from_atto(500_000_000_000_000_000u64)
        );
        assert!(parse_amount("-1").is_err());
        let s = ipld_from_json(r#"{"a":{">":{"f":{"f>":{"Links":{"i":{"i":0,">":{".":{}}}}}}}}}"#)
            .unwrap();
        assert!(matches!(s, rm_types::Ipld::Map(_)));
        assert!(ipld_from_json("{").is_err());
    }
}
