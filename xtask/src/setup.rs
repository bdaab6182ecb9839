//! `cargo xtask setup` on Debian 12 (the recipe in shared/TOOLCHAIN.md). Each step
//! looks before it installs and prints one line, so a second run takes about a second.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::ebpf_toolchain::{self, Missing, BPF_LINKER_VERSION, LLVM_MAJOR, NIGHTLY};

/// Debian packages the build and the tests need.
const PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22 and what it links with.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "build-essential",
    "pkg-config",
    // The opus crate builds libopus from its bundled source with cmake.
    "cmake",
    // XDP tests: network namespaces, veth, inspecting programs and traffic.
    "iproute2",
    "iputils-ping",
    "bpftool",
    "ethtool",
    "tcpdump",
    // End-to-end tests: a real browser viewer and a real RTP publisher.
    "chromium",
    "chromium-driver",
    "ffmpeg",
    // RTSP pull tests: a real RTSP server (GStreamer's, run by /usr/bin/python3) with
    // H264, H265 (x265, ugly) and AAC (libav) streams.
    "gir1.2-gst-rtsp-server-1.0",
    "python3-gi",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-libav",
    // The peer of the side-by-side benchmarks: Janus Gateway's streaming plugin.
    "janus",
];

pub fn run() -> anyhow::Result<()> {
    packages()?;
    let toolchain = ebpf_toolchain::probe();
    if toolchain.missing.contains(&Missing::Rustup) {
        bail!("rustup is not on PATH: install Rust with rustup (https://rustup.rs), then rerun");
    }
    nightly(&toolchain)?;
    bpf_linker(&toolchain)?;
    let missing = ebpf_toolchain::probe().missing;
    if !missing.is_empty() {
        let missing: Vec<String> = missing.iter().map(Missing::to_string).collect();
        bail!("setup finished, yet still missing: {}", missing.join(", "));
    }
    Ok(())
}

fn packages() -> anyhow::Result<()> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        println!("setup: Debian packages: already there");
        return Ok(());
    }
    let list = missing.join(" ");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "setup: Debian packages missing: {list}\n\
             run: sudo apt-get update && sudo apt-get install -y {list}\n\
             then rerun this command"
        );
    }
    println!("setup: Debian packages: installing {list}");
    check(Command::new("apt-get").arg("update"))?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The packages of `PACKAGES` that dpkg does not have fully installed.
fn missing_packages() -> anyhow::Result<Vec<&'static str>> {
    let out = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Package} ${db:Status-Abbrev}\\n"])
        .args(PACKAGES)
        .output()
        .context("dpkg-query not found: setup knows only Debian (12)")?;
    Ok(not_installed(
        PACKAGES,
        &String::from_utf8_lossy(&out.stdout),
    ))
}

/// `wanted` less those that the dpkg-query listing shows as "ii" (installed and
/// configured). Packages dpkg has never heard of have no line at all.
fn not_installed<'a>(wanted: &[&'a str], listing: &str) -> Vec<&'a str> {
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(package, _)| package)
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect()
}

fn nightly(toolchain: &ebpf_toolchain::Toolchain) -> anyhow::Result<()> {
    let label = format!("Rust {NIGHTLY} with rust-src");
    if toolchain.missing.contains(&Missing::Nightly) {
        println!("setup: {label}: installing");
        check(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
    } else if toolchain.missing.contains(&Missing::RustSrc) {
        println!("setup: {label}: installing rust-src");
        check(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
    } else {
        println!(
            "setup: {label}: already there{}",
            at(toolchain.nightly_sysroot.as_deref())
        );
        Ok(())
    }
}

fn bpf_linker(toolchain: &ebpf_toolchain::Toolchain) -> anyhow::Result<()> {
    let label = format!("bpf-linker {BPF_LINKER_VERSION} (LLVM {LLVM_MAJOR})");
    if !toolchain.missing.contains(&Missing::BpfLinker) {
        println!(
            "setup: {label}: already there{}",
            at(toolchain.bpf_linker.as_deref())
        );
        return Ok(());
    }
    println!("setup: {label}: installing (about a minute)");
    // Its default features want the newest LLVM: build against the nightly's major.
    let llvm = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    check(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--locked",
                "--no-default-features",
            ])
            .args(["--version", BPF_LINKER_VERSION])
            .args(["--features", &format!("llvm-{LLVM_MAJOR}")])
            .env("LLVM_PREFIX", &llvm)
            .env("RUSTFLAGS", format!("-L {llvm}/lib")),
    )
}

/// " (path)" for the line that says where a tool was found.
fn at(path: Option<&Path>) -> String {
    path.map(|path| format!(" ({})", path.display()))
        .unwrap_or_default()
}

fn check(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_installed_and_configured_packages_count() {
        let listing = "ffmpeg ii \nbpftool rc \nethtool iU \n";
        let wanted = ["ffmpeg", "bpftool", "ethtool", "tcpdump"];
        // Removed with its config left (rc), unpacked but not configured (iU), unknown.
        assert_eq!(
            not_installed(&wanted, listing),
            ["bpftool", "ethtool", "tcpdump"]
        );
    }
}
