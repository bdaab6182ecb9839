//! The sink programs (`sink-ebpf/`): loads one for a range of sink ports, attaches it
//! (XDP on the viewers' veth end, or tc at `lo`'s ingress), and reads what it counted
//! per port.

use aya::maps::{MapData, PerCpuArray};
use aya::programs::{tc, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use relay_sink_ebpf::{SinkConfig, SinkCount, CONFIG_GLOBAL, COUNTS_MAP, PROGRAM, TC_PROGRAM};

use anyhow::{bail, Context};

/// The embedded sink programs (an eBPF ELF object), or why this binary has none.
pub fn program() -> anyhow::Result<&'static [u8]> {
    #[cfg(sink_ebpf)]
    let program: anyhow::Result<&'static [u8]> = Ok(aya::include_bytes_aligned!(concat!(
        env!("OUT_DIR"),
        "/sink"
    )));
    #[cfg(not(sink_ebpf))]
    let program = Err(anyhow::anyhow!(
        "relay-bench was built without its sink programs: {}",
        env!("SINK_EBPF_UNAVAILABLE")
    ));
    program
}

/// The attached sink. Dropping it detaches the program (a BPF link).
pub struct SinkProgram {
    counts: PerCpuArray<MapData, SinkCount>,
    config: SinkConfig,
    // Holds the program and its link; dropped last.
    _ebpf: Ebpf,
}

impl SinkProgram {
    /// Loads the sink for UDP ports `first_port..first_port + ports` and attaches it in
    /// native XDP mode to `interface` (of the calling thread's network namespace).
    pub fn attach(interface: &str, first_port: u16, ports: u16) -> anyhow::Result<SinkProgram> {
        let (mut ebpf, config) = load(first_port, ports)?;
        let xdp: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .context("no sink program in the object")?
            .try_into()?;
        xdp.load()
            .context("the verifier refused the sink program")?;
        xdp.attach(interface, XdpMode::Driver)
            .with_context(|| format!("attaching the sink to {interface}"))?;
        SinkProgram::counting(ebpf, config)
    }

    /// The sink as a tc classifier at `interface`'s ingress: on `lo`, which passes a UDP
    /// GSO batch whole (as a NIC with segmentation offload sends it), it counts the
    /// batch's datagrams where XDP would see one frame.
    pub fn attach_tc_ingress(
        interface: &str,
        first_port: u16,
        ports: u16,
    ) -> anyhow::Result<SinkProgram> {
        let (mut ebpf, config) = load(first_port, ports)?;
        // Kernels without tcx (before 6.6) need the qdisc; one already there is fine.
        let _ = tc::qdisc_add_clsact(interface);
        let classifier: &mut SchedClassifier = ebpf
            .program_mut(TC_PROGRAM)
            .context("no tc sink program in the object")?
            .try_into()?;
        classifier
            .load()
            .context("the verifier refused the tc sink program")?;
        classifier
            .attach(interface, TcAttachType::Ingress)
            .with_context(|| format!("attaching the tc sink to {interface}'s ingress"))?;
        SinkProgram::counting(ebpf, config)
    }

    fn counting(mut ebpf: Ebpf, config: SinkConfig) -> anyhow::Result<SinkProgram> {
        let counts = PerCpuArray::try_from(
            ebpf.take_map(COUNTS_MAP)
                .context("no counts map in the object")?,
        )?;
        Ok(SinkProgram {
            counts,
            config,
            _ebpf: ebpf,
        })
    }

    pub fn first_port(&self) -> u16 {
        self.config.first_port
    }

    /// What each port of the range got so far, summed over the CPUs; index i is port
    /// `first_port + i`.
    pub fn counts(&self, ports: usize) -> anyhow::Result<Vec<SinkCount>> {
        (0..ports.min(usize::from(self.config.ports)) as u32)
            .map(|slot| {
                let per_cpu = self.counts.get(&slot, 0)?;
                Ok(per_cpu
                    .iter()
                    .fold(SinkCount::default(), |sum, c| SinkCount {
                        rtp: sum.rtp + c.rtp,
                        rtp_bytes: sum.rtp_bytes + c.rtp_bytes,
                        rtcp: sum.rtcp + c.rtcp,
                    }))
            })
            .collect()
    }
}

/// The sink object loaded for ports `first_port..first_port + ports`, its programs not
/// yet loaded into the kernel.
fn load(first_port: u16, ports: u16) -> anyhow::Result<(Ebpf, SinkConfig)> {
    if ports == 0 || first_port.checked_add(ports - 1).is_none() {
        bail!("sink ports {first_port}+{ports}: an empty range or past 65535");
    }
    // Kernels that still charge BPF maps to RLIMIT_MEMLOCK need the room; newer ones
    // charge the cgroup and ignore it.
    crate::procfs::raise_soft_limit(libc::RLIMIT_MEMLOCK);
    let config = SinkConfig {
        first_port,
        ports,
        reserved: [0; 4],
    };
    let ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &config, true)
        .map_max_entries(COUNTS_MAP, u32::from(ports))
        .load(program()?)
        .context("loading the sink object")?;
    Ok((ebpf, config))
}
