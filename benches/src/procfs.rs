//! What the load tool reads about processes and threads: CPU time and resident memory.

use std::io;
use std::time::Duration;

use relay_testkit::netns::udp_counter;

/// CPU time (user + system) a process has used, to the nanosecond: its CPU-time clock
/// (`clock_getcpuclockid`), which counts all its threads, ended ones too.
/// `/proc/PID/stat` counts in clock ticks (10 ms on common kernels): a quiet relay's few
/// milliseconds in a short window read as none there.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes the clock id it is given.
    match unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } {
        0 => cpu_clock(clock),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// CPU time a process has used in user space and in the kernel (utime, stime), from
/// `/proc/PID/stat`: the ticks the kernel charged to each, a sample of where the time went.
pub fn process_cpu_split(pid: u32) -> io::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_split(&stat, clock_ticks())
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat: {stat}")))
}

/// (utime, stime) of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from
/// the last ')': state is field 3, utime 14 and stime 15.
pub fn parse_stat_split(stat: &str, ticks_per_second: u64) -> Option<(Duration, Duration)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let time = |ticks: u64| {
        Duration::from_secs(ticks / ticks_per_second)
            + Duration::from_nanos((ticks % ticks_per_second) * 1_000_000_000 / ticks_per_second)
    };
    Some((time(utime), time(stime)))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident memory (VmRSS) of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, "VmRSS")
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// A `Key:   1234 kB` line of `/proc/PID/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The kernel's UDP datagram counters (InDatagrams, OutDatagrams) of the network
/// namespace process `pid` is in, from `/proc/PID/net/snmp`.
pub fn udp_datagrams(pid: u32) -> io::Result<(u64, u64)> {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp"))?;
    let counter = |name| udp_counter(&snmp, name);
    counter("InDatagrams")
        .zip(counter("OutDatagrams"))
        .ok_or_else(|| io::Error::other(format!("no Udp counters in /proc/{pid}/net/snmp")))
}

/// Datagrams the kernel dropped for a full receive buffer (UDP `RcvbufErrors`) in the
/// network namespace process `pid` is in.
pub fn udp_rcvbuf_errors(pid: u32) -> io::Result<u64> {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp"))?;
    udp_counter(&snmp, "RcvbufErrors")
        .ok_or_else(|| io::Error::other(format!("no Udp counters in /proc/{pid}/net/snmp")))
}

/// CPU time all cores spent busy (not idle, not waiting for I/O) since boot, from the
/// `cpu` line of /proc/stat.
pub fn machine_busy() -> io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_machine_busy(&stat, clock_ticks())
        .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))
}

/// user + nice + system + irq + softirq + steal of the `cpu` line of /proc/stat.
pub fn parse_machine_busy(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum();
    Some(Duration::from_millis(busy * 1000 / ticks_per_second))
}

/// CPU time of this whole process (all threads), from getrusage(RUSAGE_SELF).
pub fn own_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of the calling thread, from clock_gettime(CLOCK_THREAD_CPUTIME_ID) (ns).
pub fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID).expect("the calling thread's CPU clock")
}

fn cpu_clock(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid value of it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises this process's soft limit of `resource` (`libc::RLIMIT_*`) to its hard
/// limit; children started later inherit it.
pub fn raise_soft_limit(resource: libc::__rlimit_resource_t) {
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(resource, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(resource, &limit);
        }
    }
}

/// Pins the calling thread to `core` (modulo the cores there are); false if refused.
pub fn pin_thread(core: usize) -> bool {
    pin_task(0, core)
}

/// Pins task `tid` (a thread, or a kernel thread) to `core` (modulo the cores there
/// are); false if refused.
pub fn pin_task(tid: u32, core: usize) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core % cores, &mut set);
        libc::sched_setaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        // A command name with spaces and a ')' in it; utime 1234, stime 66.
        let line = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    1234 66 0 0 20 0 5 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat_split("12 (x) S 1 2", 100), None);
        assert_eq!(
            parse_stat_split(line, 100),
            Some((Duration::from_millis(12_340), Duration::from_millis(660)))
        );
    }

    #[test]
    fn status_values_in_kib() {
        let status = "Name:\trelay\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 2 30 5000 40 5 6 7 0 0\ncpu0 50 1 15 2500 20 2 3 3 0 0\n";
        assert_eq!(
            parse_machine_busy(stat, 100),
            Some(Duration::from_millis((100 + 2 + 30 + 5 + 6 + 7) * 10))
        );
        assert_eq!(parse_machine_busy("intr 1 2\n", 100), None);
        assert!(machine_busy().unwrap() > Duration::ZERO);
    }

    #[test]
    fn udp_datagrams_of_a_real_namespace() {
        // This process's namespace has the counters: the real file parses.
        udp_datagrams(std::process::id()).unwrap();
    }

    /// The real files of a running process parse, into the fields they hold. What the
    /// numbers are is not asserted: how much CPU a process gets in a while depends on
    /// how busy the machine is, which no test should.
    #[test]
    fn own_process_readings_parse() {
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // This binary's name has no spaces: here utime and stime are fields 14 and 15
        // counted from the start.
        let fields: Vec<&str> = stat.split_whitespace().collect();
        let ticks = |i: usize| -> u64 { fields[i].parse().unwrap() };
        assert_eq!(
            parse_stat_split(&stat, 100),
            Some((
                Duration::from_millis(ticks(13) * 10),
                Duration::from_millis(ticks(14) * 10)
            )),
            "{stat}"
        );
        let (user, system) = process_cpu_split(pid).unwrap();
        let before = process_cpu(pid).unwrap();
        assert!(before >= user + system, "CPU time only grows");
        // To the nanosecond, not in 10 ms ticks: 2 ms spent in this thread show.
        let thread = thread_cpu();
        while thread_cpu() - thread < Duration::from_millis(2) {
            std::hint::black_box(thread_cpu());
        }
        assert!(process_cpu(pid).unwrap() - before >= Duration::from_millis(2));
        let gone = process_cpu(0x3fff_fff0).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::ESRCH), "{gone}");
        assert!(rss_kib(pid).unwrap() > 100);
        let thread = thread_cpu();
        assert!(thread_cpu() >= thread, "the thread's CPU clock only grows");
    }
}
