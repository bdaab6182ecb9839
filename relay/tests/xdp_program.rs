//! The embedded XDP program is a BPF object that aya accepts, with the program, maps
//! and config global named in relay_common. Creating its maps needs CAP_BPF (root
//! here); the program itself is neither loaded into the kernel nor attached.

use aya::maps::{Map, PerCpuArray};
use aya::programs::Program;
use aya::EbpfLoader;
use relay_common::{Class, Config, CONFIG_GLOBAL, COUNTERS_LEN, COUNTERS_MAP, PROGRAM, XSK_MAP};

/// The object, or `None` (with the reason printed) when this build has none.
fn program() -> Option<&'static [u8]> {
    match relay::io::xdp::program() {
        Ok(object) => Some(object),
        Err(unavailable) => {
            eprintln!("skipped: {unavailable}");
            None
        }
    }
}

#[test]
fn embedded_program_has_the_expected_program_maps_and_config() {
    let Some(object) = program() else { return };
    let config = Config { media_port: 8189 };
    let ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &config, true)
        .load(object)
        .expect("aya parses the object, patches its config and creates its maps");

    let programs: Vec<_> = ebpf.programs().map(|(name, _)| name).collect();
    assert!(
        matches!(ebpf.program(PROGRAM), Some(Program::Xdp(_))),
        "no XDP program {PROGRAM:?} among {programs:?}"
    );
    let maps: Vec<_> = ebpf.maps().map(|(name, _)| name).collect();
    assert!(
        matches!(ebpf.map(XSK_MAP), Some(Map::XskMap(_))),
        "no XSKMAP {XSK_MAP:?} among {maps:?}"
    );
    let counters = ebpf
        .map(COUNTERS_MAP)
        .unwrap_or_else(|| panic!("no map {COUNTERS_MAP:?} among {maps:?}"));
    let counters = PerCpuArray::<_, u64>::try_from(counters).expect("a per-CPU array of u64");
    assert_eq!(counters.len(), COUNTERS_LEN);
    for class in Class::ALL {
        let per_cpu = counters.get(&class.counter(), 0).expect("read a counter");
        assert!(per_cpu.iter().all(|&n| n == 0), "{class:?} starts at 0");
    }
}

#[test]
fn config_of_another_layout_is_refused() {
    let Some(object) = program() else { return };
    // The override above is checked against the global's size: a u32 is not a Config.
    let error = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &8189u32, true)
        .load(object)
        .expect_err("a 4-byte override of a 2-byte global was accepted");
    // aya does not re-export aya_obj's ParseError to match on.
    assert!(
        format!("{error:?}").contains("InvalidGlobalData"),
        "{error:?}"
    );
}
