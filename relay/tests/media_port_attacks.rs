//! Attacks on the media port against live viewers whose sessions answer ICE consent
//! themselves (str0m dropped, see relay::session): empty datagrams, a lone DTLS alert
//! byte, runts of every RFC 7983 class and full-size garbage, sent from the viewer's own
//! address or from a stranger's port that first sent a STUN check naming the session's
//! ufrag with a wrong password. DESIGN.md invariant 6: none may cost a session, a
//! worker, or a packet of anyone's media, and each is counted as dropped.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use relay_testkit::metrics::{exported, prefix_sum};
use relay_testkit::process::RelayProcess;
use relay_testkit::viewer::{Driven, Viewer};
use relay_testkit::wait::eventually;

use common::{
    assert_demo_stream, binding_request, check_nack_recovery, demo_config, start, WORKERS,
};
/// Every counter of dropped datagrams starts so: malformed, unknown source or ufrag,
/// unauthenticated, SRTCP authentication, unexpected media. The attacks assert on the
/// sum, so a drop may move between them; change this if drops are ever counted under
/// another name.
const DROP_COUNTERS: &str = "relay_dropped_";
/// Media packets every viewer must receive after an attack to show it is still served
/// (a tenth of a second of the demo).
const FRESH_PACKETS: usize = 5;
/// How long an attacked relay gets to show that it still serves everyone.
const PATIENCE: Duration = Duration::from_secs(3);
/// A password no session has.
const WRONG_PASSWORD: &str = "not-the-session-password";

/// The first bytes of a datagram of each RFC 7983 class, and of none: a runt is 1 to 3
/// of them.
const HEADS: &[(&str, [u8; 3])] = &[
    ("STUN", [0x00, 0x01, 0x00]),
    ("STUN, top of range", [0x03, 0xff, 0xff]),
    ("DTLS alert", [21, 0xfe, 0xfd]),
    ("DTLS change_cipher_spec", [20, 0xfe, 0xfd]),
    ("DTLS handshake", [22, 0xfe, 0xfd]),
    ("DTLS application_data", [23, 0xfe, 0xfd]),
    ("DTLS, top of range", [63, 0xfe, 0xfd]),
    ("SRTP", [0x80, 96, 0x00]),
    ("SRTCP", [0x80, 200, 0x00]),
    ("RTP/RTCP, top of range", [191, 223, 0xff]),
    ("no class, 64", [64, 0x00, 0x00]),
    ("no class, 255", [255, 0xff, 0xff]),
];

/// A size no runt check would catch: near the MTU.
const FULL_SIZE: usize = 1200;

struct Attack {
    name: String,
    payload: Vec<u8>,
}

/// The empty datagram and a lone alert byte first (the two found to harm), then every
/// runt, then full-size garbage. A full-size DTLS alert only if `alert_record`: from the
/// viewer's own address it cannot be told from the viewer's real close_notify.
fn attacks(alert_record: bool) -> Vec<Attack> {
    let attack = |name: String, payload: Vec<u8>| Attack { name, payload };
    let mut all = vec![
        attack("empty datagram".into(), Vec::new()),
        attack("lone DTLS alert byte 0x15".into(), vec![0x15]),
    ];
    for len in 1..=3 {
        for (class, head) in HEADS {
            if len > 1 || head[0] != 0x15 {
                all.push(attack(
                    format!("{len}-byte {class} runt"),
                    head[..len].to_vec(),
                ));
            }
        }
    }
    let records: &[(&str, u8)] = &[
        ("DTLS alert", 21),
        ("DTLS handshake", 22),
        ("DTLS application_data", 23),
    ];
    for &(name, content_type) in records {
        if content_type != 21 || alert_record {
            all.push(attack(
                format!("full-size {name} record of garbage"),
                dtls_record(content_type),
            ));
        }
    }
    all.push(attack(
        "full-size garbage SRTP".into(),
        garbage(&[0x80, 96]),
    ));
    all.push(attack(
        "full-size garbage SRTCP".into(),
        garbage(&[0x81, 201]),
    ));
    all
}

/// A DTLS 1.2 record of epoch 1 (encrypted, as after the handshake) with a garbage body.
fn dtls_record(content_type: u8) -> Vec<u8> {
    let body = (FULL_SIZE - 13) as u16;
    let mut head = vec![content_type, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7];
    head.extend_from_slice(&body.to_be_bytes());
    garbage(&head)
}

/// `head`, then random bytes up to `FULL_SIZE`.
fn garbage(head: &[u8]) -> Vec<u8> {
    let mut data = head.to_vec();
    data.resize_with(FULL_SIZE, || fastrand::u8(..));
    data
}

/// A relay and its viewers, each driven in its own thread: a victim on each worker, and
/// whatever other viewers it took to find them (they watch, unattacked).
struct Stage {
    relay: RelayProcess,
    viewers: Vec<Driven>,
    /// Index in `viewers` of the victim on each worker.
    victims: Vec<usize>,
    /// A stranger's ports, one the relay receives on each worker: a victim's datagrams
    /// from one reach its own worker, from the other they are forwarded to it.
    strangers: Vec<UdpSocket>,
}

/// What an attack did wrong.
struct Harm {
    harm: Vec<String>,
    /// A viewer, session or worker is gone: the next attack needs a fresh stage.
    broken: bool,
}

/// What the relay and its viewers were at before an attack.
struct Before {
    packets: Vec<usize>,
    sessions: f64,
    drops: f64,
}

impl Stage {
    fn set_up() -> Stage {
        let relay = start(&demo_config());
        let mut viewers: Vec<Driven> = Vec::new();
        let mut victims = [None; WORKERS];
        // SO_REUSEPORT spreads viewers over the workers by their address.
        while victims.iter().any(Option::is_none) {
            assert!(
                viewers.len() < 12,
                "12 viewers and still no viewer on each worker: {victims:?}"
            );
            let v = Driven::start(Viewer::connect(&relay.http, "demo"));
            let id = v.with(|v| v.session_id().to_string());
            let mut worker = None;
            assert!(
                eventually(Duration::from_secs(5), || {
                    worker = relay.worker_of(&id);
                    worker.is_some()
                }),
                "viewer {id} never went live"
            );
            victims[worker.unwrap()].get_or_insert(viewers.len());
            viewers.push(v);
        }
        let victims: Vec<usize> = victims.into_iter().flatten().collect();
        for &i in &victims {
            hand_over_to_consent(&relay, &viewers[i]);
        }
        let strangers = ports_on_each_worker(&relay, viewers[0].with(|v| v.relay_media));
        Stage {
            relay,
            viewers,
            victims,
            strangers,
        }
    }

    fn victims(&self) -> impl Iterator<Item = &Driven> {
        self.victims.iter().map(|&i| &self.viewers[i])
    }

    fn packets(&self) -> Vec<usize> {
        self.viewers
            .iter()
            .map(|v| v.with(|v| v.packets()))
            .collect()
    }

    fn before(&self) -> Before {
        let m = self.relay.metrics().unwrap();
        Before {
            packets: self.packets(),
            sessions: exported(&m, "relay_sessions").unwrap(),
            drops: prefix_sum(&m, DROP_COUNTERS, ""),
        }
    }

    /// What an attack did wrong, `dropped` datagrams of it having had to be counted as
    /// dropped: a viewer no longer served, a session gone, a panic, a drop not counted.
    fn harm(&self, before: &Before, dropped: usize) -> Harm {
        let mut harm = Vec::new();
        let served = eventually(PATIENCE, || {
            let now = self.packets();
            now.iter()
                .zip(&before.packets)
                .all(|(n, b)| *n >= b + FRESH_PACKETS)
        });
        if !served {
            harm.push(format!(
                "viewers stopped receiving (packets before {:?}, {:?} after {PATIENCE:?})",
                before.packets,
                self.packets()
            ));
        }
        harm.extend(self.harm_in_log());
        let sessions = self.relay.metric("relay_sessions").unwrap();
        if sessions != before.sessions {
            harm.push(format!("relay_sessions {} -> {sessions}", before.sessions));
        }
        // Only an uncounted drop leaves the stage fit for the next attack.
        let broken = !harm.is_empty();
        let wanted = before.drops + dropped as f64;
        let drops = || prefix_sum(&self.relay.metrics().unwrap(), DROP_COUNTERS, "");
        if !eventually(Duration::from_secs(1), || drops() >= wanted) {
            harm.push(format!(
                "{DROP_COUNTERS}* went {} -> {}, not by the {dropped} datagrams sent",
                before.drops,
                drops()
            ));
        }
        Harm { harm, broken }
    }

    /// Lines of the relay's log that show harm: a panic (with its message) or one of our
    /// sessions closed.
    fn harm_in_log(&self) -> Vec<String> {
        let ids: Vec<String> = self
            .viewers
            .iter()
            .map(|v| v.with(|v| format!("session={} ", v.session_id())))
            .collect();
        let log = self.relay.log();
        let mut harm = Vec::new();
        for (i, line) in log.iter().enumerate() {
            if line.contains("panicked") {
                let message = log.get(i + 1).map_or("", String::as_str);
                harm.push(format!("relay log: {line} {message}"));
            } else if line.contains("viewer closed") && ids.iter().any(|id| line.contains(id)) {
                harm.push(format!("relay log: {line}"));
            }
        }
        harm
    }

    /// After all the attacks: every worker still sends, the relay still has every
    /// session, new viewers connect on every worker and get the stream, and the old
    /// ones got every packet in order.
    fn assert_whole(self) {
        for w in 0..WORKERS {
            let sent = format!("relay_rtp_packets_sent_total{{worker=\"{w}\"}}");
            let before = self.relay.metric(&sent).unwrap();
            assert!(
                eventually(PATIENCE, || self.relay.metric(&sent).unwrap() > before),
                "worker {w} sends no more media: {sent} stays at {before}"
            );
        }
        assert_eq!(
            self.relay.metric("relay_sessions").unwrap(),
            self.viewers.len() as f64
        );
        let mut joined = [false; WORKERS];
        for attempt in 1.. {
            assert!(
                attempt <= 12,
                "12 new viewers and not one on each worker: {joined:?}"
            );
            let mut v = Viewer::connect(&self.relay.http, "demo");
            let id = v.session_id().to_string();
            for _ in 0..30 {
                v.run_for(Duration::from_millis(100));
                if v.packets() > 30 {
                    break;
                }
            }
            assert!(v.connected, "new viewer {id} never connected");
            assert!(
                v.packets() > 30,
                "new viewer {id} got {} packets",
                v.packets()
            );
            assert_demo_stream(&v);
            if let Some(w) = self.relay.worker_of(&id) {
                joined[w] = true;
            }
            if joined.iter().all(|&j| j) {
                break;
            }
        }
        assert_eq!(self.harm_in_log(), Vec::<String>::new());
        for v in self.viewers {
            assert_demo_stream(&v.stop());
        }
    }
}

/// New ports, one that the relay (at `media`) receives on each worker: SO_REUSEPORT
/// picks the worker by address, so each port is probed with a byte of junk, which the
/// worker that receives it counts as dropped.
fn ports_on_each_worker(relay: &RelayProcess, media: SocketAddr) -> Vec<UdpSocket> {
    let drops = || -> Vec<f64> {
        let m = relay.metrics().unwrap();
        (0..WORKERS)
            .map(|w| prefix_sum(&m, DROP_COUNTERS, &format!("worker=\"{w}\"")))
            .collect()
    };
    let mut ports: Vec<Option<UdpSocket>> = (0..WORKERS).map(|_| None).collect();
    for _ in 0..32 {
        let before = drops();
        let port = UdpSocket::bind("127.0.0.1:0").unwrap();
        port.send_to(&[0xff], media).unwrap();
        let mut worker = None;
        assert!(
            eventually(Duration::from_secs(2), || {
                let now = drops();
                worker = (0..WORKERS).find(|&w| now[w] > before[w]);
                worker.is_some()
            }),
            "no worker counted a stranger's byte of junk as dropped"
        );
        ports[worker.unwrap()].get_or_insert(port);
        if ports.iter().all(Option::is_some) {
            return ports.into_iter().flatten().collect();
        }
    }
    panic!("32 ports and not one received by each worker");
}

/// Makes the viewer's session drop str0m and answer ICE consent itself: the session does
/// so on the first SRTCP of the viewer's it opens. A PLI is such SRTCP, and the relay
/// counts a keyframe request only once it opened it.
fn hand_over_to_consent(relay: &RelayProcess, v: &Driven) {
    assert!(
        eventually(Duration::from_secs(5), || v.with(|v| v.packets())
            >= FRESH_PACKETS),
        "viewer never received media"
    );
    let before = relay.metric("relay_keyframe_requests_total").unwrap();
    v.with(Viewer::request_keyframe);
    assert!(
        eventually(Duration::from_secs(5), || relay
            .metric("relay_keyframe_requests_total")
            .unwrap()
            > before),
        "the relay never counted the viewer's PLI: its session did not leave str0m"
    );
}

/// Runs every attack against a stage. `send` makes one attack and says how many of its
/// datagrams must be counted as dropped. An attack that harms is recorded, and if it
/// broke the stage the next attack gets a fresh one (up to `MAX_FRESH_STAGES` times, to
/// bound the time); the test fails at the end with every harmful attack.
fn survive(attacks: &[Attack], send: impl Fn(&Stage, &[u8]) -> usize) {
    const MAX_FRESH_STAGES: usize = 8;
    let mut stage = Stage::set_up();
    let (mut harmful, mut fresh) = (Vec::new(), 0);
    for attack in attacks {
        let before = stage.before();
        let dropped = send(&stage, &attack.payload);
        let Harm { harm, broken } = stage.harm(&before, dropped);
        if !harm.is_empty() {
            harmful.push(format!("{}: {}", attack.name, harm.join("; ")));
        }
        if broken {
            if fresh == MAX_FRESH_STAGES {
                harmful.push(format!("(stopped: {fresh} attacks broke a stage)"));
                break;
            }
            fresh += 1;
            stage = Stage::set_up();
        }
    }
    assert!(
        harmful.is_empty(),
        "harmful attacks (of {}):\n{}",
        attacks.len(),
        harmful.join("\n")
    );
    stage.assert_whole();
}

/// The session's ufrag in USERNAME, integrity from a password that is not the session's:
/// what once bound a stranger's port to a session (it was added before any check).
fn wrong_password_check(v: &Driven) -> Vec<u8> {
    v.with(|v| binding_request(&format!("{}:x", v.relay_ufrag), WRONG_PASSWORD))
}

#[test]
fn runts_from_a_strangers_port_after_a_wrong_password_check_harm_no_one() {
    survive(&attacks(true), |stage, payload| {
        // From the same ports every time: a relay that admits a port after its first
        // check lets every later attack reach the session.
        for victim in stage.victims() {
            let (check, to) = (wrong_password_check(victim), victim.with(|v| v.relay_media));
            for port in &stage.strangers {
                port.send_to(&check, to).unwrap();
                port.send_to(payload, to).unwrap();
            }
        }
        // The wrong-password check and the attack, for each victim from each port.
        2 * stage.victims.len() * stage.strangers.len()
    });
}

#[test]
fn runts_from_the_viewers_own_address_harm_no_one() {
    survive(&attacks(false), |stage, payload| {
        for victim in stage.victims() {
            victim.with(|v| v.send_raw(payload));
        }
        stage.victims.len()
    });
}

/// From `n` new ports: a wrong-password check naming the session of `ufrag` at `media`,
/// then garbage SRTCP. Returns once the relay's workers have received all of it.
fn strangers_claim_slots(relay: &RelayProcess, (ufrag, media): (String, SocketAddr), n: usize) {
    let check = binding_request(&format!("{ufrag}:x"), WRONG_PASSWORD);
    let received = || relay.metric("relay_datagrams_received_total").unwrap();
    let before = received();
    for _ in 0..n {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap();
        port.send_to(&check, media).unwrap();
        port.send_to(&garbage(&[0x81, 201]), media).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(2), || received()
            >= before + 2.0 * n as f64),
        "the relay never received the strangers' datagrams"
    );
}

#[test]
fn wrong_password_checks_from_many_ports_take_none_of_the_viewers_address_slots() {
    // More ports than a session has address slots (session::MAX_REMOTES is 8).
    const STRANGERS: usize = 9;
    let relay = start(&demo_config());
    let v = Viewer::connect(&relay.http, "demo");
    let session = (v.relay_ufrag.clone(), v.relay_media);
    // Before the viewer's first check: had they taken the slots, its DTLS would find
    // none left for its address.
    strangers_claim_slots(&relay, session.clone(), STRANGERS);
    let v = Driven::start(v);
    assert!(
        eventually(Duration::from_secs(5), || v.with(|v| v.connected)),
        "the viewer never connected after {STRANGERS} strangers' wrong-password checks \
         for its session"
    );
    hand_over_to_consent(&relay, &v);
    // Again now that the session answers consent itself.
    strangers_claim_slots(&relay, session, STRANGERS);
    let mut v = v.stop();
    let answers = v.stun_answers;
    // Its own traffic still works: its NACKs are answered (SRTCP from its address) and
    // its consent checks too (str0m checks a nominated pair every few seconds).
    v = check_nack_recovery(&relay, v, Duration::from_secs(4));
    assert!(
        v.stun_answers > answers,
        "the relay answered none of the viewer's consent checks after the strangers'"
    );
    assert_eq!(relay.metric("relay_sessions").unwrap(), 1.0);
}
