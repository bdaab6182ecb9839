use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use relay::config::{Config, LogLevel, Overrides};
use relay::reload::ConfigSource;

/// relay: a WebRTC media relay. Streams come in (RTP over UDP, a built-in demo clip)
/// and fan out to browsers and other WHEP clients, with NACK loss recovery always on.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: WHEP and player pages on webrtcAddress, media on webrtcLocalUDPAddress.
    ///
    /// Without --config it serves the built-in demo clip at /demo/.
    Serve {
        /// YAML config file (MediaMTX key names; see relay.yml for every key and its default).
        #[arg(short, long, env = "RELAY_CONFIG")]
        config: Option<PathBuf>,
        /// Log verbosity, overriding logLevel (RUST_LOG, when set, overrides both).
        #[arg(long, value_enum)]
        log_level: Option<Level>,
        /// Data-plane workers, overriding `workers` (0: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Kernel bypass on this interface, overriding `xdpInterface`: relay's XDP program
        /// steers the media port into one AF_XDP socket and worker per RX queue. Needs root
        /// (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK); refused with
        /// the reason if unusable.
        #[arg(long, value_name = "INTERFACE")]
        xdp: Option<String>,
    },
    /// Check a config file and print the settings relay would use, then exit.
    CheckConfig {
        /// YAML config file.
        config: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// jemalloc for the whole process, for its heap profiles (relay::heap).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: its profiler built in but not sampling until
/// `pprof: yes` turns it on (relay::heap::start_sampling), one sample per 2^19 bytes
/// (512 KiB, Go's rate), and each stack's total allocations kept for alloc_space. Freed
/// pages go back to the OS at once (jemalloc's default keeps them 10 s): at W1, where
/// the ingest allocated and freed ~40 MB/s, that held ~4 MB less than 1 s did, for
/// ~3,000 page faults/s instead of ~1,300 (docs/benchmarks.md, section 9); it also
/// returns what a burst of joins freed in arenas that then allocate nothing. Keeping
/// them 100 ms saved no CPU measurable at W1 (docs/benchmarks.md, "one copy less per
/// packet"). MALLOC_CONF overrides these.
#[export_name = "malloc_conf"]
static MALLOC_CONF: &[u8; 79] =
    b"prof:true,prof_active:false,prof_accum:true,lg_prof_sample:19,dirty_decay_ms:0\0";

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when stderr is a full disk.
            let _ = writeln!(std::io::stderr(), "relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            log_level,
            workers,
            xdp,
        } => {
            let flags = Overrides {
                log_level: log_level.map(|level| match level {
                    Level::Error => LogLevel::Error,
                    Level::Warn => LogLevel::Warn,
                    Level::Info => LogLevel::Info,
                    Level::Debug => LogLevel::Debug,
                }),
                workers,
                xdp_interface: xdp,
            };
            // The same loading as check-config's, with the flags in place of their keys
            // (at every reload too).
            let source = ConfigSource {
                file: config,
                overrides: flags,
            };
            let loaded = source.load()?;
            init_logs(&loaded.config);
            if !loaded.not_run.is_empty() {
                tracing::warn!("{}", loaded.not_run);
            }
            relay::server::serve(source, loaded)
        }
        Command::CheckConfig { config: file } => {
            let (config, not_run) = Config::load_noting(Some(&file), &Overrides::default())?;
            println!("{} is valid", file.display());
            if !not_run.is_empty() {
                println!("  warning: {not_run}");
            }
            let metrics = match config.metrics {
                true => format!("on {}", config.metrics_address),
                false => "off".into(),
            };
            println!(
                "  webrtcAddress {}, webrtcLocalUDPAddress {}, metrics {metrics}",
                config.webrtc_address, config.webrtc_local_udp_address,
            );
            for (name, path) in &config.paths {
                println!("  path '{name}': source {}", path.source);
            }
            for pattern in &config.path_patterns {
                println!(
                    "  paths matching '{}': source {}",
                    pattern.key, pattern.path.source
                );
            }
            Ok(())
        }
    }
}

fn init_logs(config: &Config) {
    let level = match config.log_level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    // str0m is chatty at info; its warnings are what an operator needs.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},str0m=warn,dimpl=warn,is=warn")));
    // A line the disk refuses is counted and dropped (relay::logs), never reported on
    // stderr again.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(relay::logs::Stderr)
        .log_internal_errors(false);
    if config.log_structured {
        logs.json().init();
    } else {
        logs.init();
    }
}
