//! Builds the XDP program (`relay-ebpf`) with aya-build into `$OUT_DIR/relay`, for
//! `relay::io::xdp::program()` to embed; without the eBPF toolchain, a portable-only
//! relay (see `build/embed_ebpf.rs`).

#[path = "build/ebpf_toolchain.rs"]
mod ebpf_toolchain;
#[path = "build/embed_ebpf.rs"]
mod embed_ebpf;

use std::env;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    embed_ebpf::build(&embed_ebpf::Program {
        package: "relay-ebpf",
        dir: PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../relay-ebpf"),
        object: "relay",
        cfg: "relay_ebpf",
        unavailable_env: "RELAY_EBPF_UNAVAILABLE",
        built_without: "relay is built without its XDP program",
    })
}
