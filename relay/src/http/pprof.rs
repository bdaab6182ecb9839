//! `pprof: yes`: CPU and heap profiles as Go's net/http/pprof serves them, because that
//! is how MediaMTX's users diagnose a server: `GET /debug/pprof/profile?seconds=N`
//! samples every thread for N seconds (default 30, at most 300) at 99 Hz, `GET
//! /debug/pprof/heap` reads the live heap's sampled allocations (crate::heap); both
//! answer a gzip-compressed profile.proto that `go tool pprof`, `pprof` and speedscope
//! read. pprof-rs samples with SIGPROF only while a profile is being taken, so a relay
//! with `pprof: yes` costs nothing there until someone asks. One CPU profile at a time.

use std::io::Write;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::text;

const DEFAULT_SECONDS: u64 = 30;
const MAX_SECONDS: u64 = 300;
/// Go's default rate; off the 100 Hz of timers, so samples do not beat with them.
const FREQUENCY: i32 = 99;

pub const PROFILE: &str = "/debug/pprof/profile";
pub const HEAP: &str = "/debug/pprof/heap";

/// The `seconds` of a profile request, or why not.
fn seconds(query: &str) -> Result<u64, String> {
    let given = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "seconds")
        .map(|(_, v)| v.into_owned());
    match given {
        None => Ok(DEFAULT_SECONDS),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(n),
            _ => Err(format!("seconds must be 1 to {MAX_SECONDS}, not '{v}'")),
        },
    }
}

/// Samples the process for the request's `seconds` and answers the profile.
pub async fn profile(query: &str) -> Response {
    let seconds = match seconds(query) {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    // Samples taken inside libgcc's unwinder would unwind it from within (a deadlock),
    // and vdso's unwind tables are unreliable: those are dropped. pprof-rs also advises
    // dropping libc's, but relay spends most of its time in syscalls made from libc
    // (sendmmsg, recvmmsg, epoll_wait): without them a profile of a loaded relay was
    // empty. The deadlock that advice avoids needs a sample inside dl_iterate_phdr,
    // which runs when a panic unwinds, and a panic stops relay anyway.
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libgcc", "vdso"])
        .build()
    {
        Ok(guard) => guard,
        Err(e) => {
            return text(
                StatusCode::CONFLICT,
                format!("cannot start profiling ({e}): is another profile being taken?"),
            )
        }
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    respond("profile", move || {
        let report = guard.report().build().map_err(|e| e.to_string())?;
        report.pprof().map_err(|e| e.to_string())
    })
    .await
}

/// The live heap by allocating stack.
pub async fn heap() -> Response {
    respond("heap", crate::heap::profile).await
}

/// Answers the profile `take` makes (off the async threads: it symbolizes), gzipped as
/// Go serves profiles, as a download named `name`.
async fn respond(
    name: &str,
    take: impl FnOnce() -> Result<pprof::protos::Profile, String> + Send + 'static,
) -> Response {
    let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let profile = take();
        // Naming the functions mapped the binary's debug info and parsed it: ~250 MB of
        // RSS at W1 that the symbolizer would otherwise keep for the next profile.
        backtrace::clear_symbol_cache();
        let profile = profile?;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&prost::Message::encode_to_vec(&profile))
            .map_err(|e| e.to_string())?;
        gzip.finish().map_err(|e| e.to_string())
    })
    .await;
    match encoded {
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            body,
        )
            .into_response(),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the profile: {e}"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profiling failed inside the relay: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_to_go_s_and_are_bounded() {
        assert_eq!(seconds(""), Ok(30));
        assert_eq!(seconds("seconds=5"), Ok(5));
        assert!(seconds("seconds=0").is_err());
        assert!(seconds("seconds=301").is_err());
        assert!(seconds("seconds=abc").unwrap_err().contains("'abc'"));
    }
}
