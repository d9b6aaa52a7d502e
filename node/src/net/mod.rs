//! The node on the network: a libp2p swarm (TCP + Noise + Yamux, and QUIC; identify, ping,
//! mDNS, raw streams) whose peer id is the device's ed25519 key, and kith's protocols on it.
//!
//! # Layout
//! - this file: the swarm task, peers and their addresses, reconnecting.
//! - [`sync`]: `/kith/sync/1`, documents and the membership log.
//! - [`transfer`]: `/kith/blobs/1`, iroh-blobs' verified transfer over libp2p streams.
//! - [`invite`]: `/kith/invite/2`, admitting a device with a ticket, and `kith join`.
//! - [`members`]: the family's devices as a snapshot that outsiders are judged against.
//! - [`limits`]: how many connections peers, addresses and strangers may hold.
//!
//! **Architecture invariant:** a peer that is not a current device of the family gets no kith
//! protocol but `invite`, and that only with a valid ticket. Every handler checks the peer id
//! Noise authenticated against the membership log before it reads a byte.
//!
//! **Architecture invariant:** nothing a stranger does takes the library's lock: connections,
//! invite requests up to a valid proof, and refusals are answered from the [`members`]
//! snapshot and the store's records; strangers' connections and invite streams are bounded in
//! number ([`limits`], [`invite`]) and their frames in size.

pub mod frame;
mod have;
pub mod invite;
pub mod limits;
pub mod members;
#[cfg(test)]
mod outsiders;
pub mod report;
pub mod sync;
pub mod transfer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kith_protocol::keys::DeviceId;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, mdns, multiaddr::Protocol, ping};
use tokio::sync::{Notify, mpsc, watch};

use members::{Members, MembersRx};

use crate::error::{Error, Result};
use crate::library::{Library, now_ms};
use crate::store::{PeerRecord, WriteBatch};

pub const SYNC: StreamProtocol = StreamProtocol::new(kith_protocol::wire::SYNC_PROTOCOL);
pub const INVITE: StreamProtocol = StreamProtocol::new(kith_protocol::wire::INVITE_PROTOCOL);
pub const BLOBS: StreamProtocol = StreamProtocol::new(kith_protocol::wire::BLOBS_PROTOCOL);
pub const HAVE: StreamProtocol = StreamProtocol::new(kith_protocol::wire::HAVE_PROTOCOL);

/// How long a connection with nothing open stays up. Sync streams stay open, so family
/// connections live as long as both nodes do.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often known but unconnected family devices are dialled again.
const REDIAL_EVERY: Duration = Duration::from_secs(5);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: libp2p::swarm::behaviour::toggle::Toggle<mdns::tokio::Behaviour>,
    stream: libp2p_stream::Behaviour,
    limits: libp2p::connection_limits::Behaviour,
    strangers: limits::StrangerLimits,
}

/// The libp2p identity of a device: the same ed25519 key.
pub fn keypair(device: &kith_protocol::keys::DeviceSecret) -> Result<libp2p::identity::Keypair> {
    libp2p::identity::Keypair::ed25519_from_bytes(device.ed25519_seed())
        .map_err(|e| Error::Corrupt(format!("the device key is not a valid ed25519 key: {e}")))
}

pub fn peer_id(device: &DeviceId) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(device.as_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The device id behind a peer id, when the peer id holds an ed25519 key (ours always do).
pub fn device_of(peer: &PeerId) -> Option<DeviceId> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(DeviceId(ed.to_bytes()))
}

pub(crate) fn build_swarm(
    keypair: libp2p::identity::Keypair,
    with_mdns: bool,
    members: MembersRx,
) -> Result<libp2p::Swarm<Behaviour>> {
    let net_err = |e: &dyn std::fmt::Display| Error::Net(format!("cannot set up networking: {e}"));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| net_err(&e))?
        .with_quic()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mdns = if with_mdns {
                match mdns::tokio::Behaviour::new(mdns::Config::default(), peer) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!("mDNS is off (cannot start it: {e}); peers are found by their known addresses");
                        None
                    }
                }
            } else {
                None
            };
            Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    "/kith/id/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                mdns: mdns.into(),
                stream: libp2p_stream::Behaviour::new(),
                limits: limits::connection_limits(),
                strangers: limits::StrangerLimits::new(members),
            }
        })
        .map_err(|e| net_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

/// Where the node listens: as given on the command line, or all interfaces on ports picked
/// once and then kept.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    /// mDNS discovery on the LAN (on for `kith run`).
    pub mdns: bool,
}

pub fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// What the node knows of another device right now.
#[derive(Debug, Clone, Default)]
pub struct PeerStatus {
    pub connected: bool,
    pub last_seen_ms: u64,
    pub addrs: Vec<String>,
    /// The initial reconciliation with this peer has finished at least once since connecting.
    pub caught_up: bool,
    pub changes_received: u64,
    pub changes_rejected: u64,
    pub blobs_fetched: u64,
    pub bytes_fetched: u64,
}

enum Command {
    Dial(PeerId, Vec<Multiaddr>),
}

/// The running network side of a node.
pub struct Network {
    pub(crate) lib: Arc<Library>,
    pub(crate) control: libp2p_stream::Control,
    commands: mpsc::UnboundedSender<Command>,
    pub(crate) peers: Mutex<BTreeMap<DeviceId, PeerStatus>>,
    listen_addrs: Mutex<Vec<Multiaddr>>,
    pub(crate) blobs_wanted: Notify,
    /// Counts family devices connecting and disconnecting, so a running transfer notices.
    pub(crate) connection_changes: AtomicU64,
    pub(crate) transfer: transfer::Progress,
    pub(crate) invite_failures: Mutex<HashMap<PeerId, (u32, u64)>>,
    /// Invite streams being answered: per peer, and all together.
    pub(crate) invite_streams: Mutex<HashMap<PeerId, usize>>,
    /// Failed proofs per invite since this node started (the store keeps the count too, but
    /// concurrent failures could each read the same stored count).
    pub(crate) invite_proof_failures: Mutex<HashMap<kith_protocol::ticket::InviteId, u32>>,
    members: MembersRx,
    members_tx: watch::Sender<Arc<Members>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").finish_non_exhaustive()
    }
}

impl Network {
    /// Starts the swarm and the protocol handlers; returns once listening has begun.
    pub async fn start(lib: Arc<Library>, config: NetConfig) -> Result<Arc<Network>> {
        // Keys wrapped to this device while it was away (or at its join) are taken in first.
        lib.settle_keys_now().await?;
        let (members_tx, members_rx) = watch::channel(Arc::new(Members::default()));
        members::refresh(&lib, &members_tx).await;
        let mut swarm = build_swarm(keypair(&lib.device)?, config.mdns, members_rx.clone())?;
        let mut control = swarm.behaviour().stream.new_control();
        let records = lib.store.load_network()?;
        let kept: HashMap<String, String> = records.listen_ports.iter().cloned().collect();
        let asked = if config.listen.is_empty() {
            default_listen()
        } else {
            config.listen.clone()
        };
        let mut listeners = HashMap::new();
        for spec in &asked {
            let reuse = kept
                .get(&spec.to_string())
                .and_then(|a| a.parse::<Multiaddr>().ok());
            let id = match reuse.clone().map(|a| swarm.listen_on(a)) {
                Some(Ok(id)) => id,
                _ => swarm.listen_on(spec.clone()).map_err(|e| {
                    Error::Net(format!(
                        "cannot listen on {spec}: {e}; choose another --listen address"
                    ))
                })?,
            };
            listeners.insert(id, spec.clone());
        }
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let peers = records
            .peers
            .iter()
            .map(|(d, r)| {
                (
                    *d,
                    PeerStatus {
                        last_seen_ms: r.last_seen_ms,
                        addrs: r.addrs.clone(),
                        ..PeerStatus::default()
                    },
                )
            })
            .collect();
        let sync_in = control
            .accept(SYNC)
            .map_err(|e| Error::Net(e.to_string()))?;
        let blobs_in = control
            .accept(BLOBS)
            .map_err(|e| Error::Net(e.to_string()))?;
        let invite_in = control
            .accept(INVITE)
            .map_err(|e| Error::Net(e.to_string()))?;
        let have_in = control
            .accept(HAVE)
            .map_err(|e| Error::Net(e.to_string()))?;
        let net = Arc::new(Network {
            lib,
            control,
            commands,
            peers: Mutex::new(peers),
            listen_addrs: Mutex::new(Vec::new()),
            blobs_wanted: Notify::new(),
            connection_changes: AtomicU64::new(0),
            transfer: transfer::Progress::default(),
            invite_failures: Mutex::new(HashMap::new()),
            invite_streams: Mutex::new(HashMap::new()),
            invite_proof_failures: Mutex::new(HashMap::new()),
            members: members_rx.clone(),
            members_tx: members_tx.clone(),
        });
        tokio::spawn(members::keep_fresh(net.lib.clone(), members_tx));
        tokio::spawn(sync::accept_loop(net.clone(), sync_in));
        tokio::spawn(transfer::accept_loop(net.clone(), blobs_in));
        tokio::spawn(invite::accept_loop(net.clone(), invite_in));
        tokio::spawn(transfer::fetch_loop(net.clone()));
        tokio::spawn(have::accept_loop(net.clone(), have_in));

        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let task_net = net.clone();
        let mut ports: Vec<(String, String)> = records.listen_ports.clone();
        tokio::spawn(async move {
            let net = task_net;
            let mut redial = tokio::time::interval(REDIAL_EVERY);
            let mut members_rx = members_rx;
            // The first connection of each peer: where it came from and who dialled.
            let mut endpoints: HashMap<PeerId, (Multiaddr, bool)> = HashMap::new();
            loop {
                tokio::select! {
                    // A device removed from the family, here or on another device, is cut off
                    // as soon as the op is committed; a peer that became a device of the family
                    // while connected (a joiner, a device another admitted) is synced with.
                    Ok(()) = members_rx.changed() => {
                        let members = members_rx.borrow_and_update().clone();
                        let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
                        for peer in peers {
                            let Some(device) = device_of(&peer) else { continue };
                            if members.was_removed(&device) {
                                tracing::info!(peer = %device, "disconnecting a device removed from the family");
                                let _ = swarm.disconnect_peer_id(peer);
                            } else if members.is_current(&device)
                                && !net.peer_status().get(&device).is_some_and(|s| s.connected)
                                && let Some((remote, dialer)) = endpoints.get(&peer)
                            {
                                net.on_connected(peer, remote, *dialer);
                            }
                        }
                    }
                    event = swarm.select_next_some() => {
                        match event {
                            SwarmEvent::NewListenAddr { listener_id, address } => {
                                tracing::info!(%address, "listening");
                                net.listen_addrs.lock().map(|mut l| l.push(address.clone())).ok();
                                if let Some(spec) = listeners.get(&listener_id) {
                                    let key = spec.to_string();
                                    if has_port_zero(spec)
                                        && !ports.iter().any(|(k, _)| *k == key)
                                        && let Some(kept) = with_port_of(spec, &address)
                                    {
                                        ports.push((key, kept.to_string()));
                                        let batch = WriteBatch { listen_ports: Some(ports.clone()), ..WriteBatch::default() };
                                        if let Err(e) = net.lib.store.commit(&batch) {
                                            tracing::warn!("cannot remember the listen port: {e}");
                                        }
                                    }
                                }
                                if let Some(tx) = ready_tx.take() {
                                    let _ = tx.send(());
                                }
                            }
                            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                                if let Some(device) = device_of(&peer_id)
                                    && net.members().was_removed(&device)
                                {
                                    tracing::info!(peer = %device, "refused a connection from a device removed from the family");
                                    let _ = swarm.disconnect_peer_id(peer_id);
                                    continue;
                                }
                                endpoints.entry(peer_id).or_insert_with(|| (endpoint.get_remote_address().clone(), endpoint.is_dialer()));
                                net.on_connected(peer_id, endpoint.get_remote_address(), endpoint.is_dialer());
                            }
                            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                                endpoints.remove(&peer_id);
                                net.on_disconnected(peer_id);
                            }
                            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                                net.on_identified(peer_id, info.listen_addrs);
                            }
                            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                                for (peer, addr) in found {
                                    if net.wants_to_dial(&peer) {
                                        let _ = swarm.dial(libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(vec![addr]).build());
                                    }
                                }
                            }
                            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                                tracing::debug!(%peer, "dial failed: {error}");
                            }
                            SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
                            _ => {}
                        }
                    }
                    Some(command) = command_rx.recv() => match command {
                        Command::Dial(peer, addrs) => {
                            if !swarm.is_connected(&peer) {
                                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
                                if let Err(e) = swarm.dial(opts) {
                                    tracing::debug!(%peer, "cannot dial: {e}");
                                }
                            }
                        }
                    },
                    _ = redial.tick() => {
                        for (peer, addrs) in net.unconnected_family() {
                            if !swarm.is_connected(&peer) && !addrs.is_empty() {
                                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
                                let _ = swarm.dial(opts);
                            }
                        }
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(())) => Ok(net),
            _ => Err(Error::Net(
                "the node did not start listening within 10 s".into(),
            )),
        }
    }

    /// Addresses this node listens on, as peers can dial them.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Addresses for a ticket: the bound ones, LAN before loopback, at most eight.
    pub fn ticket_addrs(&self) -> Vec<Vec<u8>> {
        let mut addrs = self.listen_addrs();
        addrs.retain(|a| !is_unspecified(a));
        addrs.sort_by_key(|a| {
            a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback(),
                Protocol::Ip6(ip) => ip.is_loopback(),
                _ => false,
            })
        });
        addrs.dedup();
        addrs.into_iter().take(8).map(|a| a.to_vec()).collect()
    }

    pub fn peer_status(&self) -> BTreeMap<DeviceId, PeerStatus> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub(crate) fn with_peer(&self, device: &DeviceId, f: impl FnOnce(&mut PeerStatus)) {
        if let Ok(mut peers) = self.peers.lock() {
            f(peers.entry(*device).or_default());
        }
    }

    /// Asks the swarm to connect to `device` at `addrs` (and at what it already knows).
    pub fn dial(&self, device: &DeviceId, addrs: Vec<Multiaddr>) {
        if let Some(peer) = peer_id(device) {
            let _ = self.commands.send(Command::Dial(peer, addrs));
        }
    }

    /// The family's devices as of the last commit of ops (see [`members`]).
    pub fn members(&self) -> Arc<Members> {
        self.members.borrow().clone()
    }

    /// Takes a fresh snapshot of the family's devices now (after admitting a device, so the
    /// joiner is served as family as soon as it has its answer).
    pub(crate) async fn refresh_members(&self) {
        members::refresh(&self.lib, &self.members_tx).await;
    }

    fn wants_to_dial(&self, peer: &PeerId) -> bool {
        match device_of(peer) {
            Some(d) => self.members().is_current(&d) && d != self.lib.device_id(),
            None => false,
        }
    }

    fn unconnected_family(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let me = self.lib.device_id();
        let members = self.members();
        let peers = self.peer_status();
        members
            .roles
            .keys()
            .filter(|d| **d != me)
            .filter_map(|&d| {
                let status = peers.get(&d);
                if status.is_some_and(|s| s.connected) {
                    return None;
                }
                let addrs = status
                    .map(|s| s.addrs.iter().filter_map(|a| a.parse().ok()).collect())
                    .unwrap_or_default();
                Some((peer_id(&d)?, addrs))
            })
            .collect()
    }

    fn on_connected(self: &Arc<Self>, peer: PeerId, remote: &Multiaddr, dialer: bool) {
        let Some(device) = device_of(&peer) else {
            return;
        };
        if !self.members().is_current(&device) {
            tracing::debug!(%peer, "connection from a peer outside the family (only invites are served)");
            return;
        }
        tracing::info!(peer = %device, %remote, "family device connected");
        let now = now_ms();
        let addr = dialer.then(|| remote.to_string());
        let mut was_connected = false;
        self.with_peer(&device, |p| {
            was_connected = p.connected;
            p.connected = true;
            p.last_seen_ms = now;
            if let Some(a) = &addr
                && !p.addrs.contains(a)
            {
                p.addrs.insert(0, a.clone());
            }
        });
        // One pull per device, from its first connection (or from the moment it joined).
        if !was_connected {
            tokio::spawn(sync::pull_loop(self.clone(), device, peer));
        }
        self.connection_changes.fetch_add(1, Ordering::Relaxed);
        self.blobs_wanted.notify_one();
    }

    fn on_disconnected(&self, peer: PeerId) {
        let Some(device) = device_of(&peer) else {
            return;
        };
        let now = now_ms();
        let mut record = None;
        self.with_peer(&device, |p| {
            if p.connected {
                p.connected = false;
                p.caught_up = false;
                p.last_seen_ms = now;
                record = Some(PeerRecord {
                    addrs: p.addrs.clone(),
                    last_seen_ms: now,
                });
            }
        });
        if let Some(record) = record {
            self.connection_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %device, "family device disconnected");
            let batch = WriteBatch {
                peers: vec![(device, record)],
                ..WriteBatch::default()
            };
            if let Err(e) = self.lib.store.commit(&batch) {
                tracing::warn!("cannot record when {device} was last seen: {e}");
            }
        }
    }

    fn on_identified(&self, peer: PeerId, listen: Vec<Multiaddr>) {
        let Some(device) = device_of(&peer) else {
            return;
        };
        if !self.members().is_current(&device) {
            return;
        }
        let addrs: Vec<String> = listen
            .iter()
            .filter(|a| !is_unspecified(a))
            .map(|a| a.to_string())
            .take(16)
            .collect();
        let now = now_ms();
        self.with_peer(&device, |p| {
            p.addrs = addrs.clone();
            p.last_seen_ms = now;
        });
        let batch = WriteBatch {
            peers: vec![(
                device,
                PeerRecord {
                    addrs,
                    last_seen_ms: now,
                },
            )],
            ..WriteBatch::default()
        };
        if let Err(e) = self.lib.store.commit(&batch) {
            tracing::warn!("cannot record the addresses of {device}: {e}");
        }
    }
}

fn has_port_zero(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Tcp(0) | Protocol::Udp(0)))
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// `spec` with its zero port replaced by the port `bound` got.
fn with_port_of(spec: &Multiaddr, bound: &Multiaddr) -> Option<Multiaddr> {
    let port = bound.iter().find_map(|p| match p {
        Protocol::Tcp(n) | Protocol::Udp(n) => Some(n),
        _ => None,
    })?;
    Some(
        spec.iter()
            .map(|p| match p {
                Protocol::Tcp(0) => Protocol::Tcp(port),
                Protocol::Udp(0) => Protocol::Udp(port),
                other => other,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_device_ids_are_the_same_key() {
        let secret = kith_protocol::keys::DeviceSecret::from_seeds([7; 32], [8; 32]);
        let kp = keypair(&secret).unwrap();
        let peer = kp.public().to_peer_id();
        assert_eq!(device_of(&peer), Some(secret.device_id()));
        assert_eq!(peer_id(&secret.device_id()), Some(peer));
    }

    #[test]
    fn kept_ports_replace_only_zero() {
        let spec: Multiaddr = "/ip4/0.0.0.0/tcp/0".parse().unwrap();
        let bound: Multiaddr = "/ip4/192.168.1.4/tcp/4711".parse().unwrap();
        assert_eq!(
            with_port_of(&spec, &bound).unwrap().to_string(),
            "/ip4/0.0.0.0/tcp/4711"
        );
        assert!(!has_port_zero(&"/ip4/0.0.0.0/tcp/5".parse().unwrap()));
    }
}
