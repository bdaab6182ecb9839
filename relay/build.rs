//! Builds the XDP program (`relay-ebpf`) with aya-build into `$OUT_DIR/relay`, for
//! `relay::io::xdp::program()` to embed.
//!
//! A plain `cargo build` must work on a machine without the eBPF toolchain: then the
//! relay is built without the program (portable mode only), with one warning that says
//! what is missing. `RELAY_EBPF` chooses: unset or `auto` (build it when the toolchain is
//! there), `off` (never), `on` (always; a missing toolchain fails the build).

#[path = "build/ebpf_toolchain.rs"]
mod ebpf_toolchain;

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use aya_build::{Package, Toolchain};
use ebpf_toolchain::{Missing, NIGHTLY};

fn main() -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg(relay_ebpf)");
    println!("cargo:rerun-if-env-changed=RELAY_EBPF");
    let required = match env::var("RELAY_EBPF").as_deref() {
        Err(_) | Ok("auto") => false,
        Ok("on") => true,
        Ok("off") => {
            without_program("built with RELAY_EBPF=off; unset it and rebuild to embed it");
            return Ok(());
        }
        Ok(other) => bail!("RELAY_EBPF={other}: expected on, off or auto"),
    };

    let toolchain = ebpf_toolchain::probe();
    rerun_when_installed(&toolchain);
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
        without_program(&format!(
            "missing {missing}; run `cargo xtask setup`, then rebuild"
        ));
        return Ok(());
    }

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../relay-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("relay-ebpf path is not UTF-8")?;
    // aya-build turns every line the inner cargo prints into a warning: keep only the
    // compiler's diagnostics, not a `Compiling` line per crate.
    env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [Package {
            name: "relay-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(NIGHTLY),
    )?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    if !out_dir.join("relay").is_file() {
        // aya-build returns early, without an object, when AYA_BUILD_SKIP is set.
        without_program("aya-build produced no object (is AYA_BUILD_SKIP set?)");
        return Ok(());
    }
    println!("cargo:rustc-cfg=relay_ebpf");
    Ok(())
}

/// Builds relay without the program; `program()` returns `reason` as its error.
fn without_program(reason: &str) {
    println!("cargo:warning=relay is built without its XDP program: {reason}");
    println!("cargo:rustc-env=RELAY_EBPF_UNAVAILABLE={reason}");
}

/// Reruns this script once `cargo xtask setup` has installed what was missing. Only paths
/// that exist are watched: cargo reruns a script on every build for a missing one.
fn rerun_when_installed(toolchain: &ebpf_toolchain::Toolchain) {
    let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let rustup_home =
        env::var_os("RUSTUP_HOME").map_or_else(|| home.join(".rustup"), PathBuf::from);
    let cargo_home = env::var_os("CARGO_HOME").map_or_else(|| home.join(".cargo"), PathBuf::from);
    let watch = |path: &Path| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    match &toolchain.nightly_sysroot {
        // rustup rewrites this list when it adds a component (rust-src).
        Some(sysroot) => watch(&sysroot.join("lib/rustlib/components")),
        // rustup records every toolchain it installs here: a small folder, unlike toolchains/.
        None => watch(&rustup_home.join("update-hashes")),
    }
    match &toolchain.bpf_linker {
        Some(linker) => watch(linker),
        // Where `cargo install bpf-linker` puts it.
        None => watch(&cargo_home.join("bin")),
    }
}
