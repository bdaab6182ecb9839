//! Loads the embedded XDP program, attaches it to one interface and gives userspace its
//! three levers: which AF_XDP socket serves each RX queue, which remotes are admitted
//! (the rest reach userspace only as rate-limited STUN), and the program's counters.
//! With `XdpOptions::debug_logs` the program also logs its decisions, read here on a
//! thread of their own.
//!
//! The attachment is a BPF link owned by this process: the kernel detaches the program
//! when the last descriptor of the link closes, on drop and on any exit, `kill -9`
//! included, so a restarted relay finds the interface free.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError, PerCpuArray, XskMap};
use aya::programs::links::FdLink;
use aya::programs::{ProgramError, ProgramInfo, Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;
use relay_common::{
    Config, Counter, Remote, ADMITTED_LEN, ADMITTED_MAP, ADMITTED_VALUE, CONFIG_GLOBAL,
    COUNTERS_MAP, PROGRAM, STUN_GLOBAL_MAP, XSK_MAP,
};

use super::{program, Unavailable};

/// How to go on without XDP, appended to every error that stops the relay from using it.
pub(super) const RUN_PORTABLE: &str =
    "to run without XDP, start the relay without --xdp and with xdpInterface empty (portable \
     mode, ordinary UDP sockets)";

/// Where the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before the kernel allocates anything for the packet.
    Native,
    /// In the kernel's network stack, after it has copied the packet into a socket
    /// buffer: works on any interface but costs most of what XDP saves.
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpOptions {
    /// The relay's media UDP port: the only traffic the program takes from the kernel.
    pub media_port: NonZeroU16,
    pub mode: XdpMode,
    /// STUN datagrams per second that one unknown source address may send.
    pub stun_rate: NonZeroU32,
    /// STUN datagrams an unknown source address may send at once.
    pub stun_burst: NonZeroU32,
    /// STUN datagrams per second that all unknown sources together may send (each
    /// within its own rate first), split evenly among the `queues` RX queues.
    pub stun_global_rate: NonZeroU32,
    /// STUN datagrams all unknown sources together may send at once.
    pub stun_global_burst: NonZeroU32,
    /// RX queues that may get an AF_XDP socket: queue indices `0..queues`.
    pub queues: NonZeroU32,
    /// The program logs what it does with each datagram to the media port at debug
    /// level (target `relay_common::LOG_TARGET`, through the `log` crate). Off, the
    /// verifier removes the logging code: it costs the packets nothing.
    pub debug_logs: bool,
}

/// Why the XDP program cannot be used, or a later operation on it failed. The messages
/// of the first kind say how to run in portable mode instead.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("{0}; {RUN_PORTABLE}", RUN_PORTABLE = RUN_PORTABLE)]
    Unavailable(#[from] Unavailable),
    #[error(
        "{step} needs root, or the capabilities CAP_BPF, CAP_PERFMON (without it the verifier \
         refuses the program's packet pointer arithmetic), CAP_NET_ADMIN, CAP_NET_RAW and \
         CAP_IPC_LOCK (for the AF_XDP sockets' memory): grant them with \
         `setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw,cap_ipc_lock+ep` on the relay \
         binary (kernels before 5.8 need CAP_SYS_ADMIN): {source}; {RUN_PORTABLE}",
        RUN_PORTABLE = RUN_PORTABLE
    )]
    NotPermitted {
        step: &'static str,
        source: io::Error,
    },
    #[error("there is no network interface {interface:?} (see `ip link`); {RUN_PORTABLE}", RUN_PORTABLE = RUN_PORTABLE)]
    NoSuchInterface { interface: String },
    #[error(
        "the driver of {interface} has no native XDP (`ethtool -i {interface}` names it): \
         ask for generic XDP mode (`xdpMode: generic`: it works on any interface, but the \
         kernel copies every packet into a socket buffer first, which costs most of what XDP \
         saves), or {RUN_PORTABLE}",
        RUN_PORTABLE = RUN_PORTABLE
    )]
    NoNativeXdp {
        interface: String,
        source: io::Error,
    },
    #[error(
        "{interface} already has an XDP program (another relay? see `ip link show dev {interface}`; \
         `ip link set dev {interface} xdp off` removes one that is not held by a process): \
         {source}; {RUN_PORTABLE}",
        RUN_PORTABLE = RUN_PORTABLE
    )]
    Busy {
        interface: String,
        source: io::Error,
    },
    #[error("this kernel ({release}) is too old: {what}; {RUN_PORTABLE}", RUN_PORTABLE = RUN_PORTABLE)]
    KernelTooOld { what: &'static str, release: String },
    #[error(
        "the kernel's verifier refused the XDP program (it needs Linux 5.9 or newer; on \
         such a kernel this is a bug in the relay): {source}; {RUN_PORTABLE}; verifier log:\n{log}",
        RUN_PORTABLE = RUN_PORTABLE
    )]
    Rejected { source: io::Error, log: String },
    #[error("{step} failed: {source}; {RUN_PORTABLE}", RUN_PORTABLE = RUN_PORTABLE)]
    Kernel {
        step: &'static str,
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error("RX queue {queue} has no slot: the program was loaded for {queues} queues")]
    NoSuchQueue { queue: u32, queues: u32 },
    #[error("the XDP admission table is full ({ADMITTED_LEN} remotes)", ADMITTED_LEN = ADMITTED_LEN)]
    AdmissionFull,
    #[error("{op} in the XDP program's map {map}: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        source: MapError,
    },
}

/// The loaded program, its maps and (once attached) its link. Dropping it detaches
/// the program.
pub struct XdpProgram {
    // Fields drop in order: the link first, so the program leaves the interface before
    // its maps go.
    link: Option<Attached>,
    /// Times the link was found detached and the program attached again.
    reattached: u64,
    logs: Option<ProgramLogs>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    admission: Admission,
    ebpf: Ebpf,
}

impl XdpProgram {
    /// Loads the program for `options` and attaches it to `interface` (resolved in the
    /// calling thread's network namespace) in `options.mode`, through a BPF link.
    pub fn attach(interface: &str, options: &XdpOptions) -> Result<XdpProgram, XdpError> {
        let mut program = XdpProgram::load(options)?;
        program.attach_link(interface, options.mode)?;
        Ok(program)
    }

    /// Loads the program for `options` into the kernel (the verifier checks it) without
    /// attaching it anywhere: for `BPF_PROG_TEST_RUN`, or to check that XDP can be used.
    pub fn load(options: &XdpOptions) -> Result<XdpProgram, XdpError> {
        let object = program()?;
        raise_memlock_limit();
        let config = Config::new(
            options.media_port.get(),
            options.stun_rate,
            options.stun_burst,
            options.stun_global_rate,
            options.stun_global_burst,
            options.queues,
        );
        // aya-log's level in the program (0: below error, every statement off). The
        // verifier sees the patched value and removes the statements it disables.
        let log_level = if options.debug_logs {
            aya_log::Level::Debug as u8
        } else {
            0
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .override_global(aya_log::LEVEL, &log_level, true)
            .map_max_entries(XSK_MAP, options.queues.get())
            .map_max_entries(STUN_GLOBAL_MAP, options.queues.get())
            .load(object)
            .map_err(|error| from_load_error("creating the XDP program's maps", error))?;
        let xdp = xdp_program(&mut ebpf)?;
        xdp.load().map_err(|error| match error {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => match io_error.raw_os_error() {
                Some(libc::EPERM) => XdpError::NotPermitted {
                    step: "loading the XDP program",
                    source: io_error,
                },
                // What the verifier allows only with CAP_PERFMON ("... prohibited for !root").
                Some(libc::EACCES) if verifier_log.to_string().contains("!root") => {
                    XdpError::NotPermitted {
                        step: "verifying the XDP program",
                        source: io_error,
                    }
                }
                _ => XdpError::Rejected {
                    source: io_error,
                    log: verifier_log.to_string(),
                },
            },
            error => from_load_error("loading the XDP program", error),
        })?;
        let admitted = HashMap::try_from(take_map(&mut ebpf, ADMITTED_MAP)?)
            .map_err(map_error("typing", ADMITTED_MAP))?;
        let xsks = XskMap::try_from(take_map(&mut ebpf, XSK_MAP)?)
            .map_err(map_error("typing", XSK_MAP))?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, COUNTERS_MAP)?)
            .map_err(map_error("typing", COUNTERS_MAP))?;
        let logs = options
            .debug_logs
            .then(|| ProgramLogs::start(&mut ebpf))
            .transpose()?;
        Ok(XdpProgram {
            link: None,
            reattached: 0,
            logs,
            xsks,
            counters,
            admission: Admission { map: admitted },
            ebpf,
        })
    }

    fn attach_link(&mut self, interface: &str, mode: XdpMode) -> Result<(), XdpError> {
        let aya_mode = match mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => {
                tracing::warn!(
                    interface,
                    "XDP in generic mode: the kernel copies every packet into a socket buffer \
                     before the program runs, which costs most of what XDP saves"
                );
                AyaXdpMode::Skb
            }
        };
        let xdp = xdp_program(&mut self.ebpf)?;
        let link_id = xdp
            .attach(interface, aya_mode)
            .map_err(|error| from_attach_error(interface, error))?;
        let link = xdp
            .take_link(link_id)
            .map_err(|error| from_load_error("taking the XDP link", error))?;
        // aya falls back to a netlink attachment (one that outlives the process) when the
        // kernel refuses a link; dropping that one detaches it again.
        let link = FdLink::try_from(link).map_err(|_| XdpError::KernelTooOld {
            what: "it refused a link-based XDP attachment (Linux 5.9 or newer has it), and \
                   without one a killed relay would leave its program on the interface",
            release: kernel_release(),
        })?;
        let fd = link.info().ok().and_then(|info| link_fd(info.id()));
        self.link = Some(Attached {
            _link: link,
            fd,
            interface: interface.to_string(),
            mode,
        });
        Ok(())
    }

    /// Attaches the program again if its link was detached from the interface by hand
    /// (`bpftool link detach`; the kernel refuses `ip link set dev IFACE xdp off` while
    /// the link holds it). Until then the media port's traffic goes to the kernel, where
    /// nothing reads it. True when it attached it again.
    pub fn reattach_if_detached(&mut self) -> Result<bool, XdpError> {
        let Some(attached) = &self.link else {
            return Ok(false);
        };
        if attached.is_attached() {
            return Ok(false);
        }
        let (interface, mode) = (attached.interface.clone(), attached.mode);
        // The detached link stays until a new one replaces it, so that a failure here
        // is found again on the next call.
        self.attach_link(&interface, mode)?;
        self.reattached += 1;
        Ok(true)
    }

    /// Times [`XdpProgram::reattach_if_detached`] attached the program again.
    pub fn reattached(&self) -> u64 {
        self.reattached
    }

    /// The interface the program is attached to (or was, if detached by hand).
    pub fn interface(&self) -> Option<&str> {
        self.link.as_ref().map(|a| a.interface.as_str())
    }

    /// Steers the media packets of RX queue `queue` to `socket`, an AF_XDP socket bound
    /// to that queue of the attached interface. The kernel forgets the socket when it
    /// closes; until a queue has one, its media packets go to the kernel.
    pub fn register_socket(&mut self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), XdpError> {
        let queues = self.xsks.len();
        if queue >= queues {
            return Err(XdpError::NoSuchQueue { queue, queues });
        }
        self.xsks
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(map_error("registering an AF_XDP socket", XSK_MAP))
    }

    /// A handle that admits and revokes remotes, for a worker thread to own.
    pub fn admission(&self) -> Result<Admission, XdpError> {
        self.admission.try_clone()
    }

    /// Every counter summed over all CPUs, in `Counter::ALL` order.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, XdpError> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let per_cpu = self
                    .counters
                    .get(&counter.index(), 0)
                    .map_err(map_error("reading", COUNTERS_MAP))?;
                Ok((counter, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The program's file descriptor (for `BPF_PROG_TEST_RUN`).
    pub fn fd(&self) -> Result<BorrowedFd<'_>, XdpError> {
        let fd = self
            .xdp()?
            .fd()
            .map_err(|error| from_load_error("the program's descriptor", error))?;
        Ok(fd.as_fd())
    }

    /// What the kernel knows of the loaded program: its id, size, verified instructions.
    pub fn info(&self) -> Result<ProgramInfo, XdpError> {
        self.xdp()?
            .info()
            .map_err(|error| from_load_error("the program's info", error))
    }

    fn xdp(&self) -> Result<&Xdp, XdpError> {
        self.ebpf
            .program(PROGRAM)
            .and_then(|program| program.try_into().ok())
            .ok_or_else(not_in_object(PROGRAM))
    }
}

impl fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpProgram")
            .field("attached", &self.link.as_ref().map(|a| &a.interface))
            .field("queues", &self.xsks.len())
            .field("debug_logs", &self.logs.is_some())
            .finish_non_exhaustive()
    }
}

/// The program's link to its interface, and what it takes to notice that someone
/// detached it.
struct Attached {
    /// Held, not read: the program stays on the interface while it is open.
    _link: FdLink,
    /// The link's descriptor in this process, if found: /proc/self/fdinfo/FD names the
    /// interface it holds (aya gives neither the descriptor nor that part of its info).
    fd: Option<i32>,
    interface: String,
    mode: XdpMode,
}

impl Attached {
    /// False once the kernel says the link holds no interface (`ifindex: 0`); true when
    /// it cannot tell.
    fn is_attached(&self) -> bool {
        let Some(fd) = self.fd else {
            return true;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            return true;
        };
        fdinfo_field(&info, "ifindex") != Some(0)
    }
}

/// The descriptor of this process's BPF link `id`, found in /proc/self/fdinfo.
fn link_fd(id: u32) -> Option<i32> {
    std::fs::read_dir("/proc/self/fdinfo")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| {
            let info = std::fs::read_to_string(entry.path()).ok()?;
            let fd = entry.file_name().to_str()?.parse().ok()?;
            (fdinfo_field(&info, "link_id") == Some(id)).then_some(fd)
        })
}

/// A number of a descriptor's fdinfo ("ifindex:\t3").
fn fdinfo_field(info: &str, name: &str) -> Option<u32> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// Reads the program's log records (its ring buffer) on a thread of its own, off the
/// workers', and hands them to the `log` crate, which tracing-subscriber bridges into
/// the relay's log. Dropping it stops the thread.
struct ProgramLogs {
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl ProgramLogs {
    /// How long the reader sleeps without records before it checks `stop`.
    const STOP_CHECK_MS: libc::c_int = 200;

    fn start(ebpf: &mut Ebpf) -> Result<ProgramLogs, XdpError> {
        let mut logger = EbpfLogger::init(ebpf).map_err(|error| XdpError::Kernel {
            step: "opening the XDP program's log",
            source: error.into(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = std::thread::Builder::new()
            .name("xdp-logs".to_owned())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut ready = libc::pollfd {
                            fd: logger.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd. Woken or timed out, flush reads
                        // whatever is there.
                        unsafe { libc::poll(&mut ready, 1, Self::STOP_CHECK_MS) };
                        logger.flush();
                    }
                }
            })
            .map_err(|error| XdpError::Kernel {
                step: "starting the XDP program's log reader",
                source: error.into(),
            })?;
        Ok(ProgramLogs {
            stop,
            reader: Some(reader),
        })
    }
}

impl Drop for ProgramLogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Admits and revokes remotes in the program's admission map. Each handle owns a
/// descriptor of the map, so workers can hold one each and use it without locking.
#[derive(Debug)]
pub struct Admission {
    map: HashMap<MapData, Remote, u8>,
}

impl Admission {
    /// Lets every datagram from `remote` to the media port reach userspace.
    pub fn admit(&mut self, remote: SocketAddr) -> Result<(), XdpError> {
        self.map
            .insert(Remote::from(remote), ADMITTED_VALUE, 0)
            .map_err(|error| match error {
                MapError::SyscallError(ref syscall)
                    if syscall.io_error.raw_os_error() == Some(libc::E2BIG) =>
                {
                    XdpError::AdmissionFull
                }
                error => map_error("admitting a remote", ADMITTED_MAP)(error),
            })
    }

    /// Back to STUN only, rate-limited, for `remote`. Revoking a remote that is not
    /// admitted is not an error.
    pub fn revoke(&mut self, remote: SocketAddr) -> Result<(), XdpError> {
        match self.map.remove(&Remote::from(remote)) {
            Err(MapError::SyscallError(syscall))
                if syscall.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            result => result.map_err(map_error("revoking a remote", ADMITTED_MAP)),
        }
    }

    pub fn is_admitted(&self, remote: SocketAddr) -> Result<bool, XdpError> {
        match self.map.get(&Remote::from(remote), 0) {
            Ok(_) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(error) => Err(map_error("looking up a remote", ADMITTED_MAP)(error)),
        }
    }

    /// Another handle on the same map (a duplicated descriptor).
    pub fn try_clone(&self) -> Result<Admission, XdpError> {
        let fd = self
            .map
            .map()
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|error| XdpError::Kernel {
                step: "duplicating the admission map's descriptor",
                source: error.into(),
            })?;
        let map = MapData::from_fd(fd)
            .and_then(Map::from_map_data)
            .and_then(HashMap::try_from)
            .map_err(map_error("reopening", ADMITTED_MAP))?;
        Ok(Admission { map })
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    ebpf.program_mut(PROGRAM)
        .and_then(|program| program.try_into().ok())
        .ok_or_else(not_in_object(PROGRAM))
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, XdpError> {
    ebpf.take_map(name).ok_or_else(not_in_object(name))
}

/// The embedded object lacks something relay_common names: a build out of step.
fn not_in_object(name: &'static str) -> impl FnOnce() -> XdpError {
    move || XdpError::Kernel {
        step: "finding the program's parts",
        source: format!("the embedded object has no {name}: rebuild the relay").into(),
    }
}

fn map_error(op: &'static str, map: &'static str) -> impl FnOnce(MapError) -> XdpError {
    move |source| XdpError::Map { op, map, source }
}

/// Errors from loading: missing privileges and a missing bpf() are told apart from the rest.
fn from_load_error(
    step: &'static str,
    error: impl Into<Box<dyn StdError + Send + Sync>>,
) -> XdpError {
    let error = error.into();
    match os_error(&*error) {
        Some(libc::EPERM) => XdpError::NotPermitted {
            step,
            source: io::Error::from_raw_os_error(libc::EPERM),
        },
        Some(libc::ENOSYS) => XdpError::KernelTooOld {
            what: "it has no bpf() system call (CONFIG_BPF_SYSCALL)",
            release: kernel_release(),
        },
        _ => XdpError::Kernel {
            step,
            source: error,
        },
    }
}

fn from_attach_error(interface: &str, error: ProgramError) -> XdpError {
    let interface = interface.to_owned();
    if let ProgramError::UnknownInterface { .. } = error {
        return XdpError::NoSuchInterface { interface };
    }
    match os_error(&error) {
        Some(libc::EOPNOTSUPP) => XdpError::NoNativeXdp {
            interface,
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        },
        Some(code @ (libc::EBUSY | libc::EEXIST)) => XdpError::Busy {
            interface,
            source: io::Error::from_raw_os_error(code),
        },
        _ => from_load_error("attaching the XDP program", error),
    }
}

/// The errno of the first `io::Error` in `error`'s chain of sources.
fn os_error(error: &(dyn StdError + 'static)) -> Option<i32> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        next = error.source();
    }
    None
}

/// Raises the soft RLIMIT_MEMLOCK to the hard limit. Kernels since 5.11 charge BPF maps
/// to the cgroup instead, and an unprivileged process cannot raise the hard limit: so
/// this is best effort, for older kernels.
fn raise_memlock_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                tracing::debug!(error = %io::Error::last_os_error(), "raising RLIMIT_MEMLOCK");
            }
        }
    }
}

/// `uname -r`, for error messages.
fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; `release` is NUL-terminated.
    unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut name) != 0 {
            return "unknown release".to_owned();
        }
        std::ffi::CStr::from_ptr(name.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::fdinfo_field;

    #[test]
    fn fdinfo_fields_are_read_by_their_whole_name() {
        // A detached XDP link, as Linux 6.x prints it.
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nlink_type:\txdp\nlink_id:\t12\n\
                    prog_tag:\tb1c8d6f2e0a3c4d5\nprog_id:\t34\nifindex:\t0\n";
        assert_eq!(fdinfo_field(info, "link_id"), Some(12));
        assert_eq!(fdinfo_field(info, "ifindex"), Some(0));
        assert_eq!(fdinfo_field(info, "link_type"), None, "not a number");
        assert_eq!(fdinfo_field(info, "prog"), None);
    }
}
