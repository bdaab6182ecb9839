//! The build-script half of embedding an eBPF program, shared by relay's build script
//! (the XDP program, `relay-ebpf`) and relay-bench's (the sink program, `sink-ebpf`).
//!
//! A plain `cargo build` must work on a machine without the eBPF toolchain: then the
//! crate is built without the program, with one warning that says what is missing, and
//! the reason in an environment variable for the crate to report at run time.
//! `RELAY_EBPF` chooses: unset or `auto` (build it when the toolchain is there), `off`
//! (never), `on` (always; a missing toolchain fails the build).

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use aya_build::{Package, Toolchain};

use crate::ebpf_toolchain::{self, Missing, NIGHTLY};

/// One eBPF crate to build and embed.
pub struct Program<'a> {
    /// The eBPF crate's package name and directory.
    pub package: &'a str,
    pub dir: PathBuf,
    /// The object aya-build writes to `$OUT_DIR` (the crate's binary name).
    pub object: &'a str,
    /// Set (`cargo:rustc-cfg`) when the object is there.
    pub cfg: &'a str,
    /// Carries the reason (`cargo:rustc-env`) when it is not.
    pub unavailable_env: &'a str,
    /// What the warning says is built without it, e.g. "relay is built without its XDP
    /// program".
    pub built_without: &'a str,
}

pub fn build(program: &Program) -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg({})", program.cfg);
    println!("cargo:rerun-if-env-changed=RELAY_EBPF");
    let required = match env::var("RELAY_EBPF").as_deref() {
        Err(_) | Ok("auto") => false,
        Ok("on") => true,
        Ok("off") => {
            without(
                program,
                "built with RELAY_EBPF=off; unset it and rebuild to embed it",
            );
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
        without(
            program,
            &format!("missing {missing}; run `cargo xtask setup`, then rebuild"),
        );
        return Ok(());
    }

    let dir = program
        .dir
        .to_str()
        .with_context(|| format!("{} path is not UTF-8", program.package))?;
    // aya-build turns every line the inner cargo prints into a warning: keep only the
    // compiler's diagnostics, not a `Compiling` line per crate.
    env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [Package {
            name: program.package,
            root_dir: dir,
            ..Default::default()
        }],
        Toolchain::Custom(NIGHTLY),
    )?;
    if !PathBuf::from(env::var("OUT_DIR")?)
        .join(program.object)
        .is_file()
    {
        // aya-build returns early, without an object, when AYA_BUILD_SKIP is set.
        without(
            program,
            "aya-build produced no object (is AYA_BUILD_SKIP set?)",
        );
        return Ok(());
    }
    println!("cargo:rustc-cfg={}", program.cfg);
    Ok(())
}

fn without(program: &Program, reason: &str) {
    println!("cargo:warning={}: {reason}", program.built_without);
    println!("cargo:rustc-env={}={reason}", program.unavailable_env);
}

/// Reruns the script once `cargo xtask setup` has installed what was missing. Only paths
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
