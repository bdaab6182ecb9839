//! The XDP fast path: the XDP program's object, built from `relay-ebpf` by relay's
//! build script and embedded in the binary (its names and the layout of its config and
//! maps are in `relay_common`); `program` loads and attaches it; the AF_XDP socket it
//! redirects the relay's datagrams to sits behind `io::Receiver` and `io::Sender`
//! (`socket`, over `umem`'s rings and `frame`'s headers).

mod frame;
mod program;
mod socket;
mod umem;

pub use program::{Admission, XdpError, XdpMode, XdpOptions, XdpProgram};
pub use relay_common::Counter;
pub use socket::{
    open, KernelStats, RecvStats, SendDrops, XskError, XskOptions, XskReceiver, XskSender, TX_BATCH,
};

/// The embedded XDP program (an eBPF ELF object), or why this binary has none.
pub fn program() -> Result<&'static [u8], Unavailable> {
    #[cfg(relay_ebpf)]
    let program = Ok(aya::include_bytes_aligned!(concat!(
        env!("OUT_DIR"),
        "/relay"
    )));
    #[cfg(not(relay_ebpf))]
    let program = Err(Unavailable {
        reason: env!("RELAY_EBPF_UNAVAILABLE"),
    });
    program
}

/// This binary was built without the XDP program: only portable mode can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this relay was built without its XDP program: {reason}")]
pub struct Unavailable {
    /// What the build lacked and how to fix it, as the build script put it.
    reason: &'static str,
}
