//! The toolchain that builds the XDP program (shared/TOOLCHAIN.md), in one place for
//! relay's build script (which skips the program when a part is missing) and for
//! `cargo xtask setup` (which installs the missing parts). Both include this file by
//! path: a build script cannot depend on the xtask crate.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Pinned by date so that a `rustup update` cannot move the eBPF build to an LLVM
/// newer than the one bpf-linker links against.
pub const NIGHTLY: &str = "nightly-2026-05-20";
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// LLVM major of `NIGHTLY`; bpf-linker must be built against the same one.
pub const LLVM_MAJOR: u32 = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Rustup,
    Nightly,
    RustSrc,
    BpfLinker,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Rustup => write!(f, "rustup"),
            Missing::Nightly => write!(f, "the Rust toolchain {NIGHTLY}"),
            Missing::RustSrc => write!(f, "rust-src for {NIGHTLY}"),
            Missing::BpfLinker => write!(f, "bpf-linker {BPF_LINKER_VERSION} (LLVM {LLVM_MAJOR})"),
        }
    }
}

/// What is installed, as found by [`probe`].
#[derive(Debug)]
pub struct Toolchain {
    /// Sysroot of `NIGHTLY`, if installed.
    pub nightly_sysroot: Option<PathBuf>,
    /// The `bpf-linker` on PATH, whatever its version.
    pub bpf_linker: Option<PathBuf>,
    pub missing: Vec<Missing>,
}

/// Looks without installing anything; takes a few milliseconds.
pub fn probe() -> Toolchain {
    let mut missing = Vec::new();
    // Without rustup the nightly cannot be found (or installed) either.
    let nightly_sysroot = match output("rustup", &["which", "--toolchain", NIGHTLY, "rustc"]) {
        Output::NotFound => {
            missing.push(Missing::Rustup);
            None
        }
        Output::Failed => None,
        Output::Ok(rustc) => PathBuf::from(rustc.trim())
            .parent()
            .and_then(|bin| bin.parent())
            .map(PathBuf::from),
    };
    match &nightly_sysroot {
        None => missing.push(Missing::Nightly),
        Some(sysroot) => {
            if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
                missing.push(Missing::RustSrc);
            }
        }
    }
    let bpf_linker = which::which("bpf-linker").ok();
    // `--version` runs only if its libLLVM is there; the version pins the LLVM feature.
    let linker_ok =
        bpf_linker
            .as_ref()
            .is_some_and(|path| match output(path.as_os_str(), &["--version"]) {
                Output::Ok(version) => version.split_whitespace().any(|w| w == BPF_LINKER_VERSION),
                Output::NotFound | Output::Failed => false,
            });
    if !linker_ok {
        missing.push(Missing::BpfLinker);
    }
    Toolchain {
        nightly_sysroot,
        bpf_linker,
        missing,
    }
}

enum Output {
    NotFound,
    Failed,
    Ok(String),
}

fn output(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    match Command::new(program)
        .args(args)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Err(_) => Output::NotFound,
        Ok(out) if !out.status.success() => Output::Failed,
        Ok(out) => Output::Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
    }
}
