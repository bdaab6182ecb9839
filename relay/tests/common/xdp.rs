//! What the XDP program tests share: the options they load the program with, and a
//! readable view of its counters.
#![allow(dead_code)]

use std::num::{NonZeroU16, NonZeroU32};

use relay::io::xdp::{Counter, XdpMode, XdpOptions, XdpProgram};

pub const MEDIA_PORT: u16 = 8189;

pub fn options(mode: XdpMode, stun_rate: u32, stun_burst: u32) -> XdpOptions {
    XdpOptions {
        media_port: NonZeroU16::new(MEDIA_PORT).unwrap(),
        mode,
        stun_rate: NonZeroU32::new(stun_rate).unwrap(),
        stun_burst: NonZeroU32::new(stun_burst).unwrap(),
        queues: NonZeroU32::new(2).unwrap(),
        debug_logs: false,
    }
}

/// The counters that moved, by name, for readable assertion failures.
pub fn moved(program: &XdpProgram) -> Vec<(&'static str, u64)> {
    program
        .counters()
        .expect("read the counters")
        .into_iter()
        .filter(|&(_, n)| n != 0)
        .map(|(counter, n): (Counter, u64)| (counter.name(), n))
        .collect()
}
