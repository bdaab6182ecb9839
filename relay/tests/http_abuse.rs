//! HTTP abuse against the real relay: connections held open by one address or many
//! (each listener holds at most `httpMaxConnectionsPerIP` of one address and
//! `httpMaxConnections` in all), while an honest viewer from another address still gets
//! its answer and the whole stream. `relay-bench http-abuse` measures the same floods
//! over time (docs/benchmarks.md); these check what holds whatever the timing.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use relay::config::Config;
use relay_testkit::process::RelayProcess;
use relay_testkit::viewer::Viewer;
use relay_testkit::wait::eventually;

use common::{assert_demo_stream, demo_config, start};

/// Long enough that no connection of these tests is cut off by `readTimeout`.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn config(per_address: usize, total: usize) -> Config {
    Config {
        read_timeout: READ_TIMEOUT,
        http_max_connections_per_ip: per_address,
        http_max_connections: total,
        ..demo_config()
    }
}

/// A TCP connection to the relay's WHEP listener from `from`, which sends nothing.
fn connect_from(relay: &RelayProcess, from: Ipv4Addr) -> TcpStream {
    let server: SocketAddr = relay.http.trim_start_matches("http://").parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from.into(), 0).into())
        .unwrap();
    socket.connect(&server.into()).unwrap();
    let stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// What the relay wrote on `stream` before it closed it.
fn refusal(mut stream: TcpStream) -> String {
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) => text,
        Err(e) => panic!("the relay kept a connection past its limit open: {e} (read {text:?})"),
    }
}

fn metric(relay: &RelayProcess, selector: &str) -> f64 {
    relay.metric(selector).unwrap()
}

/// Waits (bounded) until the WHEP listener holds `n` connections.
fn wait_open(relay: &RelayProcess, n: usize) {
    let open = r#"relay_http_connections{listener="webrtc"}"#;
    assert!(
        eventually(Duration::from_secs(10), || metric(relay, open) == n as f64),
        "the relay holds {} connections, not {n}",
        metric(relay, open)
    );
}

/// Watches the demo for two seconds from 127.0.0.1: answered 201, the stream whole.
fn watch(relay: &RelayProcess) {
    let mut viewer = Viewer::connect(&relay.http, "demo");
    viewer.run_for(Duration::from_secs(2));
    assert!(viewer.connected, "ICE and DTLS completed");
    assert!(
        assert_demo_stream(&viewer) > 30,
        "the viewer gets the stream"
    );
    assert_eq!(viewer.delete(), 200);
}

#[test]
fn an_address_past_its_connection_limit_is_refused_and_others_still_watch() {
    const LIMIT: usize = 8;
    let relay = start(&config(LIMIT, 0));
    let abuser = Ipv4Addr::new(127, 0, 0, 2);
    let idle: Vec<TcpStream> = (0..LIMIT).map(|_| connect_from(&relay, abuser)).collect();
    // Accepted in the order they connected: this one after the LIMIT held ones.
    let text = refusal(connect_from(&relay, abuser));
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert!(text.contains("httpMaxConnectionsPerIP"), "{text}");
    wait_open(&relay, LIMIT);
    assert_eq!(
        metric(
            &relay,
            r#"relay_http_connections_refused_total{listener="webrtc",reason="address"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &relay,
            r#"relay_http_connections_most_of_one_ip{listener="webrtc"}"#
        ),
        LIMIT as f64
    );

    // Another address is served, whole.
    watch(&relay);

    // Closed connections give their places back.
    drop(idle);
    wait_open(&relay, 0);
    let (status, _) = get_page_from(&relay, abuser);
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[test]
fn past_the_total_connection_limit_a_freed_place_is_taken_again() {
    let relay = start(&config(4, 6));
    let mut idle: Vec<TcpStream> = [2, 2, 2, 2, 3, 3]
        .into_iter()
        .map(|last| connect_from(&relay, Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    let text = refusal(connect_from(&relay, Ipv4Addr::LOCALHOST));
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("(httpMaxConnections)"), "{text}");
    wait_open(&relay, 6);
    assert_eq!(
        metric(
            &relay,
            r#"relay_http_connections_refused_total{listener="webrtc",reason="total"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&relay, r#"relay_http_connections_limit{scope="total"}"#),
        6.0
    );
    // The metrics have a listener, and limits, of their own: a full WHEP listener
    // does not hide them (the scrapes above went through).

    drop(idle.pop());
    wait_open(&relay, 5);
    watch(&relay);
}

#[test]
fn three_thousand_idle_connections_do_not_stop_a_viewer() {
    const IDLE: usize = 3000;
    raise_own_open_files();
    let relay = start(&Config {
        read_timeout: READ_TIMEOUT,
        ..demo_config()
    });
    let per_address = Config::default().http_max_connections_per_ip;
    // From as many addresses as the default per-address limit needs, all held.
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            let last = 2 + (i / per_address) as u8;
            connect_from(&relay, Ipv4Addr::new(127, 0, 0, last))
        })
        .collect();
    wait_open(&relay, IDLE);
    watch(&relay);
    assert_eq!(
        metric(
            &relay,
            r#"relay_http_connections_refused_total{listener="webrtc",reason="total"}"#
        ) + metric(
            &relay,
            r#"relay_http_connections_refused_total{listener="webrtc",reason="address"}"#
        ),
        0.0,
        "none refused below the limits"
    );
    drop(idle);
}

/// `GET /demo/` from `from` on a connection of its own: the status line and the body.
fn get_page_from(relay: &RelayProcess, from: Ipv4Addr) -> (String, String) {
    use std::io::Write;
    let mut stream = connect_from(relay, from);
    stream
        .write_all(b"GET /demo/ HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (status, body) = text.split_once("\r\n").unwrap_or((&text, ""));
    (status.to_owned(), body.to_owned())
}

/// This test process holds thousands of connections too.
fn raise_own_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(limit.rlim_cur > 3500, "open files limit {}", limit.rlim_cur);
}
