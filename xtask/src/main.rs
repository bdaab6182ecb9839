//! `cargo xtask`: the two commands a newcomer needs (`run`, `test`), the steps they
//! take (`setup`, `build`), `dist` (the build to ship), `xdp-demo` and `bench`. Every
//! command sets the machine up first, so a fresh Debian 12 with stable Rust needs
//! nothing else.

#[path = "../../relay/build/ebpf_toolchain.rs"]
mod ebpf_toolchain;
mod pgo;
mod setup;
mod xdp_demo;

use std::env;
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Set up, build, run and test relay")]
enum Task {
    /// Install what building and testing needs: Debian packages, the pinned nightly
    /// with rust-src, bpf-linker. Idempotent; about a second when all is there.
    Setup,
    /// Set up, then build the release relay with its XDP program embedded.
    Build,
    /// Set up, then build the relay to ship: the `dist` profile (one codegen unit, fat
    /// LTO), into target/dist/relay. Slower to build than `build`; smaller and less
    /// resident (docs/benchmarks.md, section 10).
    Dist {
        /// Profile-guided: build an instrumented relay, run it under W1 and W2 of
        /// `relay-bench suite` (needs root; about 2 minutes), build it again with that
        /// profile into target/dist-pgo/relay. Takes two dist builds.
        #[arg(long)]
        pgo: bool,
    },
    /// Build, then run `relay serve` with the arguments that follow.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Build, then run the relay with XDP in a network namespace of its own, joined to
    /// this one by a veth pair (10.78.0.0/30), and print the URL to watch it from here.
    /// Needs root. Ctrl-C stops it and removes the namespace and the pair. Arguments
    /// that follow go to `relay serve`.
    XdpDemo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, build the relay to ship (as `dist`) and the load tools, then run the
    /// standard workloads (W1-W4, W1R) against the relay and Janus side by side
    /// (`relay-bench suite`); writes docs/benchmarks.md's generated section, docs/plots/
    /// and docs/suite.json. Needs root; takes 20-30 minutes. Arguments that follow go
    /// to `relay-bench suite` (see its --help).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, then run every test of the workspace in release mode; arguments that
    /// follow go to `cargo test` (a test name filter, `-- --nocapture`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives inside the workspace")?;
    match Task::parse() {
        Task::Setup => setup::run()?,
        Task::Build => {
            setup::run()?;
            build(root)?;
        }
        Task::Dist { pgo: false } => {
            setup::run()?;
            cargo_build(root, &["--profile", "dist", "--package", "relay"])?;
            println!("{}", target_dir(root).join("dist/relay").display());
        }
        Task::Dist { pgo: true } => {
            setup::run()?;
            cargo_build(root, &["--release", "--package", "relay-benches"])?;
            let target = target_dir(root);
            let tool = target.join("release/relay-bench");
            println!("{}", pgo::dist(root, &target, &tool)?.display());
        }
        Task::Run { args } => {
            setup::run()?;
            build(root)?;
            let relay = target_dir(root).join("release/relay");
            // exec: the relay gets the terminal and its signals, and its exit code is ours.
            let error = Command::new(&relay).arg("serve").args(args).exec();
            bail!("cannot run {}: {error}", relay.display());
        }
        Task::XdpDemo { args } => {
            xdp_demo::check_root()?;
            setup::run()?;
            build(root)?;
            return xdp_demo::run(&target_dir(root).join("release/relay"), &args);
        }
        Task::Bench { args } => {
            setup::run()?;
            // The binary users run (the Dockerfile's): fat LTO and one codegen unit cost
            // ~4% less CPU per packet at W1 than `release` (docs/benchmarks.md).
            cargo_build(root, &["--profile", "dist", "--package", "relay"])?;
            cargo_build(root, &["--release", "--package", "relay-benches"])?;
            let tool = target_dir(root).join("release/relay-bench");
            let relay = target_dir(root).join("dist/relay");
            let status = Command::new(&tool)
                .current_dir(root)
                .args([
                    "suite",
                    "--docs",
                    "docs/benchmarks.md",
                    "--json",
                    "docs/suite.json",
                ])
                .arg("--relay")
                .arg(&relay)
                .args(args)
                .status()
                .with_context(|| format!("cannot run {}", tool.display()))?;
            return Ok(exit_code(status.code()));
        }
        Task::Test { args } => {
            setup::run()?;
            let status = cargo(root)
                .args([
                    "test",
                    "--workspace",
                    "--exclude",
                    "relay-ebpf",
                    "--release",
                ])
                .args(args)
                .status()
                .context("cannot run cargo")?;
            return Ok(exit_code(status.code()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn build(root: &Path) -> anyhow::Result<()> {
    cargo_build(root, &["--release", "--package", "relay"])
}

fn cargo_build(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = cargo(root)
        .arg("build")
        .args(args)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// The cargo that runs xtask, in the workspace root. After setup the XDP program must
/// build: `RELAY_EBPF=on` turns a toolchain that is still missing into an error rather
/// than a relay without it (unless the caller chose otherwise).
fn cargo(root: &Path) -> Command {
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(root);
    if env::var_os("RELAY_EBPF").is_none() {
        cargo.env("RELAY_EBPF", "on");
    }
    cargo
}

fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// A child's exit code as ours; killed by a signal counts as failure.
fn exit_code(code: Option<i32>) -> ExitCode {
    match code {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
