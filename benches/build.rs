//! Builds relay-bench's sink XDP program (`sink-ebpf/`) with aya-build into
//! `$OUT_DIR/sink`, the way relay's build script builds the relay's program.
//!
//! Without the eBPF toolchain the tool is built without the sink, with one warning:
//! the loopback benchmarks still work, `xdp-egress` says what is missing. `RELAY_EBPF`
//! chooses as for relay: unset or `auto`, `off`, `on` (a missing toolchain fails).

#[path = "../relay/build/ebpf_toolchain.rs"]
mod ebpf_toolchain;

use std::env;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use aya_build::{Package, Toolchain};
use ebpf_toolchain::{Missing, NIGHTLY};

fn main() -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg(sink_ebpf)");
    println!("cargo:rerun-if-env-changed=RELAY_EBPF");
    let required = match env::var("RELAY_EBPF").as_deref() {
        Err(_) | Ok("auto") => false,
        Ok("on") => true,
        Ok("off") => {
            without_program("built with RELAY_EBPF=off; unset it and rebuild");
            return Ok(());
        }
        Ok(other) => bail!("RELAY_EBPF={other}: expected on, off or auto"),
    };
    let toolchain = ebpf_toolchain::probe();
    // Rebuild when the toolchain changes under it (rustup adds a component, another
    // bpf-linker is installed).
    let watched = [
        toolchain
            .nightly_sysroot
            .map(|sysroot| sysroot.join("lib/rustlib/components")),
        toolchain.bpf_linker,
    ];
    for path in watched.iter().flatten().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if !toolchain.missing.is_empty() {
        let missing = toolchain
            .missing
            .iter()
            .map(Missing::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if required {
            bail!("RELAY_EBPF=on but the eBPF toolchain lacks {missing}: run `cargo xtask setup`");
        }
        // Once `cargo xtask setup` ran, `touch benches/build.rs` makes cargo build it.
        without_program(&format!(
            "missing {missing}; run `cargo xtask setup`, then `touch benches/build.rs` and rebuild"
        ));
        return Ok(());
    }

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("sink-ebpf");
    let root = root.to_str().context("sink-ebpf path is not UTF-8")?;
    // aya-build turns every line the inner cargo prints into a warning: keep only the
    // compiler's diagnostics.
    env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [Package {
            name: "relay-sink-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Custom(NIGHTLY),
    )?;
    if !PathBuf::from(env::var("OUT_DIR")?).join("sink").is_file() {
        without_program("aya-build produced no object (is AYA_BUILD_SKIP set?)");
        return Ok(());
    }
    println!("cargo:rustc-cfg=sink_ebpf");
    Ok(())
}

/// Builds the tool without the sink; `xdp_sink::program()` returns `reason` as its error.
fn without_program(reason: &str) {
    println!("cargo:warning=relay-bench is built without its sink XDP program: {reason}");
    println!("cargo:rustc-env=SINK_EBPF_UNAVAILABLE={reason}");
}
