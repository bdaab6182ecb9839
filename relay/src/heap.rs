//! The process's heap, and its profile in pprof's format.
//!
//! main.rs makes jemalloc the allocator of the whole process (Rust's allocations and the
//! C libraries' `malloc`), built with its profiler and configured as Go's runtime samples
//! its heap: one allocation per 512 KiB allocated on average (a Poisson process), the
//! allocation's stack recorded until it is freed. jemalloc rather than a sampling wrapper
//! of glibc's malloc: it knows on `free` whether an allocation was sampled (the wrapper
//! would look every free up in a table), its profiler has run in production for years
//! (TiKV, Materialize), and at W1 it kept the relay's RSS where glibc's malloc did
//! (docs/benchmarks.md, section 9).
//!
//! Sampling runs only with `pprof: yes` ([`start_sampling`], as `relay serve` starts);
//! without it jemalloc's profiler costs a counter per allocation, which jemalloc keeps
//! anyway for its own events. `GET /debug/pprof/heap` answers [`profile`]: jemalloc's
//! dump, converted here rather than by the jemalloc_pprof crate, whose profiles have
//! inuse_space alone.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::time::SystemTime;

use pprof::protos;

/// Starts sampling allocations. What was allocated before is not in profiles.
pub fn start_sampling() -> Result<(), String> {
    // SAFETY: prof.active is a bool (jemalloc(3)); writing it is refused (an error)
    // when jemalloc runs without its profiler.
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.active\0", true) }
        .map_err(|e| format!("jemalloc's profiler is off ({e})"))
}

/// The live heap as Go's `/debug/pprof/heap` serves it: samples by stack, with
/// alloc_objects, alloc_space (since sampling started), inuse_objects and inuse_space,
/// unbiased as Go does. Blocking: jemalloc writes its dump to a file, and naming the
/// functions reads the binary's debug info.
pub fn profile() -> Result<protos::Profile, String> {
    let file = tempfile::NamedTempFile::new().map_err(|e| format!("a temporary file: {e}"))?;
    let path = CString::new(file.path().as_os_str().as_encoded_bytes())
        .map_err(|_| "a temporary file's name with a NUL in it".to_string())?;
    // SAFETY: prof.dump takes a NUL-terminated file name (jemalloc(3)); `path` outlives
    // the call, which writes the file before it returns.
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.dump\0", path.as_ptr()) }.map_err(|e| {
        format!("jemalloc wrote no heap profile ({e}): is its profiler off (opt.prof)?")
    })?;
    let text = std::fs::read_to_string(file.path())
        .map_err(|e| format!("reading jemalloc's heap profile: {e}"))?;
    let dump = Dump::parse(&text)?;
    Ok(dump.to_pprof(SystemTime::now(), symbolize))
}

/// One sampled stack of jemalloc's `heap_v2` dump: return addresses from the innermost
/// frame out, and what its sampled allocations count (not yet scaled to the whole heap).
#[derive(Debug, PartialEq)]
struct Stack {
    addresses: Vec<u64>,
    in_use: (u64, u64),
    allocated: (u64, u64),
}

/// jemalloc's `heap_v2` dump (what its `jeprof` reads).
#[derive(Debug, PartialEq)]
struct Dump {
    /// Bytes between samples, on average.
    period: u64,
    stacks: Vec<Stack>,
}

impl Dump {
    /// `heap_v2/PERIOD`, totals, then for each stack `@ ADDRESS...` and its counts in
    /// `  t*: IN_USE_OBJECTS: IN_USE_BYTES [ALLOCATED_OBJECTS: ALLOCATED_BYTES]` (then a
    /// line per thread, and the process's maps, which are not needed here).
    fn parse(text: &str) -> Result<Dump, String> {
        let bad = |line: &str| format!("jemalloc's heap profile has '{line}'");
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let period = first
            .strip_prefix("heap_v2/")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad(first))?;
        let mut stacks = Vec::new();
        while let Some(line) = lines.next() {
            if line.starts_with("MAPPED_LIBRARIES") {
                break;
            }
            let Some(addresses) = line.strip_prefix('@') else {
                continue;
            };
            let addresses = addresses
                .split_whitespace()
                .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16))
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|_| bad(line))?;
            let counts = lines.next().unwrap_or_default();
            let numbers: Vec<u64> = counts
                .trim()
                .strip_prefix("t*:")
                .ok_or_else(|| bad(counts))?
                .split(|c: char| c == ':' || c == '[' || c == ']' || c.is_whitespace())
                .filter(|n| !n.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| bad(counts))?;
            let [in_objects, in_bytes, all_objects, all_bytes] = numbers[..] else {
                return Err(bad(counts));
            };
            stacks.push(Stack {
                addresses,
                in_use: (in_objects, in_bytes),
                allocated: (all_objects, all_bytes),
            });
        }
        Ok(Dump { period, stacks })
    }

    /// The profile.proto of this dump, its addresses named by `symbolize`.
    fn to_pprof(
        &self,
        taken: SystemTime,
        mut symbolize: impl FnMut(u64) -> Vec<Frame>,
    ) -> protos::Profile {
        let mut strings = Strings::default();
        let mut value_type = |ty: &str, unit: &str| protos::ValueType {
            ty: strings.index(ty),
            unit: strings.index(unit),
        };
        // Go's four, in Go's order; pprof shows inuse_space unless told otherwise.
        let sample_type = vec![
            value_type("alloc_objects", "count"),
            value_type("alloc_space", "bytes"),
            value_type("inuse_objects", "count"),
            value_type("inuse_space", "bytes"),
        ];
        let period_type = value_type("space", "bytes");
        let mut locations: HashMap<u64, (u64, bool)> = HashMap::new();
        let mut functions: HashMap<(String, String), u64> = HashMap::new();
        let mut profile = protos::Profile {
            sample_type,
            period_type: Some(period_type),
            period: self.period as i64,
            ..Default::default()
        };
        for stack in &self.stacks {
            let mut ids = Vec::with_capacity(stack.addresses.len());
            for &address in &stack.addresses {
                let (id, allocator) = *locations.entry(address).or_insert_with(|| {
                    let frames = symbolize(address);
                    let allocator = frames.iter().any(Frame::is_allocator);
                    let line = frames
                        .into_iter()
                        .map(|frame| {
                            let next = profile.function.len() as u64 + 1;
                            let key = (frame.name, frame.file);
                            let function_id = *functions.entry(key.clone()).or_insert_with(|| {
                                profile.function.push(protos::Function {
                                    id: next,
                                    name: strings.index(&key.0),
                                    system_name: strings.index(&frame.system_name),
                                    filename: strings.index(&key.1),
                                    start_line: 0,
                                });
                                next
                            });
                            protos::Line {
                                function_id,
                                line: frame.line,
                            }
                        })
                        .collect();
                    let id = profile.location.len() as u64 + 1;
                    profile.location.push(protos::Location {
                        id,
                        address: address.saturating_sub(1),
                        line,
                        ..Default::default()
                    });
                    (id, allocator)
                });
                ids.push((id, allocator));
            }
            // The innermost frames are the allocator's: the sample goes to what called it.
            let first = ids.iter().rposition(|&(_, allocator)| allocator);
            let from = first.map_or(0, |i| (i + 1).min(ids.len() - 1));
            let (objects, bytes) = scale(stack.allocated, self.period);
            let (live_objects, live_bytes) = scale(stack.in_use, self.period);
            profile.sample.push(protos::Sample {
                location_id: ids[from..].iter().map(|&(id, _)| id).collect(),
                value: vec![objects, bytes, live_objects, live_bytes],
                label: Vec::new(),
            });
        }
        profile.default_sample_type = strings.index("inuse_space");
        profile.time_nanos = taken
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64;
        profile.string_table = strings.table;
        profile
    }
}

/// `(objects, bytes)` of the sampled allocations of one stack, scaled to an estimate of
/// all of its allocations: an allocation of `size` bytes is sampled with probability
/// 1 - exp(-size / period). Go's `scaleHeapSample` and jeprof do the same; jemalloc
/// writes its counts so that this formula gives back the exact figures it tracks.
fn scale((objects, bytes): (u64, u64), period: u64) -> (i64, i64) {
    if objects == 0 || bytes == 0 {
        return (0, 0);
    }
    let average = bytes as f64 / objects as f64;
    let scale = 1.0 / (1.0 - (-average / period as f64).exp());
    (
        (objects as f64 * scale) as i64,
        (bytes as f64 * scale) as i64,
    )
}

/// A function at an address; an address inlined into others has several, the
/// innermost first.
#[derive(Debug, Clone)]
struct Frame {
    name: String,
    system_name: String,
    file: String,
    line: i64,
}

impl Frame {
    /// jemalloc itself, Rust's allocator shims and `alloc`'s allocation plumbing.
    fn is_allocator(&self) -> bool {
        let name = self.name.trim_start_matches('<');
        [
            "_rjem_",
            "tikv_jemallocator::",
            "__rust_",
            "__rdl_",
            "__rg_",
        ]
        .iter()
        .chain(&["alloc::alloc::", "alloc::raw_vec::"])
        .any(|p| name.starts_with(p))
            || [
                "malloc",
                "calloc",
                "realloc",
                "mallocx",
                "rallocx",
                "posix_memalign",
            ]
            .contains(&name)
    }
}

/// Names the code at `address` (a return address) from the binary's symbols and
/// debug info.
fn symbolize(address: u64) -> Vec<Frame> {
    let mut frames = Vec::new();
    // The call is the instruction before the return address.
    let call = address.saturating_sub(1) as usize as *mut c_void;
    backtrace::resolve(call, |symbol| {
        let Some(name) = symbol.name() else { return };
        frames.push(Frame {
            name: format!("{name:#}"),
            system_name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
            file: symbol
                .filename()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            line: symbol.lineno().map_or(0, i64::from),
        });
    });
    if frames.is_empty() {
        let unknown = format!("{address:#x}");
        frames.push(Frame {
            name: unknown.clone(),
            system_name: unknown,
            file: String::new(),
            line: 0,
        });
    }
    frames
}

/// A profile's string table: index 0 is the empty string.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl Strings {
    fn index(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "heap_v2/524288
  t*: 3: 1572864 [5: 2621440]
  t0: 3: 1572864 [5: 2621440] main
@ 0x10 0x20 0x30
  t*: 2: 1048576 [4: 2097152]
  t0: 2: 1048576 [4: 2097152]
@ 0x40 0x30
  t*: 1: 524288 [1: 524288]
  t0: 1: 524288 [1: 524288]
@ 0x50
  t*: 0: 0 [9: 90]

MAPPED_LIBRARIES:
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 1 /usr/bin/relay
";

    fn frame(name: &str) -> Frame {
        Frame {
            name: name.into(),
            system_name: name.into(),
            file: "src/x.rs".into(),
            line: 7,
        }
    }

    #[test]
    fn parses_jemallocs_dump() {
        let dump = Dump::parse(DUMP).unwrap();
        assert_eq!(dump.period, 524288);
        assert_eq!(dump.stacks.len(), 3);
        assert_eq!(dump.stacks[0].addresses, [0x10, 0x20, 0x30]);
        assert_eq!(dump.stacks[0].in_use, (2, 1048576));
        assert_eq!(dump.stacks[0].allocated, (4, 2097152));
        assert_eq!(dump.stacks[2].in_use, (0, 0));
        assert!(Dump::parse("heap_v3/1\n").is_err());
        assert!(Dump::parse("heap_v2/1\n@ 0x1\n  t*: 1: 2\n").is_err());
        assert!(Dump::parse("heap_v2/1\n@ zz\n  t*: 1: 2 [0: 0]\n").is_err());
    }

    #[test]
    fn scales_as_go_does() {
        // An allocation of the period is sampled with probability 1 - 1/e.
        let (objects, bytes) = scale((1, 524288), 524288);
        assert_eq!(objects, 1);
        assert_eq!(bytes, (524288.0 / (1.0 - (-1.0f64).exp())) as i64);
        // Small allocations are rarely sampled: each sample stands for many.
        assert_eq!(scale((1, 64), 524288).0, 8192);
        assert_eq!(scale((0, 0), 524288), (0, 0));
    }

    #[test]
    fn samples_go_to_the_allocators_caller_with_gos_types() {
        let names = HashMap::from([
            (0x10, vec![frame("_rjem_je_prof_backtrace")]),
            (
                0x20,
                vec![frame("alloc::raw_vec::finish_grow"), frame("__rust_alloc")],
            ),
            (0x30, vec![frame("relay::track::History::push")]),
            (0x40, vec![frame("relay::session::Session::new")]),
            (0x50, vec![frame("malloc")]),
        ]);
        let p = Dump::parse(DUMP)
            .unwrap()
            .to_pprof(SystemTime::now(), |a| names[&a].clone());
        let s = |i: i64| p.string_table[i as usize].as_str();
        let types: Vec<_> = p.sample_type.iter().map(|t| (s(t.ty), s(t.unit))).collect();
        assert_eq!(
            types,
            [
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes")
            ]
        );
        assert_eq!(s(p.default_sample_type), "inuse_space");
        assert_eq!(p.period, 524288);
        let leaf = |i: usize| {
            let loc = &p.location[p.sample[i].location_id[0] as usize - 1];
            let f = &p.function[loc.line[0].function_id as usize - 1];
            s(f.name)
        };
        assert_eq!(leaf(0), "relay::track::History::push");
        assert_eq!(p.sample[0].location_id.len(), 1);
        assert_eq!(leaf(1), "relay::session::Session::new");
        assert_eq!(p.sample[1].location_id.len(), 2);
        // A stack of nothing but the allocator keeps its outermost frame.
        assert_eq!(leaf(2), "malloc");
        assert_eq!(p.sample[0].value[3], scale((2, 1048576), 524288).1);
        assert_eq!(p.sample[2].value[2..], [0, 0]);
        // Locations are shared between stacks; inlined frames are lines of one location.
        assert_eq!(p.location.len(), 5);
        assert_eq!(p.location[1].line.len(), 2);
    }
}
