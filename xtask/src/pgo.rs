//! `cargo xtask dist --pgo`: the dist build tuned by a profile of the standard workloads.
//!
//! An instrumented relay (`-Cprofile-generate`) serves W1 and W2 of `relay-bench suite`
//! (portable mode, on the loopback of a network namespace of the suite's own, about a
//! minute and a half); what it counted is merged with llvm-profdata, and the relay is
//! built again with it (`-Cprofile-use`). Both builds use the `dist` profile in
//! target/pgo, so the plain target/dist/relay stays as it is.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The training: the relay alone (no Janus, no XDP), W1 and W2 at 100 and 1000 viewers,
/// a short window each. What matters is which code runs hot, not the numbers.
const TRAINING: &[&str] = &[
    "suite",
    "--servers",
    "relay",
    "--workloads",
    "w1,w2",
    "--w2-viewers",
    "100,1000",
    "--no-xdp",
    "--window",
    "10",
];

/// Builds target/dist-pgo/relay and returns its path. `relay_bench` is built already.
pub fn dist(root: &Path, target: &Path, relay_bench: &Path) -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the training runs `relay-bench suite`, which needs root (a network namespace)");
    }
    // Before the long builds: without it the profile could not be used.
    let profdata = llvm_profdata()?;
    let dir = target.join("pgo");
    let profiles = dir.join("profiles");
    match std::fs::remove_dir_all(&profiles) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", profiles.display()))
        }
        _ => {}
    }
    std::fs::create_dir_all(&profiles)?;

    let instrumented = dir.join("relay-instrumented");
    build(
        root,
        &dir,
        &flag("-Cprofile-generate=", &profiles),
        &instrumented,
    )?;
    println!("pgo: training {} on W1 and W2", instrumented.display());
    let status = Command::new(relay_bench)
        .current_dir(root)
        .args(TRAINING)
        .arg("--relay")
        .arg(&instrumented)
        .arg("--json")
        .arg(dir.join("training.json"))
        .status()
        .with_context(|| format!("cannot run {}", relay_bench.display()))?;
    if !status.success() {
        bail!("the training run failed ({status})");
    }

    let raw: Vec<PathBuf> = std::fs::read_dir(&profiles)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    if raw.is_empty() {
        bail!(
            "the instrumented relay wrote no profile into {}",
            profiles.display()
        );
    }
    let merged = dir.join("relay.profdata");
    let status = Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .args(&raw)
        .status()
        .with_context(|| format!("cannot run {}", profdata.display()))?;
    if !status.success() {
        bail!("llvm-profdata merge failed ({status})");
    }

    let relay = target.join("dist-pgo/relay");
    build(root, &dir, &flag("-Cprofile-use=", &merged), &relay)?;
    Ok(relay)
}

fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path);
    flag
}

/// Builds the relay with the `dist` profile and `rustflag` into `target_dir`, and copies
/// the binary to `to`. `--target` the host's: without it RUSTFLAGS would reach the build
/// scripts and proc macros too, which would then write profiles of their own.
fn build(root: &Path, target_dir: &Path, rustflag: &OsString, to: &Path) -> anyhow::Result<()> {
    let host = host()?;
    let mut rustflags = env::var_os("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(" ");
    }
    rustflags.push(rustflag);
    let status = crate::cargo(root)
        .args(["build", "--profile", "dist", "--package", "relay"])
        .args(["--target", &host])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", rustflags)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let built = target_dir.join(&host).join("dist/relay");
    std::fs::create_dir_all(to.parent().context("a file has a folder")?)?;
    std::fs::copy(&built, to)
        .with_context(|| format!("copying {} to {}", built.display(), to.display()))?;
    Ok(())
}

/// `rustc -vV`: the host triple and the LLVM major version.
fn rustc_version() -> anyhow::Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run rustc")?;
    Ok(String::from_utf8(out.stdout)?)
}

fn host() -> anyhow::Result<String> {
    field(&rustc_version()?, "host: ").context("no host in `rustc -vV`")
}

fn field(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
}

/// An llvm-profdata that reads what rustc's LLVM writes: rustup's `llvm-tools` (added
/// if missing and rustup can), else `llvm-profdata-MAJOR` or an `llvm-profdata` of the
/// same major version on PATH (Debian's `llvm-MAJOR`).
fn llvm_profdata() -> anyhow::Result<PathBuf> {
    let version = rustc_version()?;
    let major = field(&version, "LLVM version: ")
        .and_then(|v| v.split('.').next().map(str::to_owned))
        .context("no LLVM version in `rustc -vV`")?;
    let host = field(&version, "host: ").context("no host in `rustc -vV`")?;
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let tools = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim())
        .join("lib/rustlib")
        .join(&host)
        .join("bin/llvm-profdata");
    if !tools.exists() {
        println!("pgo: adding rustup's llvm-tools");
        // No rustup, or no network: then PATH below.
        let _ = Command::new("rustup")
            .args(["component", "add", "llvm-tools"])
            .status();
    }
    if tools.exists() {
        return Ok(tools);
    }
    for name in [format!("llvm-profdata-{major}"), "llvm-profdata".into()] {
        let Ok(path) = which::which(&name) else {
            continue;
        };
        let out = Command::new(&path).arg("--version").output()?;
        if String::from_utf8_lossy(&out.stdout).contains(&format!("LLVM version {major}.")) {
            return Ok(path);
        }
    }
    bail!(
        "no llvm-profdata for rustc's LLVM {major}: run `rustup component add llvm-tools`, \
         or install Debian's llvm-{major} (apt-get install llvm-{major})"
    )
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn reads_rustc_fields() {
        let text = "rustc 1.95.0\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.2\n";
        assert_eq!(
            field(text, "host: ").as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(field(text, "LLVM version: ").as_deref(), Some("22.1.2"));
        assert_eq!(field(text, "release: "), None);
    }
}
