//! A camera pushing RTP, by hand: packets and H264 access units of its own making, and
//! the relay it pushes to.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use relay::config::Config;
use relay_testkit::config::{loopback, paths, rtp_push};
use relay_testkit::process::RelayProcess;

/// A UDP port of 127.0.0.1 that was free a moment ago, for the relay to take pushes on.
pub fn free_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// The relay with one path, `cam1`, fed by RTP pushed to 127.0.0.1:`port` as `sdp` says.
pub fn relay_with_cam1(port: u16, sdp: &str) -> RelayProcess {
    relay_with_cam1_on(port, sdp, super::WORKERS)
}

/// [`relay_with_cam1`] with `workers` workers (with one, it also runs the ingest).
pub fn relay_with_cam1_on(port: u16, sdp: &str, workers: usize) -> RelayProcess {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    super::start(&Config {
        paths: paths([("cam1", rtp_push(address, sdp))]),
        ..loopback(workers)
    })
}

/// An RTP packet (RFC 3550, no CSRC, no extension).
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A video access unit: keyframes carry SPS, PPS and an IDR slice; others one P slice.
pub fn video_frame(i: u32) -> Vec<Vec<u8>> {
    let tag = |nal: u8| {
        // A slice header opening its picture (first_mb_in_slice 0).
        let mut v = vec![nal, 0x88];
        v.extend_from_slice(&i.to_be_bytes());
        v.extend((0..200).map(|_| fastrand::u8(..)));
        v
    };
    if i.is_multiple_of(15) {
        vec![
            vec![0x67, 0x42, 0xe0, 0x1f, 0xda],
            vec![0x68, 0xce, 0x38, 0x80],
            tag(0x65),
        ]
    } else {
        vec![tag(0x41)]
    }
}
