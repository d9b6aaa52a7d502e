//! A TCP relay in front of one device: it accepts on any number of ports, forwards each
//! connection to the device's current address, records every byte both ways, can hold back
//! what the device sends after a given number of bytes, and cuts all its connections on
//! demand. Plain threads, no runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};

/// How long a connection waits for the relay to be given a target.
const TARGET_WAIT: Duration = Duration::from_secs(30);

/// One connection through the relay, as recorded.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The relay port it came in on.
    pub listener: SocketAddr,
    /// Who dialled the relay.
    pub dialer: SocketAddr,
    /// The relay's end of the connection to the target: what the target sees as the dialer.
    pub outbound: SocketAddr,
    /// Every byte from the dialer to the target.
    pub to_target: Vec<u8>,
    /// Every byte from the target to the dialer.
    pub from_target: Vec<u8>,
    /// Neither direction has ended yet and it was not cut.
    pub open: bool,
}

struct Live {
    record: Connection,
    sockets: Vec<TcpStream>,
    pumps_running: u8,
    cut: bool,
}

#[derive(Default)]
struct State {
    target: Option<SocketAddr>,
    /// When set, the target's bytes pass (over all connections) only up to this total.
    hold_after: Option<u64>,
    from_target_total: u64,
    connections: Vec<Live>,
    listeners: Vec<SocketAddr>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module documentation. Dropping it cuts every connection and closes its ports.
#[derive(Default)]
pub struct Relay {
    shared: Arc<Shared>,
}

impl Relay {
    pub fn new() -> Relay {
        Relay::default()
    }

    /// Accepts connections on `bind` (`127.0.0.1:0` for a fresh port) and returns the bound
    /// address.
    pub fn listen(&self, bind: SocketAddr) -> Result<SocketAddr> {
        let listener =
            TcpListener::bind(bind).with_context(|| format!("relay cannot bind {bind}"))?;
        let local = listener.local_addr()?;
        self.shared.lock().listeners.push(local);
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name(format!("relay {local}"))
            .spawn(move || {
                for incoming in listener.incoming() {
                    if shared.lock().closed {
                        break;
                    }
                    if let Ok(dialer) = incoming {
                        let shared = shared.clone();
                        let _ = std::thread::Builder::new()
                            .name("relay connection".into())
                            .spawn(move || connect(&shared, local, dialer));
                    }
                }
            })?;
        Ok(local)
    }

    /// Where new connections are forwarded to. Connections that arrive before a target is
    /// set wait for one.
    pub fn set_target(&self, target: SocketAddr) {
        self.shared.lock().target = Some(target);
        self.shared.changed.notify_all();
    }

    /// Lets at most `total` bytes from the target through, counted over the relay's whole
    /// life (`None` lets everything through again). What is held back waits in the relay.
    pub fn hold_back_after(&self, total: Option<u64>) {
        self.shared.lock().hold_after = total;
        self.shared.changed.notify_all();
    }

    /// Bytes the target sent through the relay so far.
    pub fn from_target_total(&self) -> u64 {
        self.shared.lock().from_target_total
    }

    /// Whether the target's bytes are being held back right now (the limit is reached).
    pub fn holding(&self) -> bool {
        let state = self.shared.lock();
        state
            .hold_after
            .is_some_and(|limit| state.from_target_total >= limit)
    }

    /// Cuts every open connection (both sockets shut down); returns how many were open.
    pub fn cut(&self) -> usize {
        let mut state = self.shared.lock();
        let mut cut = 0;
        for live in state.connections.iter_mut().filter(|c| c.record.open) {
            cut_one(live);
            cut += 1;
        }
        drop(state);
        self.shared.changed.notify_all();
        cut
    }

    /// Every connection so far, with what it carried.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared
            .lock()
            .connections
            .iter()
            .map(|c| c.record.clone())
            .collect()
    }

    /// The ports it accepts on.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.shared.lock().listeners.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let listeners = {
            let mut state = self.shared.lock();
            state.closed = true;
            for live in state.connections.iter_mut() {
                cut_one(live);
            }
            state.listeners.clone()
        };
        self.shared.changed.notify_all();
        // Wake each accept loop so it sees `closed` and lets its port go.
        for addr in listeners {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }
}

fn cut_one(live: &mut Live) {
    live.cut = true;
    live.record.open = false;
    for s in &live.sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn connect(shared: &Arc<Shared>, listener: SocketAddr, dialer: TcpStream) {
    let target = {
        let state = shared.lock();
        let (state, _) = shared
            .changed
            .wait_timeout_while(state, TARGET_WAIT, |s| s.target.is_none() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return;
        }
        state.target
    };
    let Some(target) = target else { return };
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(dialer_addr), Ok(outbound)) = (dialer.peer_addr(), upstream.local_addr()) else {
        return;
    };
    let _ = dialer.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (
        dialer.try_clone(),
        upstream.try_clone(),
        dialer.try_clone(),
        upstream.try_clone(),
    );
    let (Ok(d_read), Ok(u_write), Ok(d_write), Ok(u_read)) = clones else {
        return;
    };
    let index = {
        let mut state = shared.lock();
        if state.closed {
            return;
        }
        state.connections.push(Live {
            record: Connection {
                listener,
                dialer: dialer_addr,
                outbound,
                to_target: Vec::new(),
                from_target: Vec::new(),
                open: true,
            },
            sockets: vec![dialer, upstream],
            pumps_running: 2,
            cut: false,
        });
        state.connections.len() - 1
    };
    let up = shared.clone();
    let _ = std::thread::Builder::new()
        .name("relay to target".into())
        .spawn(move || pump(&up, index, false, d_read, u_write));
    pump(shared, index, true, u_read, d_write);
}

/// Copies one direction until it ends or the connection is cut.
fn pump(shared: &Shared, index: usize, from_target: bool, mut src: TcpStream, mut dst: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    'copy: loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut done = 0;
        while done < n {
            // How much may pass now; wait while the target's bytes are held back.
            let pass = {
                let mut state = shared.lock();
                loop {
                    if state.closed || state.connections[index].cut {
                        break 'copy;
                    }
                    let room = match (from_target, state.hold_after) {
                        (true, Some(limit)) => limit.saturating_sub(state.from_target_total),
                        _ => u64::MAX,
                    };
                    if room > 0 {
                        let pass = (n - done).min(usize::try_from(room).unwrap_or(usize::MAX));
                        if from_target {
                            state.from_target_total += pass as u64;
                        }
                        break pass;
                    }
                    state = shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
            };
            let chunk = &buf[done..done + pass];
            // Recorded before it is written, so whoever reads the other end finds it recorded.
            {
                let mut state = shared.lock();
                let record = &mut state.connections[index].record;
                if from_target {
                    record.from_target.extend_from_slice(chunk);
                } else {
                    record.to_target.extend_from_slice(chunk);
                }
            }
            if dst.write_all(chunk).is_err() {
                break 'copy;
            }
            done += pass;
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
    let mut state = shared.lock();
    let live = &mut state.connections[index];
    live.pumps_running -= 1;
    if live.pumps_running == 0 {
        live.record.open = false;
        for s in &live.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_records_holds_back_and_cuts() -> Result<()> {
        let echo = TcpListener::bind("127.0.0.1:0")?;
        let target = echo.local_addr()?;
        std::thread::spawn(move || {
            for s in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = s.try_clone().expect("clone");
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        let relay = Relay::new();
        relay.set_target(target);
        let front = relay.listen("127.0.0.1:0".parse()?)?;
        let mut c = TcpStream::connect(front)?;
        c.write_all(b"hello")?;
        let mut got = [0u8; 5];
        c.read_exact(&mut got)?;
        assert_eq!(&got, b"hello");
        relay.hold_back_after(Some(7));
        c.write_all(b"world")?;
        let mut got = [0u8; 2];
        c.read_exact(&mut got)?;
        assert_eq!(&got, b"wo");
        assert!(relay.holding());
        assert_eq!(relay.cut(), 1);
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
        let conns = relay.connections();
        assert_eq!(conns[0].to_target, b"helloworld");
        assert_eq!(conns[0].from_target, b"hellowo");
        assert!(!conns[0].open);
        Ok(())
    }
}
