//! Inbound connections per IP address: a peer id costs nothing to make, an address does.
//!
//! rust-libp2p's `connection-limits` counts connections in total and per peer id; this
//! behaviour adds the count per remote IP address (IPv4, or the IPv6 address), so one
//! machine cannot open connections under many fresh peer ids until the host is full.
//! Outbound connections (the ones this host dials) are not counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Why a connection was refused: its address is at the limit.
#[derive(Debug)]
pub(crate) struct IpLimitExceeded {
    /// The remote address.
    pub(crate) ip: IpAddr,
    /// The limit.
    pub(crate) limit: usize,
}

impl fmt::Display for IpLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} inbound connections already",
            self.ip, self.limit
        )
    }
}

impl std::error::Error for IpLimitExceeded {}

/// The IP address of a multiaddr (`/ip4/…` or `/ip6/…` first), if any.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Limits established inbound connections per remote IP address.
#[derive(Debug)]
pub(crate) struct PerIp {
    limit: usize,
    per_ip: HashMap<IpAddr, usize>,
    connections: HashMap<ConnectionId, IpAddr>,
}

impl PerIp {
    pub(crate) fn new(limit: usize) -> Self {
        PerIp {
            limit,
            per_ip: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    fn check(&self, remote: &Multiaddr) -> Result<Option<IpAddr>, ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(None);
        };
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limit {
            return Err(ConnectionDenied::new(IpLimitExceeded {
                ip,
                limit: self.limit,
            }));
        }
        Ok(Some(ip))
    }
}

impl NetworkBehaviour for PerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check(remote).map(|_| ())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Checked again: several may have been pending at once.
        if let Some(ip) = self.check(remote)? {
            *self.per_ip.entry(ip).or_default() += 1;
            self.connections.insert(connection, ip);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event
            && let Some(ip) = self.connections.remove(&connection_id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_of_an_address() {
        let a: Multiaddr =
            "/ip4/10.1.2.3/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap();
        assert_eq!(ip_of(&a), Some("10.1.2.3".parse().unwrap()));
        let b: Multiaddr = "/ip6/::1/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&b), Some("::1".parse().unwrap()));
        let c: Multiaddr = "/dns4/example.com/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&c), None);
    }

    #[test]
    fn an_address_at_its_limit_is_refused() {
        let mut limit = PerIp::new(2);
        let remote: Multiaddr = "/ip4/10.0.0.1/tcp/5".parse().unwrap();
        let other: Multiaddr = "/ip4/10.0.0.2/tcp/5".parse().unwrap();
        let local: Multiaddr = "/ip4/10.0.0.9/tcp/1".parse().unwrap();
        let peer = PeerId::random();
        for i in 0..2 {
            limit
                .handle_established_inbound_connection(
                    ConnectionId::new_unchecked(i),
                    peer,
                    &local,
                    &remote,
                )
                .unwrap();
        }
        assert!(
            limit
                .handle_pending_inbound_connection(ConnectionId::new_unchecked(9), &local, &remote)
                .is_err()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(ConnectionId::new_unchecked(9), &local, &other)
                .is_ok()
        );
        assert_eq!(limit.per_ip.len(), 1);
    }
}
