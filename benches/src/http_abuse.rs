//! `relay-bench http-abuse`: the relay's HTTP listener under abuse, one case at a time,
//! each bounded in time, while an honest viewer joins from another address and must get
//! its answer and every media packet.
//!
//! Abusers come from 127.0.0.2 and up (one address, or many: loopback answers to all of
//! 127/8), the viewer from 127.0.0.1, so that the per-address limits stand between
//! them as between two hosts. The relay runs its default limits (the load tools' other
//! configs lift the pending-session ones).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use relay::config::{Config, LogLevel};
use relay_testkit::config::{demo, loopback, paths};
use relay_testkit::metrics::exported;
use relay_testkit::process::{Launch, RelayProcess};
use relay_testkit::{http, whep};

use crate::procfs;
use crate::relay_config::PATH;
use crate::report::{host, print_table, progress, progress_done};
use crate::sink::{Driver, Offering};

#[derive(clap::Args)]
pub struct Args {
    /// The relay binary (build it with `cargo build --release -p relay`).
    #[arg(long, default_value = "target/release/relay")]
    relay: PathBuf,
    /// The cases to run, in order.
    #[arg(long, value_delimiter = ',', default_values_t = Case::ALL)]
    cases: Vec<Case>,
    /// How long each case's abuse lasts, in seconds.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Connections of the idle and slow cases.
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// Abusing threads of the flood cases (each one request at a time).
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Write the relay's heap profile (pprof's format, gzip) at the end of each offer
    /// flood here, as `<case>.pb.gz` (the relay then runs with `pprof: yes`).
    #[arg(long)]
    heap_profiles: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// `--connections` connections from one address that send nothing.
    IdleOne,
    /// `--connections` connections from as many addresses as the per-address limit
    /// lets hold them all, sending nothing.
    IdleSpread,
    /// `--connections` connections (spread) sending a request's header a byte every
    /// 100 ms (slowloris).
    Slow,
    /// Requests with a 40 KiB header, each on a new connection (431).
    BigHeaders,
    /// `GET /<path>/` (the player page) over kept-alive connections, one address.
    GetKeepAlive,
    /// `GET /<path>/`, each on a new connection, one address.
    GetNewConnections,
    /// Offers that are not SDP (400), over kept-alive connections, one address.
    BadOffers,
    /// `DELETE` of sessions that do not exist (404), kept-alive, one address.
    UnknownDeletes,
    /// Valid WHEP offers never connected, kept-alive, one address.
    OffersOne,
    /// Valid WHEP offers never connected, from 200 addresses (127.0.0.2-201).
    OffersSpread,
}

impl Case {
    const ALL: [Case; 10] = [
        Case::IdleOne,
        Case::IdleSpread,
        Case::Slow,
        Case::BigHeaders,
        Case::GetKeepAlive,
        Case::GetNewConnections,
        Case::BadOffers,
        Case::UnknownDeletes,
        Case::OffersOne,
        Case::OffersSpread,
    ];

    /// Offers from 200 addresses fill every pending session the relay allows
    /// (`webrtcMaxPendingSessions`, 2,000) within moments, and then a new viewer's offer
    /// is answered 429 (with `Retry-After`) like theirs until they expire: the limit's
    /// designed answer, which keeps the flood's memory bounded.
    fn may_fill_the_pending_sessions(self) -> bool {
        matches!(self, Case::OffersSpread)
    }

    fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// One case's outcome.
#[derive(Debug, Serialize)]
pub struct Run {
    case: Case,
    /// Requests the abusers completed, and connections they opened.
    requests: u64,
    connections: u64,
    /// Answers by status (0: the connection closed without one).
    statuses: Vec<(u16, u64)>,
    /// The relay's RSS (KiB) and open descriptors before, at most during, and 2 s after
    /// the abuse.
    rss_kib: [u64; 3],
    fds: [u64; 3],
    /// The most HTTP connections and pending sessions the relay held.
    most_connections: u64,
    most_pending: u64,
    /// Connections and offers the relay refused for its limits, during the case.
    connections_refused: u64,
    offers_refused: u64,
    /// The viewer that joined 1 s in: its answer's status and time, and what it got.
    viewer_status: u16,
    viewer_answer_ms: f64,
    viewer_packets: u64,
    viewer_gaps: u64,
}

impl Run {
    /// The honest viewer was answered and got every packet, or was refused with 429 as
    /// every pending session the relay allows was taken (see
    /// [`Case::may_fill_the_pending_sessions`]).
    fn viewer_unhurt(&self) -> bool {
        let watched = self.viewer_status == 201 && self.viewer_gaps == 0 && self.viewer_packets > 0;
        let pool_full = self.case.may_fill_the_pending_sessions()
            && self.viewer_status == 429
            // The cases' relay has the default limits.
            && self.most_pending >= Config::default().webrtc_max_pending_sessions as u64;
        watched || pool_full
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !args.relay.exists() {
        bail!(
            "no relay binary at {} (build it with `cargo build --release -p relay`, or pass --relay)",
            args.relay.display()
        );
    }
    if args.seconds < 2.0 || args.threads == 0 {
        bail!("each case lasts at least 2 s (the viewer joins 1 s in), with a thread at least");
    }
    let host = host();
    eprintln!(
        "relay-bench http-abuse: {} on {} cores ({}, kernel {}), {} s per case",
        args.relay.display(),
        host.cores,
        host.cpu,
        host.kernel,
        args.seconds
    );
    raise_open_files()?;
    let config = Config {
        log_level: LogLevel::Warn,
        paths: paths([(PATH, demo())]),
        pprof_address: match args.heap_profiles {
            Some(_) => Some(free_port()?),
            None => None,
        },
        ..loopback(1)
    };
    let relay = Launch::new(&args.relay, &config).start()?;
    let pprof = match (&args.heap_profiles, config.pprof_address) {
        (Some(dir), Some(address)) => {
            std::fs::create_dir_all(dir)?;
            Some((dir.clone(), address))
        }
        _ => None,
    };
    let driver = Driver::start(args.cases.len(), None)?;
    let mut runs = Vec::new();
    let mut sinks = 0;
    for &case in &args.cases {
        // Pending sessions of the last case expire (webrtcHandshakeTimeout), idle
        // connections are cut (readTimeout): each case starts from a quiet relay.
        settle(&relay)?;
        let run = run_case(args, case, &relay, &driver, &mut sinks)
            .with_context(|| format!("{case}; relay log:\n{}", relay.log_tail()))?;
        if let (Some((dir, address)), Case::OffersOne | Case::OffersSpread) = (&pprof, case) {
            save_heap_profile(address, &dir.join(format!("{case}.pb.gz")))?;
        }
        progress(&format!(
            "{case}: {} requests, rss {} -> {} KiB, viewer {} in {:.0} ms, {} packets, {} gaps",
            run.requests,
            run.rss_kib[0],
            run.rss_kib[1],
            run.viewer_status,
            run.viewer_answer_ms,
            run.viewer_packets,
            run.viewer_gaps
        ));
        runs.push(run);
    }
    driver.stop();
    drop(relay);
    progress_done();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.case.name(),
                r.requests.to_string(),
                format!("{:?}", r.statuses),
                format!("{}/{}/{}", r.rss_kib[0], r.rss_kib[1], r.rss_kib[2]),
                format!("{}/{}/{}", r.fds[0], r.fds[1], r.fds[2]),
                r.most_connections.to_string(),
                r.most_pending.to_string(),
                format!("{}/{}", r.connections_refused, r.offers_refused),
                format!("{} {:.0}ms", r.viewer_status, r.viewer_answer_ms),
                format!("{}/{}", r.viewer_packets, r.viewer_gaps),
            ]
        })
        .collect();
    print_table(
        &[
            "case",
            "requests",
            "statuses",
            "rss KiB b/max/a",
            "fds b/max/a",
            "conns",
            "pending",
            "refused c/o",
            "viewer",
            "pkts/gaps",
        ],
        &rows,
    );
    let json = serde_json::json!({
        "bench": "http-abuse",
        "host": host,
        "relay": args.relay,
        "seconds": args.seconds,
        "runs": runs,
    });
    println!("{json}");
    if let Some(r) = runs.iter().find(|r| !r.viewer_unhurt()) {
        bail!("{}: the honest viewer was hurt: {r:?}", r.case);
    }
    Ok(())
}

/// What the abusers of a case count.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    connections: AtomicU64,
    /// By status: 0 (none), then 200, 201, 400, 404, 429, 431, 503, other.
    statuses: [AtomicU64; 9],
}

const STATUSES: [u16; 9] = [0, 200, 201, 400, 404, 429, 431, 503, 999];

impl Tally {
    fn count(&self, status: u16) {
        self.requests
            .fetch_add(u64::from(status != 0), Ordering::Relaxed);
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.statuses[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The relay's counters one case reads before and after.
struct Sample {
    rss_kib: u64,
    fds: u64,
    connections: u64,
    pending: u64,
    connections_refused: u64,
    offers_refused: u64,
}

impl Sample {
    fn take(relay: &RelayProcess) -> anyhow::Result<Sample> {
        let text = relay.metrics()?;
        let m = |selector: &str| exported(&text, selector).map(|v| v as u64);
        let refused = |listener_reason: &str| {
            m(&format!(
                "relay_http_connections_refused_total{{{listener_reason}}}"
            ))
        };
        Ok(Sample {
            rss_kib: procfs::rss_kib(relay.pid())?,
            fds: std::fs::read_dir(format!("/proc/{}/fd", relay.pid()))?.count() as u64,
            connections: m(r#"relay_http_connections{listener="webrtc"}"#)?,
            pending: m("relay_pending_sessions")?,
            connections_refused: refused(r#"listener="webrtc",reason="address""#)?
                + refused(r#"listener="webrtc",reason="total""#)?,
            offers_refused: m(r#"relay_pending_refused_total{reason="address"}"#)?
                + m(r#"relay_pending_refused_total{reason="total"}"#)?,
        })
    }
}

/// Waits (bounded) until the relay holds no HTTP connection and no pending session.
fn settle(relay: &RelayProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = Sample::take(relay)?;
        if s.connections == 0 && s.pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the relay still holds {} connections and {} pending sessions",
                s.connections,
                s.pending
            );
        }
        progress(&format!(
            "settling: {} connections, {} pending sessions",
            s.connections, s.pending
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn run_case(
    args: &Args,
    case: Case,
    relay: &RelayProcess,
    driver: &Driver,
    sinks: &mut usize,
) -> anyhow::Result<Run> {
    let server: SocketAddr = relay.http.trim_start_matches("http://").parse()?;
    let before = Sample::take(relay)?;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let abusers = start_abuse(args, case, server, &tally, &stop, end)?;
    let (mut most_rss, mut most_fds, mut most_conns, mut most_pending) = (0, 0, 0, 0);
    let mut observe = |relay: &RelayProcess| -> anyhow::Result<()> {
        let s = Sample::take(relay)?;
        most_rss = most_rss.max(s.rss_kib);
        most_fds = most_fds.max(s.fds);
        most_conns = most_conns.max(s.connections);
        most_pending = most_pending.max(s.pending);
        Ok(())
    };
    let joins = Instant::now() + Duration::from_secs(1);
    while Instant::now() < joins {
        observe(relay)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The honest viewer: its offer goes through the abuse on a connection of its own.
    let offering = Offering::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), true)?;
    let agent = http::agent(Duration::from_secs(10));
    let asked = Instant::now();
    let reply = whep::post_offer(&agent, &whep::endpoint(&relay.http, PATH), offering.sdp())?;
    let viewer_answer_ms = asked.elapsed().as_secs_f64() * 1e3;
    // The driver numbers its sinks in the order they came.
    let sink = (reply.status == 201).then_some(*sinks);
    if sink.is_some() {
        driver.add(offering.accept(&reply.body)?);
        *sinks += 1;
    } else {
        progress(&format!(
            "{case}: the viewer got {}: {}",
            reply.status, reply.body
        ));
    }
    while Instant::now() < end {
        observe(relay)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for a in abusers {
        let _ = a.join();
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = Sample::take(relay)?;
    let got = |read: fn(&crate::sink::SinkCounters) -> u64| {
        sink.map_or(0, |i| read(&driver.counters.sinks[i]))
    };
    let (viewer_packets, viewer_gaps) = (
        got(|c| c.decrypted.load(Ordering::Relaxed)),
        got(|c| c.gaps.load(Ordering::Relaxed)),
    );
    if let Some(i) = sink {
        driver.remove(i);
    }
    Ok(Run {
        case,
        requests: tally.requests.load(Ordering::Relaxed),
        connections: tally.connections.load(Ordering::Relaxed),
        statuses: STATUSES
            .iter()
            .zip(&tally.statuses)
            .map(|(&s, n)| (s, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        rss_kib: [before.rss_kib, most_rss, after.rss_kib],
        fds: [before.fds, most_fds, after.fds],
        most_connections: most_conns,
        most_pending,
        connections_refused: after.connections_refused - before.connections_refused,
        offers_refused: after.offers_refused - before.offers_refused,
        viewer_status: reply.status,
        viewer_answer_ms,
        viewer_packets,
        viewer_gaps,
    })
}

/// The abusers' address number `i`: 127.0.0.2 and up.
fn abuser(i: usize) -> IpAddr {
    let n = 2 + i;
    IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, n as u8))
}

/// Starts the threads of `case`; they stop at `end` or when `stop` is set.
fn start_abuse(
    args: &Args,
    case: Case,
    server: SocketAddr,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
    end: Instant,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let per_address = Config::default().http_max_connections_per_ip;
    let spawn = |name: String, work: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name).spawn(work)
    };
    let mut threads = Vec::new();
    match case {
        Case::IdleOne | Case::IdleSpread | Case::Slow => {
            let spread = case != Case::IdleOne;
            let (n, tally, stop) = (args.connections, tally.clone(), stop.clone());
            let slow = case == Case::Slow;
            threads.push(spawn(
                "holders".into(),
                Box::new(move || hold(n, spread, per_address, slow, server, &tally, &stop, end)),
            )?);
        }
        _ => {
            let offer = crate::sink::Offering::new()?.sdp().to_owned();
            for t in 0..args.threads {
                let (tally, stop, offer) = (tally.clone(), stop.clone(), offer.clone());
                // Offers from many addresses: thread t takes addresses t, t + threads...
                let addresses: Vec<IpAddr> = match case {
                    Case::OffersSpread => (t..200).step_by(args.threads).map(abuser).collect(),
                    _ => vec![abuser(0)],
                };
                threads.push(spawn(
                    format!("abuser{t}"),
                    Box::new(move || flood(case, &addresses, &offer, server, &tally, &stop, end)),
                )?);
            }
        }
    }
    Ok(threads)
}

/// Opens `n` connections (from one address, or `per_address` each from as many as
/// needed) and holds them until `end`; slow ones send a header a byte at a time.
#[allow(clippy::too_many_arguments)]
fn hold(
    n: usize,
    spread: bool,
    per_address: usize,
    slow: bool,
    server: SocketAddr,
    tally: &Tally,
    stop: &AtomicBool,
    end: Instant,
) {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        if stop.load(Ordering::Relaxed) || Instant::now() >= end {
            break;
        }
        let from = abuser(if spread { i / per_address } else { 0 });
        if let Ok(s) = connect(from, server) {
            tally.connections.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_nonblocking(true);
            held.push(s);
        }
    }
    const HEADER: &[u8] = b"GET /demo/ HTTP/1.1\r\nHost: relay\r\nX-Slow: ";
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if slow {
            let byte = HEADER.get(sent).copied().unwrap_or(b'a');
            for s in &mut held {
                let _ = s.write(&[byte]);
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the relay did with them: closed (refused or cut off) or still open.
    let mut buf = [0u8; 512];
    for s in &mut held {
        let status = match s.read(&mut buf) {
            Ok(n) if n > 12 => parse_status(&buf[..n]).unwrap_or(999),
            Ok(_) => 0,
            Err(_) => continue,
        };
        tally.count(status);
    }
}

/// One request after another until `end`, over kept-alive connections or new ones as
/// `case` says, from `addresses` in turn.
fn flood(
    case: Case,
    addresses: &[IpAddr],
    offer: &str,
    server: SocketAddr,
    tally: &Tally,
    stop: &AtomicBool,
    end: Instant,
) {
    let big = format!(
        "GET /{PATH}/ HTTP/1.1\r\nHost: relay\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let request = match case {
        Case::BigHeaders => big,
        Case::GetKeepAlive | Case::GetNewConnections => {
            format!("GET /{PATH}/ HTTP/1.1\r\nHost: relay\r\n\r\n")
        }
        Case::BadOffers => post("this is not SDP\r\n"),
        Case::OffersOne | Case::OffersSpread => post(offer),
        _ => format!(
            "DELETE /{PATH}/whep/00000000000000000000000000000000 HTTP/1.1\r\nHost: relay\r\n\r\n"
        ),
    };
    let keep_alive = !matches!(case, Case::BigHeaders | Case::GetNewConnections);
    let mut connection: Option<BufReader<TcpStream>> = None;
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if connection.is_none() {
            let from = addresses[next % addresses.len()];
            next += 1;
            match connect(from, server) {
                Ok(s) => {
                    tally.connections.fetch_add(1, Ordering::Relaxed);
                    connection = Some(BufReader::new(s));
                }
                Err(_) => {
                    tally.count(0);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let c = connection.as_mut().expect("connected above");
        match exchange(c, request.as_bytes()) {
            Ok((status, close)) => {
                tally.count(status);
                if close || !keep_alive || addresses.len() > 1 {
                    connection = None;
                }
            }
            Err(_) => {
                tally.count(0);
                connection = None;
            }
        }
    }
}

fn post(body: &str) -> String {
    format!(
        "POST /{PATH}/whep HTTP/1.1\r\nHost: relay\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` and reads its answer: the status, and whether the relay closes.
fn exchange(c: &mut BufReader<TcpStream>, request: &[u8]) -> io::Result<(u16, bool)> {
    c.get_mut().write_all(request)?;
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = parse_status(line.as_bytes()).unwrap_or(999);
    let (mut length, mut close) = (0, false);
    loop {
        line.clear();
        c.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        close |= l == "connection: close";
    }
    io::copy(&mut c.by_ref().take(length), &mut io::sink())?;
    Ok((status, close))
}

fn parse_status(response: &[u8]) -> Option<u16> {
    std::str::from_utf8(response.get(9..12)?).ok()?.parse().ok()
}

/// A TCP connection to `server` from address `from`.
fn connect(from: IpAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(2))?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// The tool holds thousands of connections: its soft open files limit goes to the hard.
fn raise_open_files() -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !ok {
        bail!(
            "cannot raise the open files limit: {}",
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// A loopback address with a port free now, for the relay's pprof listener (whose
/// address the relay logs at info level only).
fn free_port() -> io::Result<SocketAddr> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

fn save_heap_profile(address: &SocketAddr, to: &std::path::Path) -> anyhow::Result<()> {
    let agent = http::agent(Duration::from_secs(60));
    let mut response = agent
        .get(format!("http://{address}/debug/pprof/heap"))
        .call()
        .context("the heap profile")?;
    let mut body = Vec::new();
    response.body_mut().as_reader().read_to_end(&mut body)?;
    std::fs::write(to, body)?;
    progress(&format!("heap profile: {}", to.display()));
    Ok(())
}
