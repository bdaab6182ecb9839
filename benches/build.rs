//! Builds relay-bench's sink XDP program (`sink-ebpf/`) with aya-build into
//! `$OUT_DIR/sink`, as relay's build script builds the relay's program (both through
//! `relay/build/embed_ebpf.rs`). Without the eBPF toolchain the tool is built without
//! the sink: the loopback benchmarks still work, the XDP ones say what is missing.

#[path = "../relay/build/ebpf_toolchain.rs"]
mod ebpf_toolchain;
#[path = "../relay/build/embed_ebpf.rs"]
mod embed_ebpf;

use std::env;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    embed_ebpf::build(&embed_ebpf::Program {
        package: "relay-sink-ebpf",
        dir: PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("sink-ebpf"),
        object: "sink",
        cfg: "sink_ebpf",
        unavailable_env: "SINK_EBPF_UNAVAILABLE",
        built_without: "relay-bench is built without its sink XDP program",
    })
}
