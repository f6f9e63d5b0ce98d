//! The liveness beacon: UDP pings between nodes, sent and answered by OS threads of their own,
//! outside the Tokio runtime that runs the Raft groups and the API.
//!
//! Liveness must tell a dead or cut-off node from a busy one. The gRPC pings run on the node's
//! runtime; when two cores carry three nodes creating thousands of groups, a ping waits behind
//! that work past its timeout and healthy nodes are called down, which wakes groups and starts
//! elections — more load, more missed pings. The beacon's threads sleep on their socket and the
//! kernel schedules them as soon as a datagram arrives, whatever the runtime is doing, so a
//! node answers as long as its process runs and the network carries its packets. A process
//! that is killed or stopped (SIGSTOP), or a network that drops its packets, silences it.
//!
//! The socket is bound to the peer listener's address and port (UDP and TCP ports are separate),
//! so no extra port is configured. A datagram is 29 bytes: magic `RFLB`, kind (ping or pong),
//! sender id, addressee id, sequence number. Only a pong addressed to this node counts as
//! hearing from its sender: it proves both directions work.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::net::ToSocketAddrs;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

const MAGIC: &[u8; 4] = b"RFLB";
const PING: u8 = 1;
const PONG: u8 = 2;
const DATAGRAM: usize = 4 + 1 + 8 + 8 + 8;
/// How often every other node is pinged.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// How long a resolved address is reused before it is looked up again (a container that
/// restarts may come back with another address under the same name).
const RESOLVE_EVERY: Duration = Duration::from_secs(5);
/// How often the threads look at the stop flag while nothing arrives.
const POLL: Duration = Duration::from_millis(100);

/// A running beacon: one thread answers (pings) and listens (pongs), one sends the pings, one
/// looks peer names up (a lookup that hangs must not hold the pings to every other node).
/// Dropping the last handle does not stop it; [`Beacon::stop`] does.
pub struct Beacon {
    node_id: u64,
    socket: UdpSocket,
    /// When a pong from each node last arrived.
    heard: Mutex<HashMap<u64, Instant>>,
    /// Where each other node is pinged (its peer address, `host:port`).
    targets: Mutex<Vec<(u64, String)>>,
    /// The socket address each target address was last resolved to.
    resolved: Mutex<HashMap<String, SocketAddr>>,
    stopped: AtomicBool,
}

impl Beacon {
    /// Binds `address` (UDP) and starts the sending and answering threads.
    pub fn start(node_id: u64, address: SocketAddr) -> io::Result<Arc<Beacon>> {
        let socket = UdpSocket::bind(address)?;
        socket.set_read_timeout(Some(POLL))?;
        let beacon = Arc::new(Beacon {
            node_id,
            socket,
            heard: Mutex::new(HashMap::new()),
            targets: Mutex::new(Vec::new()),
            resolved: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
        });
        let answering = beacon.clone();
        std::thread::Builder::new()
            .name("riffle-beacon-rx".into())
            .spawn(move || answering.answer())?;
        let sending = beacon.clone();
        std::thread::Builder::new()
            .name("riffle-beacon-tx".into())
            .spawn(move || sending.send())?;
        let resolving = beacon.clone();
        std::thread::Builder::new()
            .name("riffle-beacon-dns".into())
            .spawn(move || resolving.resolve())?;
        Ok(beacon)
    }

    /// The address the beacon listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The nodes to ping from now on, with their peer addresses.
    pub fn set_targets(&self, targets: Vec<(u64, String)>) {
        if let Ok(mut slot) = self.targets.lock() {
            *slot = targets;
        }
    }

    fn targets(&self) -> Vec<(u64, String)> {
        self.targets
            .lock()
            .map(|targets| targets.clone())
            .unwrap_or_default()
    }

    /// When `node` last answered a ping, if it ever did.
    pub fn last_heard(&self, node: u64) -> Option<Instant> {
        self.heard.lock().ok()?.get(&node).copied()
    }

    /// Stops both threads (within [`POLL`] and [`INTERVAL`]).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Answers pings and records pongs until stopped.
    fn answer(&self) {
        let mut buffer = [0u8; 64];
        while !self.is_stopped() {
            let (length, from) = match self.socket.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                // An ICMP "port unreachable" from an earlier send surfaces here on some
                // systems; nothing to do about it but keep listening.
                Err(_) => continue,
            };
            let Some(datagram) = Datagram::decode(&buffer[..length]) else {
                continue;
            };
            if datagram.to != self.node_id {
                continue;
            }
            match datagram.kind {
                PING => {
                    let pong = Datagram {
                        kind: PONG,
                        from: self.node_id,
                        to: datagram.from,
                        sequence: datagram.sequence,
                    };
                    let _ = self.socket.send_to(&pong.encode(), from);
                }
                PONG => {
                    if let Ok(mut heard) = self.heard.lock() {
                        heard.insert(datagram.from, Instant::now());
                    }
                }
                _ => {}
            }
        }
    }

    /// Pings every resolved target every [`INTERVAL`] until stopped.
    fn send(&self) {
        let mut sequence = 0u64;
        while !self.is_stopped() {
            let round = Instant::now();
            sequence += 1;
            let targets = self.targets();
            let resolved = self
                .resolved
                .lock()
                .map(|resolved| resolved.clone())
                .unwrap_or_default();
            for (node, address) in targets {
                let Some(to) = resolved.get(&address) else {
                    continue;
                };
                let ping = Datagram {
                    kind: PING,
                    from: self.node_id,
                    to: node,
                    sequence,
                };
                let _ = self.socket.send_to(&ping.encode(), to);
            }
            std::thread::sleep(INTERVAL.saturating_sub(round.elapsed()));
        }
    }

    /// Resolves each target address when it first appears and every [`RESOLVE_EVERY`] after,
    /// until stopped. A failed lookup keeps the last address found.
    fn resolve(&self) {
        let mut looked_up: HashMap<String, Instant> = HashMap::new();
        while !self.is_stopped() {
            let targets = self.targets();
            for (_, address) in targets {
                let due = looked_up
                    .get(&address)
                    .is_none_or(|at| at.elapsed() >= RESOLVE_EVERY);
                if !due {
                    continue;
                }
                looked_up.insert(address.clone(), Instant::now());
                let found = address
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut found| found.next());
                if let Some(found) = found
                    && let Ok(mut resolved) = self.resolved.lock()
                {
                    resolved.insert(address, found);
                }
            }
            std::thread::sleep(INTERVAL);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Datagram {
    kind: u8,
    from: u64,
    to: u64,
    sequence: u64,
}

impl Datagram {
    fn encode(&self) -> [u8; DATAGRAM] {
        let mut out = [0u8; DATAGRAM];
        out[..4].copy_from_slice(MAGIC);
        out[4] = self.kind;
        out[5..13].copy_from_slice(&self.from.to_be_bytes());
        out[13..21].copy_from_slice(&self.to.to_be_bytes());
        out[21..29].copy_from_slice(&self.sequence.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Datagram> {
        if bytes.len() != DATAGRAM || &bytes[..4] != MAGIC {
            return None;
        }
        let number = |range: std::ops::Range<usize>| {
            Some(u64::from_be_bytes(bytes.get(range)?.try_into().ok()?))
        };
        Some(Datagram {
            kind: bytes[4],
            from: number(5..13)?,
            to: number(13..21)?,
            sequence: number(21..29)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("address")
    }

    fn wait_until(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn datagrams_round_trip_and_garbage_is_ignored() {
        let ping = Datagram {
            kind: PING,
            from: 3,
            to: 7,
            sequence: u64::MAX,
        };
        assert_eq!(Datagram::decode(&ping.encode()), Some(ping));
        assert_eq!(Datagram::decode(b"RFLB"), None);
        let mut wrong_magic = ping.encode();
        wrong_magic[0] = b'X';
        assert_eq!(Datagram::decode(&wrong_magic), None);
    }

    #[test]
    fn two_beacons_hear_each_other_and_a_stopped_one_falls_silent() {
        let one = Beacon::start(1, loopback()).expect("beacon 1");
        let two = Beacon::start(2, loopback()).expect("beacon 2");
        one.set_targets(vec![(2, two.local_addr().expect("addr").to_string())]);
        two.set_targets(vec![(1, one.local_addr().expect("addr").to_string())]);
        assert!(wait_until(
            || one.last_heard(2).is_some() && two.last_heard(1).is_some()
        ));

        two.stop();
        std::thread::sleep(POLL + INTERVAL * 2);
        let last = one.last_heard(2).expect("heard before");
        std::thread::sleep(INTERVAL * 4);
        assert_eq!(
            one.last_heard(2),
            Some(last),
            "a stopped beacon still answers"
        );
        one.stop();
    }

    #[test]
    fn a_pong_for_another_node_or_a_node_that_is_not_pinged_counts_for_nothing() {
        let one = Beacon::start(1, loopback()).expect("beacon 1");
        let stranger = UdpSocket::bind(loopback()).expect("socket");
        let to_one = one.local_addr().expect("addr");
        let misaddressed = Datagram {
            kind: PONG,
            from: 9,
            to: 4,
            sequence: 1,
        };
        stranger
            .send_to(&misaddressed.encode(), to_one)
            .expect("send");
        // A ping is answered but does not count as hearing from its sender.
        let ping = Datagram {
            kind: PING,
            from: 9,
            to: 1,
            sequence: 2,
        };
        stranger.send_to(&ping.encode(), to_one).expect("send");
        stranger
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buffer = [0u8; 64];
        let (length, _) = stranger.recv_from(&mut buffer).expect("a pong");
        let pong = Datagram::decode(&buffer[..length]).expect("a datagram");
        assert_eq!(
            (pong.kind, pong.from, pong.to, pong.sequence),
            (PONG, 1, 9, 2)
        );
        assert_eq!(one.last_heard(9), None);
        one.stop();
    }
}
