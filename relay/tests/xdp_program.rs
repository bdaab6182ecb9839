//! The XDP program in the kernel, on synthetic frames: each test loads it (the verifier
//! checks it), runs frames through `BPF_PROG_TEST_RUN`, and asserts the kernel's verdict
//! and the counters that moved. Nothing is attached to an interface here (see
//! xdp_netns.rs). Needs root.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::os::fd::AsFd;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::netns::require_root;
use common::xdp::{
    admit_clients, datagram, ipv4_header, ipv6_header, load, moved, options, test_run, verdict,
    with_socket, Frame, CLIENT4, CLIENT6, CLIENT_PORT, DTLS, OTHER, RTCP, RTP, STUN, XDP_DROP,
    XDP_PASS, XDP_REDIRECT,
};
use relay::io::xdp::{XdpError, XdpMode, XdpOptions, XdpProgram};
use relay_common::{
    ADMITTED_LEN, ADMITTED_MAP, COUNTERS_MAP, STUN_BUCKETS_MAP, STUN_GLOBAL_MAP, XSK_MAP,
};

#[test]
fn truncated_headers_pass_and_are_counted() {
    let program = load(10, 5);
    let rtp = Frame::v4(RTP).bytes();
    let rtp6 = Frame::v6(RTP).bytes();
    // The kernel runs no frame shorter than an Ethernet header: nothing to classify.
    let error = test_run(program.fd().unwrap(), &rtp[..13], 1).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");

    let cut = [
        (
            "VLAN tag",
            Frame::v4(RTP).tagged(0x8100).bytes()[..16].to_vec(),
        ),
        ("IPv4 header", rtp[..14 + 19].to_vec()),
        ("IPv6 header", rtp6[..14 + 39].to_vec()),
        ("UDP header (IPv4)", rtp[..14 + 20 + 7].to_vec()),
        ("UDP header (IPv6)", rtp6[..14 + 40 + 7].to_vec()),
        // IPv4 options announced (IHL 15: 60 bytes), the frame ends before the UDP header.
        ("IPv4 options", {
            let mut frame = rtp.clone();
            frame[14] = 0x4f;
            frame.truncate(14 + 60);
            frame
        }),
    ];
    for (what, frame) in &cut {
        assert_eq!(verdict(&program, frame), XDP_PASS, "cut in the {what}");
    }
    assert_eq!(
        moved(&program),
        [("passed_truncated", cut.len() as u64)],
        "every cut frame counted as truncated, nothing else"
    );
}

#[test]
fn lengths_that_disagree_with_the_frame_pass_and_are_counted() {
    let mut program = load(10, 5);
    let _socket = with_socket(&mut program);
    // Admitted, so that any slip past the checks would be redirected.
    admit_clients(&program);
    let rtp = Frame::v4(RTP).bytes();
    let rtp6 = Frame::v6(RTP).bytes();
    let with = |frame: &[u8], at: usize, value: u16| {
        let mut frame = frame.to_vec();
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
        frame
    };
    let (ip4_total, ip6_payload, udp4_len, udp6_len) = (14 + 2, 14 + 4, 14 + 20 + 4, 14 + 40 + 4);
    let bad = [
        // The UDP length promises a payload the frame does not have.
        ("first payload byte", rtp[..14 + 20 + 8].to_vec()),
        ("UDP length past the IPv4 packet", with(&rtp, udp4_len, 29)),
        ("UDP length past the IPv6 packet", with(&rtp6, udp6_len, 29)),
        ("UDP length under its header", with(&rtp, udp4_len, 7)),
        ("UDP length 0", with(&rtp6, udp6_len, 0)),
        (
            "IPv4 total length past the frame",
            with(&rtp, ip4_total, 49),
        ),
        (
            "IPv4 total length under the UDP length",
            with(&rtp, ip4_total, 47),
        ),
        (
            "IPv4 total length under its header",
            with(&rtp, ip4_total, 19),
        ),
        (
            "IPv6 payload length past the frame",
            with(&rtp6, ip6_payload, 29),
        ),
        (
            "IPv6 payload length under the UDP length",
            with(&rtp6, ip6_payload, 27),
        ),
    ];
    for (what, frame) in &bad {
        assert_eq!(verdict(&program, frame), XDP_PASS, "{what}");
    }
    // Ethernet padding after the packet, and a UDP datagram shorter than its packet,
    // are well formed.
    let mut padded = rtp.clone();
    padded.extend([0; 18]);
    let short_udp = with(&rtp6, udp6_len, 8 + 1);
    for frame in [&rtp, &rtp6, &padded, &short_udp] {
        assert_eq!(verdict(&program, frame), XDP_REDIRECT);
    }
    assert_eq!(
        moved(&program),
        [
            ("redirected_rtp", 4),
            ("passed_bad_length", bad.len() as u64)
        ]
    );
}

#[test]
fn traffic_that_is_not_ours_passes_untouched() {
    let program = load(10, 5);
    let tcp = {
        let frame = Frame::v4(RTP);
        let udp = frame.udp_header();
        frame.build(0x0800, ipv4_header(CLIENT4, 6, 0, udp.len()), &udp)
    };
    let arp = {
        let mut frame = Frame::v4(RTP).bytes();
        frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        frame
    };
    let not_v4 = {
        let mut frame = Frame::v4(RTP).bytes();
        frame[14] = 0x65; // version 6 in an IPv4 EtherType
        frame
    };
    let not_ours = [
        ("UDP to another port", Frame::v4(RTP).for_port(5353).bytes()),
        (
            "UDP6 to another port",
            Frame::v6(RTP).for_port(5353).bytes(),
        ),
        (
            "tagged UDP to another port",
            Frame::v4(RTP).tagged(0x8100).for_port(53).bytes(),
        ),
        ("TCP to the media port", tcp),
        ("ARP", arp),
        ("IPv4 EtherType, version 6", not_v4),
        // One VLAN tag is followed, a second one is not: such frames stay the kernel's.
        (
            "two VLAN tags",
            Frame::v4(RTP).tagged(0x88a8).tagged(0x8100).bytes(),
        ),
    ];
    for (what, frame) in &not_ours {
        assert_eq!(verdict(&program, frame), XDP_PASS, "{what}");
    }
    assert_eq!(
        moved(&program),
        [("passed_not_ours", not_ours.len() as u64)]
    );
}

#[test]
fn fragments_and_ipv6_extension_headers_pass() {
    let mut program = load(10, 5);
    let _socket = with_socket(&mut program);
    // Admitted, so that any slip past the checks would be redirected.
    let remote4 = SocketAddr::from((CLIENT4, CLIENT_PORT));
    let remote6 = SocketAddr::from((CLIENT6, CLIENT_PORT));
    let mut admission = program.admission().unwrap();
    admission.admit(remote4).unwrap();
    admission.admit(remote6).unwrap();

    let frame = Frame::v4(RTP);
    let udp = frame.udp_header();
    let first = frame.build(0x0800, ipv4_header(CLIENT4, 17, 0x2000, udp.len()), &udp);
    let later = frame.build(0x0800, ipv4_header(CLIENT4, 17, 185, 16), &udp[..16]);
    let last = frame.build(0x0800, ipv4_header(CLIENT4, 17, 370, 16), &udp[..16]);
    for (what, frame) in [("first", &first), ("later", &later), ("last", &last)] {
        assert_eq!(verdict(&program, frame), XDP_PASS, "{what} IPv4 fragment");
    }

    let frame = Frame::v6(RTP);
    let udp = frame.udp_header();
    // Hop-by-hop options (next header 0), then UDP: 8 bytes of header.
    let mut hop_by_hop = vec![17, 0, 1, 4, 0, 0, 0, 0];
    hop_by_hop.extend(&udp);
    let hop_by_hop = frame.build(
        0x86dd,
        ipv6_header(CLIENT6, 0, hop_by_hop.len()),
        &hop_by_hop,
    );
    // A fragment header (44), first fragment, then UDP.
    let mut fragment = vec![17, 0, 0, 1, 0, 0, 0, 42];
    fragment.extend(&udp);
    let fragment = frame.build(0x86dd, ipv6_header(CLIENT6, 44, fragment.len()), &fragment);
    for (what, frame) in [("hop-by-hop", &hop_by_hop), ("fragment", &fragment)] {
        assert_eq!(verdict(&program, frame), XDP_PASS, "IPv6 {what} header");
    }
    // The admitted remotes' plain datagrams are redirected: the headers above made the difference.
    assert_eq!(verdict(&program, &Frame::v4(RTP).bytes()), XDP_REDIRECT);
    assert_eq!(verdict(&program, &Frame::v6(RTP).bytes()), XDP_REDIRECT);
    assert_eq!(
        moved(&program),
        [
            ("redirected_rtp", 2),
            ("passed_fragment", 3),
            ("passed_ipv6_extension", 2)
        ]
    );
}

#[test]
fn admitted_remotes_are_redirected_for_every_class_but_other() {
    let mut program = load(10, 5);
    let _socket = with_socket(&mut program);
    let mut admission = program.admission().unwrap();
    let remote4 = SocketAddr::from((CLIENT4, CLIENT_PORT));
    let remote6 = SocketAddr::from((CLIENT6, CLIENT_PORT));
    admission.admit(remote4).unwrap();
    admission.admit(remote6).unwrap();
    assert!(admission.is_admitted(remote4).unwrap());

    for first in [STUN, DTLS, RTP, RTCP] {
        for frame in [
            Frame::v4(first),
            Frame::v6(first),
            Frame::v4(first).tagged(0x8100),
            Frame::v6(first).tagged(0x88a8),
        ] {
            assert_eq!(
                verdict(&program, &frame.bytes()),
                XDP_REDIRECT,
                "first byte {first:#x} from {} with tags {:x?}",
                frame.source,
                frame.tags
            );
        }
    }
    // Not of a class the relay serves: the kernel's (its socket for the port, or ICMP).
    assert_eq!(verdict(&program, &Frame::v4(OTHER).bytes()), XDP_PASS);
    let empty = Frame::udp(remote6, &[]).bytes();
    assert_eq!(verdict(&program, &empty), XDP_PASS, "empty datagram");
    assert_eq!(
        moved(&program),
        [
            ("redirected_stun", 4),
            ("redirected_dtls", 4),
            ("redirected_rtp", 8),
            ("passed_other_class", 2)
        ]
    );

    // Admission is per address *and* port; revoking takes it back.
    let other_port = Frame::udp(SocketAddr::from((CLIENT4, CLIENT_PORT + 1)), &datagram(RTP));
    assert_eq!(
        verdict(&program, &other_port.bytes()),
        XDP_DROP,
        "same address, other port"
    );
    admission.revoke(remote4).unwrap();
    admission.revoke(remote4).expect("revoking twice is fine");
    assert!(!admission.is_admitted(remote4).unwrap());
    assert_eq!(
        verdict(&program, &Frame::v4(RTP).bytes()),
        XDP_DROP,
        "revoked"
    );
    assert_eq!(
        verdict(&program, &Frame::v6(RTP).bytes()),
        XDP_REDIRECT,
        "still admitted"
    );
}

#[test]
fn unknown_sources_reach_userspace_only_with_stun_within_their_burst() {
    let mut program = load(1, 3);
    let _socket = with_socket(&mut program);
    let fd = program.fd().unwrap();
    for first in [DTLS, RTP, RTCP, OTHER] {
        assert_eq!(
            verdict(&program, &Frame::v4(first).bytes()),
            XDP_DROP,
            "{first:#x}"
        );
    }
    assert_eq!(
        verdict(
            &program,
            &Frame::udp(SocketAddr::from((CLIENT4, 1)), &[]).bytes()
        ),
        XDP_DROP
    );

    // 10 STUN datagrams from one address within microseconds: the burst of 3 gets
    // through, then the source is over its rate (1/s).
    let (last, _) = test_run(fd, &Frame::v4(STUN).bytes(), 10).unwrap();
    assert_eq!(last, XDP_DROP, "the 10th STUN datagram");
    // The bucket is the address's, whatever the port.
    let other_port = Frame::udp(SocketAddr::from((CLIENT4, 1)), &datagram(STUN)).bytes();
    assert_eq!(verdict(&program, &other_port), XDP_DROP);
    // Another address has its own bucket.
    assert_eq!(verdict(&program, &Frame::v6(STUN).bytes()), XDP_REDIRECT);
    let tagged = Frame::udp(SocketAddr::from(([10, 77, 0, 3], 9)), &datagram(STUN)).tagged(0x8100);
    assert_eq!(verdict(&program, &tagged.bytes()), XDP_REDIRECT);
    assert_eq!(
        moved(&program),
        [
            ("redirected_stun", 3 + 2),
            ("dropped_unknown_source", 5),
            ("dropped_stun_rate_limit", 7 + 1)
        ]
    );
}

#[test]
fn unknown_sources_share_a_global_stun_budget() {
    require_root();
    // All unknown sources: 1 a second, 64 at once, split between the 2 queues of
    // `options` (test runs arrive on queue 0): 32 at once, one every 2 s. Each source
    // alone may send far more.
    let mut program = XdpProgram::load(&XdpOptions {
        stun_global_rate: NonZeroU32::new(1).unwrap(),
        stun_global_burst: NonZeroU32::new(64).unwrap(),
        ..options(XdpMode::Native, 1_000, 1_000)
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let _socket = with_socket(&mut program);
    let admitted = SocketAddr::from((CLIENT4, CLIENT_PORT));
    program.admission().unwrap().admit(admitted).unwrap();
    let (share_burst, share_interval_s) = (32, 2);
    // STUN from 1000 addresses never seen, one datagram each: the per-source buckets
    // all let theirs through, the queue's share of the global budget does not.
    let fresh = |i: u32| {
        let source = SocketAddr::from((Ipv4Addr::from(0x0a50_0000 + i), 9));
        Frame::udp(source, &datagram(STUN)).bytes()
    };
    let start = Instant::now();
    let verdicts: Vec<u32> = (0..1_000).map(|i| verdict(&program, &fresh(i))).collect();
    // The same datagram 1000 times more through the kernel's repeat count: a source
    // within its own burst, the budget still spent.
    let (last, _) = test_run(program.fd().unwrap(), &fresh(1_000), 1_000).unwrap();
    let elapsed = start.elapsed().as_secs();
    let redirected = verdicts.iter().filter(|&&v| v == XDP_REDIRECT).count() as u64;
    // The burst first, then at most what the rate refilled meanwhile, however slow the
    // machine: the bound grows with the time the runs took.
    assert_eq!(verdicts[..share_burst], [XDP_REDIRECT; 32]);
    let refilled = elapsed / share_interval_s + 1;
    let counters = moved(&program);
    let redirected_stun = counters.iter().find(|c| c.0 == "redirected_stun");
    let redirected_stun = redirected_stun.map_or(0, |c| c.1);
    assert!(
        redirected_stun <= share_burst as u64 + refilled,
        "{redirected_stun} let through in {elapsed} s: {counters:?}"
    );
    assert!(redirected >= share_burst as u64);
    let dropped = 2_000 - redirected_stun;
    assert_eq!(
        counters,
        [
            ("redirected_stun", redirected_stun),
            ("dropped_stun_global_limit", dropped)
        ]
    );
    if refilled == 1 {
        // Nothing can have refilled in under 2 s: the last of the repeats was dropped.
        assert_eq!(last, XDP_DROP);
    }

    // Admitted remotes pass neither limit: all their datagrams, STUN included, go on.
    for first in [STUN, DTLS, RTP] {
        let frame = Frame::udp(admitted, &datagram(first)).bytes();
        assert_eq!(verdict(&program, &frame), XDP_REDIRECT, "{first:#x}");
    }
    // A source over its own rate is counted there, and spends none of the budget: of
    // a share of 2, one is left for the next source.
    let loud = XdpProgram::load(&XdpOptions {
        stun_global_rate: NonZeroU32::new(1).unwrap(),
        stun_global_burst: NonZeroU32::new(4).unwrap(),
        ..options(XdpMode::Native, 1, 1)
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let start = Instant::now();
    test_run(loud.fd().unwrap(), &fresh(0), 100).unwrap();
    let next = verdict(&loud, &fresh(1));
    // Exact only if no second passed, in which the loud source would get another token.
    if start.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            next, XDP_PASS,
            "the share's second datagram (no socket: passed)"
        );
        assert_eq!(
            moved(&loud),
            [("dropped_stun_rate_limit", 99), ("passed_no_socket", 2)]
        );
    }
}

#[test]
fn stun_buckets_refill_at_the_configured_rate() {
    let mut program = load(4, 1);
    let _socket = with_socket(&mut program);
    let stun = Frame::v4(STUN).bytes();
    let start = Instant::now();
    assert_eq!(verdict(&program, &stun), XDP_REDIRECT);
    assert_eq!(verdict(&program, &stun), XDP_DROP, "burst of 1 used up");
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "too slow to test a 4/s rate"
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        verdict(&program, &stun),
        XDP_REDIRECT,
        "a token after 1/4 s"
    );
    assert_eq!(verdict(&program, &stun), XDP_DROP, "only one");
}

#[test]
fn without_a_socket_on_the_queue_redirects_fall_back_to_the_kernel() {
    let program = load(10, 5);
    program
        .admission()
        .unwrap()
        .admit(SocketAddr::from((CLIENT4, CLIENT_PORT)))
        .unwrap();
    assert_eq!(verdict(&program, &Frame::v4(RTP).bytes()), XDP_PASS);
    assert_eq!(verdict(&program, &Frame::v6(STUN).bytes()), XDP_PASS);
    assert_eq!(
        verdict(&program, &Frame::v6(RTP).bytes()),
        XDP_DROP,
        "unknown, not STUN"
    );
    assert_eq!(
        moved(&program),
        [("dropped_unknown_source", 1), ("passed_no_socket", 2)]
    );
}

#[test]
fn admission_handles_work_from_worker_threads() {
    let mut program = load(10, 5);
    let _socket = with_socket(&mut program);
    let workers: Vec<_> = (0..4u16)
        .map(|worker| {
            let mut admission = program.admission().unwrap();
            thread::spawn(move || {
                for i in 0..100u16 {
                    let port = 10_000 + worker * 100 + i;
                    admission.admit(SocketAddr::from((CLIENT4, port))).unwrap();
                }
                admission
            })
        })
        .collect();
    let handles: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let port = |p| Frame::udp(SocketAddr::from((CLIENT4, p)), &datagram(RTP)).bytes();
    assert_eq!(verdict(&program, &port(10_000)), XDP_REDIRECT);
    assert_eq!(verdict(&program, &port(10_399)), XDP_REDIRECT);
    assert_eq!(verdict(&program, &port(10_400)), XDP_DROP);
    // A handle outlives the thread that used it, and still reaches the same map.
    drop(handles);
    assert!(program
        .admission()
        .unwrap()
        .is_admitted(SocketAddr::from((CLIENT4, 10_250)))
        .unwrap());
}

#[test]
fn a_full_admission_table_says_so() {
    let program = load(10, 5);
    let mut admission = program.admission().unwrap();
    let remote =
        |i: u32| SocketAddr::from((Ipv6Addr::from(0xfd77_0000_u128 << 96 | u128::from(i)), 9));
    let start = Instant::now();
    for i in 0..ADMITTED_LEN {
        admission.admit(remote(i)).unwrap();
    }
    let error = admission.admit(remote(ADMITTED_LEN)).unwrap_err();
    assert!(matches!(error, XdpError::AdmissionFull), "{error:?}");
    // Room again once a session is gone; re-admitting an admitted remote takes none.
    admission.revoke(remote(0)).unwrap();
    admission.admit(remote(ADMITTED_LEN)).unwrap();
    admission.admit(remote(1)).unwrap();
    println!("{ADMITTED_LEN} admissions in {:?}", start.elapsed());
}

#[test]
fn a_socket_for_a_queue_past_the_last_is_refused() {
    let mut program = load(10, 5);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let error = program.register_socket(2, socket.as_fd()).unwrap_err();
    assert!(
        matches!(
            error,
            XdpError::NoSuchQueue {
                queue: 2,
                queues: 2
            }
        ),
        "{error}"
    );
}

#[test]
fn a_missing_interface_is_named_with_the_way_out() {
    require_root();
    let error = XdpProgram::attach("relay-none0", &options(XdpMode::Native, 10, 5)).unwrap_err();
    assert!(
        matches!(error, XdpError::NoSuchInterface { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("\"relay-none0\""), "{message}");
    assert!(message.contains("without --xdp"), "{message}");
}

/// Instructions after the verifier (what runs) and instructions it verified.
fn size(program: &XdpProgram) -> (u32, u32) {
    let info = program.info().unwrap();
    let translated = info.size_translated().expect("xlated size") / 8;
    let verified = info.verified_instruction_count().expect("verified count");
    (translated, verified)
}

#[test]
fn the_program_is_small_and_verified() {
    let (translated, verified) = size(&load(10, 5));
    println!("XDP program: {translated} instructions, {verified} verified");
    // Far from the verifier's limits (4096 instructions for unprivileged programs, 1M
    // verified): every path is short, with no loop to unroll.
    assert!(translated < 1_000, "{translated} instructions");
    assert!(verified < 10_000, "{verified} instructions verified");
}

#[test]
fn debug_logs_are_verified_and_cost_nothing_when_off() {
    require_root();
    let with_logs = XdpProgram::load(&XdpOptions {
        debug_logs: true,
        ..options(XdpMode::Native, 10, 5)
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let (on, on_verified) = size(&with_logs);
    let (off, off_verified) = size(&load(10, 5));
    println!(
        "XDP program with debug logs: {on} instructions, {on_verified} verified; \
         with logs off: {off}, {off_verified} verified"
    );
    // Far from the verifier's 1M, though each statement is a few hundred instructions.
    assert!(on_verified < 100_000, "{on_verified} instructions verified");
    // With the level off the verifier removed the statements: one check of it is left.
    assert!(off * 4 < on, "{off} instructions with logs off, {on} with");
}

#[test]
fn embedded_program_has_the_maps_relay_common_names() {
    let program = load(10, 5);
    let info = program.info().unwrap();
    let maps = info.map_ids().unwrap().expect("map ids");
    let names: Vec<String> = maps
        .iter()
        .map(|&id| {
            let map = aya::maps::MapData::from_id(id).unwrap();
            let info = map.info().unwrap();
            info.name_as_str().unwrap().to_owned()
        })
        .collect();
    // The kernel keeps the first 15 bytes of a name; .rodata holds the patched config.
    for name in [
        ADMITTED_MAP,
        STUN_BUCKETS_MAP,
        STUN_GLOBAL_MAP,
        COUNTERS_MAP,
        XSK_MAP,
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "no map {name} among {names:?}"
        );
    }
}

/// As an unprivileged user the loader says which privileges it needs and how to run
/// portable: checked in a child process of this test binary running as `nobody`.
#[test]
fn without_privileges_the_error_says_why_and_what_to_do() {
    if std::env::var_os(UNPRIVILEGED_CHILD).is_some() {
        match XdpProgram::load(&options(XdpMode::Native, 10, 5)) {
            Ok(_) => println!("{UNPRIVILEGED_CHILD}: loaded"),
            Err(error) => println!("{UNPRIVILEGED_CHILD}: {error:?}\n{error}"),
        }
        return;
    }
    require_root();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "without_privileges_the_error_says_why_and_what_to_do",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(UNPRIVILEGED_CHILD, "1")
        .output()
        .expect("run setpriv (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .find(UNPRIVILEGED_CHILD)
        .map_or("", |start| &stdout[start..]);
    assert!(
        report.starts_with(&format!("{UNPRIVILEGED_CHILD}: NotPermitted")),
        "as nobody: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needed in ["needs root", "CAP_BPF, CAP_PERFMON", "without --xdp"] {
        assert!(report.contains(needed), "{needed:?} not in {report}");
    }
}

const UNPRIVILEGED_CHILD: &str = "RELAY_XDP_UNPRIVILEGED_CHILD";
