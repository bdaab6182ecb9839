//! `relay check-config` and `relay serve` accept the same files: every example config in
//! the repository (relay.yml, its commented example, every YAML block of README.md and
//! docs/*.md) and a set of bad ones go to both commands of the real binary. Accepted
//! files must serve; refused ones must be refused by both with the same message, which
//! names the key at fault.
//!
//! A YAML block in the docs that is not a whole config is marked ```` ```yaml fragment ````
//! and left out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay_testkit::tempdir::TempDir;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// An rtpSDP relay reads, as a YAML block under a path's keys.
const SDP: &str = "|\n      v=0\n      o=- 0 0 IN IP4 127.0.0.1\n      s=-\n      t=0 0\n      \
                   m=video 5004 RTP/AVP 96\n      a=rtpmap:96 H264/90000\n";

/// One config file tried with both commands.
struct Case {
    name: String,
    /// What check-config reads.
    text: String,
    /// What serve runs: `text`, or for a repository example, `text` on free loopback
    /// ports.
    serve_text: String,
    /// Where serve answers HTTP once it runs.
    http: SocketAddr,
    expect: Expect,
}

enum Expect {
    Accepted,
    /// Refused by both, naming this key (its YAML path) first on a line of the message.
    Refused(&'static str),
}

/// What a command made of a file.
#[derive(Debug)]
enum Outcome {
    /// check-config said it is valid, or serve answered HTTP; the paths it lists.
    Accepted(Vec<String>),
    /// It exited with this code and wrote this to stderr.
    Refused(Option<i32>, String),
}

#[test]
fn check_config_and_serve_agree_on_every_example_and_bad_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = TempDir::new("config-agreement");
    let mut ports = Ports::default();
    let mut cases = Vec::new();
    let examples = examples(&root);
    assert!(
        examples.iter().any(|(name, _)| name.starts_with("docs/")),
        "no YAML example found in docs/: {:?}",
        examples.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, text) in examples {
        let http = ports.tcp();
        let serve_text = on_free_ports(&text, http, &mut ports);
        cases.push(Case {
            name,
            text,
            serve_text,
            http,
            expect: Expect::Accepted,
        });
    }
    cases.extend(hand_written(&mut ports));
    // Every port is picked before any relay starts, so no two cases get the same one.
    drop(ports);

    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let dir = dir.path();
                scope.spawn(move || judge(case, &dir.join(format!("case{i}"))))
            })
            .collect();
        runs.into_iter()
            .filter_map(|run| run.join().unwrap().err())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} configs:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Runs both commands on `case`; an error says how they disagree or differ from what
/// was expected.
fn judge(case: &Case, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("relay.yml");
    std::fs::write(&file, &case.text).unwrap();
    let serve_file = if case.serve_text == case.text {
        file.clone()
    } else {
        let serve_file = dir.join("serve.yml");
        std::fs::write(&serve_file, &case.serve_text).unwrap();
        serve_file
    };
    let checked = check_config(&file);
    let served = serve(&serve_file, case.http);
    let fail = |why: &str| {
        Err(format!(
            "{}: {why}\n  check-config: {checked:?}\n  serve: {served:?}\n--- file:\n{}",
            case.name, case.text
        ))
    };
    match (&case.expect, &checked, &served) {
        (Expect::Accepted, Outcome::Accepted(checked_paths), Outcome::Accepted(served_paths)) => {
            if checked_paths != served_paths {
                return fail("check-config lists other paths than serve serves");
            }
        }
        // Serving with XDP needs privileges and an interface a test cannot count on; what
        // may fail then is XDP, never the config.
        (Expect::Accepted, Outcome::Accepted(_), Outcome::Refused(Some(1), why))
            if uses_xdp(&case.serve_text) =>
        {
            if !why.to_lowercase().contains("xdp") || why.contains("config file") {
                return fail("serve refused an XDP example for something else than XDP");
            }
        }
        (Expect::Accepted, _, _) => return fail("an example must be accepted by both"),
        (
            Expect::Refused(key),
            Outcome::Refused(Some(1), checked_why),
            Outcome::Refused(Some(1), served_why),
        ) => {
            if checked_why != served_why {
                return fail("check-config and serve refuse it with different messages");
            }
            if !names_key(checked_why, key) {
                return fail(&format!("the message does not name {key}"));
            }
        }
        (Expect::Refused(_), _, _) => return fail("both must refuse it, with exit code 1"),
    }
    Ok(())
}

/// Whether `message` names `key` as a problem's: `key: ` at the start of a line or
/// after another `: ` (the file's name, or a YAML parser's message).
fn names_key(message: &str, key: &str) -> bool {
    let named = format!("{key}: ");
    message.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with(&named) || line.contains(&format!(": {named}"))
    })
}

fn uses_xdp(text: &str) -> bool {
    relay::config::Config::from_yaml(text).is_ok_and(|c| c.xdp_interface.is_some())
}

fn check_config(file: &Path) -> Outcome {
    let out = Command::new(RELAY)
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run relay check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Outcome::Refused(
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into(),
        );
    }
    assert!(
        stdout.starts_with(&format!("{} is valid", file.display())),
        "{stdout}"
    );
    // "  path 'cam1': source demo"
    let paths = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("path '")?.split_once('\''))
        .map(|(name, _)| name.to_owned())
        .collect();
    Outcome::Accepted(paths)
}

/// Starts `relay serve` with `file` and waits until it answers HTTP on `http` (then kills
/// it) or exits.
fn serve(file: &Path, http: SocketAddr) -> Outcome {
    let mut child = Command::new(RELAY)
        .args(["serve", "--config"])
        .arg(file)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start relay serve");
    let stdout = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        // "relay: watch 'cam1' at http://127.0.0.1:8889/cam1/"
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                l.strip_prefix("relay: watch '")?
                    .split_once('\'')
                    .map(|(n, _)| n.to_owned())
            })
            .collect::<Vec<String>>()
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if answers_http(http) {
            break None;
        }
        // Not a measure of anything: a relay that neither serves nor exits is stuck.
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: relay serve neither served nor exited", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match exited {
        Some(status) => Outcome::Refused(status.code(), stderr.join().unwrap()),
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
            let _ = stderr.join();
            Outcome::Accepted(stdout.join().unwrap())
        }
    }
}

/// Whether an HTTP server answers at `address` (any status will do).
fn answers_http(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = b"GET / HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 9];
    stream.write_all(request).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 ")
}

/// Every example config of the repository, by where it is written.
fn examples(root: &Path) -> Vec<(String, String)> {
    let relay_yml = std::fs::read_to_string(root.join("relay.yml")).unwrap();
    // relay.yml ends with a commented example of `paths`.
    let commented: String = relay_yml
        .lines()
        .skip_while(|l| !l.starts_with("# For example:"))
        .skip(1)
        .map_while(|l| l.strip_prefix('#'))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    assert!(commented.contains("paths:"), "relay.yml's example moved");
    let mut examples = vec![
        ("relay.yml".to_owned(), relay_yml),
        ("relay.yml, its example".to_owned(), commented),
    ];
    let mut markdown = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            markdown.push(path.strip_prefix(root).unwrap().to_owned());
        }
    }
    markdown.sort();
    for file in markdown {
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        examples.extend(
            yaml_blocks(&text)
                .into_iter()
                .map(|(line, block)| (format!("{}:{line}", file.display()), block)),
        );
    }
    examples
}

/// The ```yaml (or ```yml) blocks of a Markdown text that are not marked `fragment`,
/// with the line each starts on.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let yaml = matches!(words.next(), Some("yaml" | "yml"));
        let fragment = words.any(|w| w == "fragment");
        let block: String = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.trim_start().starts_with("```"))
            .map(|l| format!("{l}\n"))
            .collect();
        if yaml && !fragment {
            blocks.push((number + 1, block));
        }
    }
    blocks
}

/// `text` with its HTTP listener on `http`, its metrics, media port and `udp+rtp://`
/// sources on free loopback ports, so that it runs beside anything else; `text` itself
/// if it is not a YAML mapping.
fn on_free_ports(text: &str, http: SocketAddr, ports: &mut Ports) -> String {
    use serde_yaml_ng::{Mapping, Value};
    let Ok(Value::Mapping(mut config)) = serde_yaml_ng::from_str::<Value>(text) else {
        return text.to_owned();
    };
    config.insert("webrtcAddress".into(), http.to_string().into());
    config.insert("metricsAddress".into(), "127.0.0.1:0".into());
    // Not port 0: XDP needs a fixed one.
    config.insert(
        "webrtcLocalUDPAddress".into(),
        ports.udp().to_string().into(),
    );
    let mut on_free_port = |path: &mut Mapping| {
        let source = path.get("source").and_then(Value::as_str).unwrap_or("");
        if source.starts_with("udp+rtp://") {
            path.insert("source".into(), format!("udp+rtp://{}", ports.udp()).into());
        }
    };
    if let Some(Value::Mapping(defaults)) = config.get_mut("pathDefaults") {
        on_free_port(defaults);
    }
    if let Some(Value::Mapping(paths)) = config.get_mut("paths") {
        for path in paths.values_mut() {
            if let Value::Mapping(path) = path {
                on_free_port(path);
            }
        }
    }
    serde_yaml_ng::to_string(&config).unwrap()
}

/// The configs the issue found the two commands disagreeing on, and others that either
/// accepts or refuses, each with the key its refusal must name.
fn hand_written(ports: &mut Ports) -> Vec<Case> {
    let (udp1, udp2) = (ports.udp(), ports.udp());
    let rtp =
        |name: &str, source: &str| format!("  {name}:\n    source: {source}\n    rtpSDP: {SDP}");
    let refused: Vec<(&str, &str, String)> = vec![
        // What the issue found.
        (
            "a source relay cannot read",
            "paths.cam1.source",
            "paths:\n  cam1:\n    source: rtmp://cam.local/live\n".into(),
        ),
        (
            "source on port 0",
            "paths.cam1.source",
            format!("paths:\n{}", rtp("cam1", "udp+rtp://0.0.0.0:0")),
        ),
        // Sources and their rtpSDP.
        (
            "multicast source",
            "paths.cam1.source",
            format!("paths:\n{}", rtp("cam1", "udp+rtp://238.0.0.1:5004")),
        ),
        (
            "source without rtpSDP",
            "paths.cam1.rtpSDP",
            format!("paths:\n  cam1:\n    source: udp+rtp://{udp1}\n"),
        ),
        (
            "rtpSDP of a codec relay lacks",
            "paths.cam1.rtpSDP",
            format!("paths:\n{}", rtp("cam1", &format!("udp+rtp://{udp1}")))
                .replace("H264", "MP4V-ES"),
        ),
        (
            "bad source in pathDefaults",
            "pathDefaults.source",
            "pathDefaults:\n  source: srt://cam.local:8890\npaths:\n  cam1:\n".into(),
        ),
        // Listeners that would take one another's port.
        (
            "two sources on one port",
            "paths.cam2.source",
            format!(
                "paths:\n{}{}",
                rtp("cam1", &format!("udp+rtp://{udp1}")),
                rtp("cam2", &format!("udp+rtp://:{}", udp1.port()))
            ),
        ),
        (
            "a source on the media port",
            "paths.cam1.source",
            format!(
                "webrtcLocalUDPAddress: {udp2}\npaths:\n{}",
                rtp("cam1", &format!("udp+rtp://{udp2}"))
            ),
        ),
        (
            "metrics on the HTTP port",
            "metricsAddress",
            "metrics: yes\nmetricsAddress: '{http}'\n".into(),
        ),
        // XDP without a fixed media port: refused before anything needs privileges.
        (
            "XDP on port 0",
            "webrtcLocalUDPAddress",
            "xdpInterface: lo\nwebrtcLocalUDPAddress: 127.0.0.1:0\n".into(),
        ),
        (
            "no address to offer viewers",
            "webrtcAdditionalHosts",
            "webrtcIPsFromInterfaces: no\nwebrtcLocalUDPAddress: ':0'\n".into(),
        ),
        // What both refused before.
        (
            "unknown key",
            "paths.cam1.colour",
            "paths:\n  cam1:\n    source: demo\n    colour: red\n".into(),
        ),
        ("not a boolean", "metrics", "metrics: maybe\n".into()),
        ("rate 0", "xdpSTUNRate", "xdpSTUNRate: 0\n".into()),
        (
            "bad listen address",
            "webrtcAddress",
            "webrtcAddress: '8889'\n".into(),
        ),
        (
            "path named like the WHEP endpoint",
            "paths.cam1/whep",
            "paths:\n  cam1/whep:\n    source: demo\n".into(),
        ),
    ];
    let accepted: Vec<(&str, String)> = vec![
        // A URL's empty path: the same address.
        (
            "source with a trailing /",
            format!("paths:\n{}", rtp("cam1", &format!("udp+rtp://{udp1}/"))),
        ),
        (
            "paths inheriting their source",
            "pathDefaults:\n  source: demo\npaths:\n  a:\n  b:\n    maxReaders: 1\n".into(),
        ),
        // The metrics have a listener of their own.
        (
            "a path named metrics",
            "metrics: yes\npaths:\n  metrics:\n    source: demo\n".into(),
        ),
    ];
    let cases = refused
        .into_iter()
        .map(|(name, key, body)| (name, Expect::Refused(key), body))
        .chain(
            accepted
                .into_iter()
                .map(|(n, body)| (n, Expect::Accepted, body)),
        );
    cases
        .map(|(name, expect, body)| {
            let http = ports.tcp();
            // Loopback, free ports, unless the case is about those keys.
            let mut text = String::new();
            if !body.contains("webrtcAddress:") {
                text.push_str(&format!("webrtcAddress: '{http}'\n"));
            }
            if !body.contains("webrtcLocalUDPAddress:") {
                text.push_str("webrtcLocalUDPAddress: 127.0.0.1:0\n");
            }
            if !body.contains("metricsAddress:") {
                text.push_str("metricsAddress: 127.0.0.1:0\n");
            }
            text.push_str(&body.replace("{http}", &http.to_string()));
            Case {
                name: name.to_owned(),
                serve_text: text.clone(),
                text,
                http,
                expect,
            }
        })
        .collect()
}

/// Free loopback ports, held until dropped so that none is handed out twice.
#[derive(Default)]
struct Ports {
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
}

impl Ports {
    fn tcp(&mut self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        self.tcp.push(listener);
        address
    }

    fn udp(&mut self) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        self.udp.push(socket);
        address
    }
}
