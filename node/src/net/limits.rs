//! How much of this node a stranger (a peer that is not a current family device) can hold.
//!
//! libp2p's `connection-limits` bounds connections per peer, pending handshakes and the total;
//! [`StrangerLimits`] bounds the connections strangers hold per IP address and in total, so a
//! stranger cannot crowd out family devices by using many keys. Family devices do not count
//! against the stranger limits: they are recognised (by the Noise-authenticated peer id, in
//! [`super::members::Members`]) when their connection is established.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{PeerId, connection_limits};

use super::device_of;
use super::members::MembersRx;

/// Connections one peer may hold at once (TCP and QUIC, and both directions while two devices
/// dial each other at once, fit).
pub const PER_PEER: u32 = 4;
/// Connections being set up (before Noise says who dials) at once.
pub const PENDING_INCOMING: u32 = 32;
/// All established connections; a family has far fewer devices.
pub const TOTAL: u32 = 256;
/// Connections strangers may hold at once from one IP address, and all together.
pub const STRANGERS_PER_IP: usize = 8;
pub const STRANGERS: usize = 32;

pub(crate) fn connection_limits() -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(PER_PEER))
            .with_max_pending_incoming(Some(PENDING_INCOMING))
            .with_max_established(Some(TOTAL)),
    )
}

/// See the module documentation.
pub(crate) struct StrangerLimits {
    members: MembersRx,
    /// Inbound connections of strangers, by the address they came from.
    strangers: HashMap<ConnectionId, Option<IpAddr>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Exceeded(&'static str);

impl StrangerLimits {
    pub(crate) fn new(members: MembersRx) -> Self {
        StrangerLimits {
            members,
            strangers: HashMap::new(),
        }
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for StrangerLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let family = device_of(&peer).is_some_and(|d| self.members.borrow().is_current(&d));
        if family {
            return Ok(dummy::ConnectionHandler);
        }
        let ip = ip_of(remote);
        if self.strangers.len() >= STRANGERS {
            return Err(ConnectionDenied::new(Exceeded(
                "too many connections from peers outside the family",
            )));
        }
        if ip.is_some() && self.strangers.values().filter(|i| **i == ip).count() >= STRANGERS_PER_IP
        {
            return Err(ConnectionDenied::new(Exceeded(
                "too many connections from this address by peers outside the family",
            )));
        }
        self.strangers.insert(connection_id, ip);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event {
            self.strangers.remove(&connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
