//! Writes a suite run into docs/benchmarks.md (between its `suite:begin` and
//! `suite:end` markers, W1R between `suite-w1r:begin` and `suite-w1r:end`) and its plots
//! into `plots/` next to it. Only the sections the run has results for are rewritten: a
//! run of W1R alone leaves the other workloads' results and plots as they were.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};

use crate::plot::{Chart, Series};
use crate::suite_results::{Results, Run, ServerKind, Workload, KEEPS_UP_LOSS};

const BEGIN: &str =
    "<!-- suite:begin (written by `relay-bench suite --docs`; edits here are lost) -->";
const END: &str = "<!-- suite:end -->";
const W1R_BEGIN: &str =
    "<!-- suite-w1r:begin (written by `relay-bench suite --docs`; edits here are lost) -->";
const W1R_END: &str = "<!-- suite-w1r:end -->";
/// How `unmeasured` entries of W1R begin.
const W1R_TAG: &str = "W1R ";

pub fn write(docs: &Path, results: &Results, command: &str) -> anyhow::Result<()> {
    let mut text =
        std::fs::read_to_string(docs).with_context(|| format!("reading {}", docs.display()))?;
    let others = results.runs.iter().any(|r| r.workload != Workload::W1r)
        || !results.churn.is_empty()
        || !results.setup.is_empty()
        || !results.xdp.is_empty()
        || results.unmeasured.iter().any(|u| !u.starts_with(W1R_TAG));
    let w1r = runs(results, Workload::W1r).next().is_some()
        || results.unmeasured.iter().any(|u| u.starts_with(W1R_TAG));
    if others {
        let plots = docs.parent().unwrap_or(Path::new(".")).join("plots");
        std::fs::create_dir_all(&plots)?;
        for (name, chart) in charts(results) {
            std::fs::write(plots.join(name), chart.to_svg())?;
        }
        text = replace_between(&text, BEGIN, END, &section(results, command))
            .with_context(|| docs.display().to_string())?;
    }
    if w1r {
        text = replace_between(&text, W1R_BEGIN, W1R_END, &w1r_section(results, command))
            .with_context(|| docs.display().to_string())?;
    }
    std::fs::write(docs, text)?;
    Ok(())
}

/// `text` with what lies between the markers replaced by `section`.
fn replace_between(text: &str, begin: &str, end: &str, section: &str) -> anyhow::Result<String> {
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        bail!("no `{begin}` ... `{end}` markers");
    };
    Ok(format!("{}{begin}\n{section}{}", &text[..b], &text[e..]))
}

/// W1R: the W1 load pulled from one RTSP server; the servers' CPU and RSS and the RTSP
/// server's CPU, per transport.
fn w1r_section(r: &Results, command: &str) -> String {
    let mut s = String::new();
    let h = &r.host;
    let _ = writeln!(
        s,
        "\nOne run of `{command}` on {} cores ({}), kernel {}. CPU: the CPU time (user + \
         system) of each process over the window, % of one core; RSS at the window's end. \
         \"RTSP server\" is the GStreamer RTSP server process serving all the streams to \
         the server under test.\n",
        h.cores, h.cpu, h.kernel
    );
    if runs(r, Workload::W1r).next().is_some() {
        s.push_str(
            "| server | RTSP transport | streams x viewers | CPU % | us/pkt | delivered pkt/s | \
             loss % | latency p50 / p99 ms | first keyframe p50 ms | RSS MiB | RTSP server \
             CPU % | RTSP server RSS MiB | tool CPU % | publisher CPU % |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
    }
    for run in runs(r, Workload::W1r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} x {} | {} | {} | {} | {:.1} | {:.1} |",
            name(run.server),
            run.rtsp_transport.map_or("-".into(), |t| t.to_string()),
            run.streams,
            run.viewers / run.streams.max(1),
            steady_cells(run),
            run.rtsp_server_cpu_percent
                .map_or("-".into(), |c| format!("{c:.1}")),
            run.rtsp_server_rss_kib
                .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            run.tool_cpu_percent,
            run.publisher_cpu_percent
        );
    }
    s.push('\n');
    let janus = runs(r, Workload::W1r).find(|run| run.server == ServerKind::Janus);
    for relay in runs(r, Workload::W1r).filter(|run| run.server == ServerKind::Relay) {
        let transport = relay.rtsp_transport.map_or("-".into(), |t| t.to_string());
        let Some(janus) = janus else { continue };
        let _ = writeln!(
            s,
            "- relay over RTSP/{transport} against Janus (RTSP/udp): Janus spends **{:.1}x** \
             the relay's CPU per delivered packet ({:.2} vs {:.2} us) and has {:.2}x its RSS; \
             the RTSP server spent {:.2}x as much CPU serving Janus as serving the relay",
            janus.us_per_packet / relay.us_per_packet.max(1e-9),
            janus.us_per_packet,
            relay.us_per_packet,
            janus.rss_kib as f64 / (relay.rss_kib as f64).max(1.0),
            janus.rtsp_server_cpu_percent.unwrap_or(0.0)
                / relay.rtsp_server_cpu_percent.unwrap_or(0.0).max(1e-9),
        );
    }
    for why in r.unmeasured.iter().filter(|u| u.starts_with(W1R_TAG)) {
        let _ = writeln!(s, "- not measured: {why}");
    }
    for line in not_ahead(r, |w| w == Workload::W1r) {
        let _ = writeln!(s, "- where the relay is not ahead: {line}");
    }
    s.push('\n');
    s
}

fn name(s: ServerKind) -> &'static str {
    match s {
        ServerKind::Relay => "relay",
        ServerKind::Janus => "Janus",
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn runs(results: &Results, w: Workload) -> impl Iterator<Item = &Run> {
    results.runs.iter().filter(move |r| r.workload == w)
}

fn section(r: &Results, command: &str) -> String {
    let mut s = String::new();
    let h = &r.host;
    let _ = writeln!(
        s,
        "\nOne run of `{command}` on {} cores ({}), kernel {}. Server CPU is the CPU time \
         (user + system) of its process, memory its RSS; \"tool\" is the whole load tool \
         (publisher, viewers, readings) in % of one core. Loss: packets delivered against \
         the packets published times the viewers of each stream (and sequence gaps at the \
         verifying viewers, whichever is worse).\n",
        h.cores, h.cpu, h.kernel
    );
    steady_table(
        &mut s,
        r,
        Workload::W1,
        "### W1: 64 streams of ~2 Mbit/s H264, 2 viewers each",
    );
    ratio_lines(&mut s, r, Workload::W1);
    steady_table(&mut s, r, Workload::W2, "### W2: one stream fanned out");
    ratio_lines(&mut s, r, Workload::W2);
    for server in [ServerKind::Relay, ServerKind::Janus] {
        let best = runs(r, Workload::W2)
            .filter(|run| run.server == server && run.loss <= KEEPS_UP_LOSS)
            .map(|run| run.viewers)
            .max();
        if runs(r, Workload::W2).any(|run| run.server == server) {
            let _ = writeln!(
                s,
                "- {}: the largest count served with less than {}% loss: {}",
                name(server),
                KEEPS_UP_LOSS * 100.0,
                best.map_or("none".into(), |n| n.to_string())
            );
        }
    }
    for server in [ServerKind::Relay, ServerKind::Janus] {
        let kept: Vec<&Run> = runs(r, Workload::W2)
            .filter(|run| run.server == server && run.loss <= KEEPS_UP_LOSS)
            .collect();
        if let (Some(small), Some(large)) = (kept.first(), kept.last()) {
            if large.viewers > small.viewers {
                let slope = large.rss_kib.saturating_sub(small.rss_kib) as f64
                    / (large.viewers - small.viewers) as f64;
                let _ = writeln!(
                    s,
                    "- {}: RSS per extra viewer (from {} to {} viewers): {slope:.1} KiB",
                    name(server),
                    small.viewers,
                    large.viewers
                );
            }
        }
    }
    if runs(r, Workload::W2).next().is_some() {
        s.push_str(
            "\n![CPU against viewers](plots/w2-cpu.svg)\n![RSS against viewers](plots/w2-rss.svg)\n",
        );
    }
    if !r.churn.is_empty() {
        s.push_str("\n### W3: churn\n\nThe last sample of RSS and descriptors is taken after every viewer left; idle CPU is the server's over 5 s with the stream and no viewer, before the churn and after it.\n\n| server | viewers at once | sessions | failed | CPU % | RSS first / last KiB | fds first / last | loss % (verifying) | idle CPU % before / after | sessions left |\n|---|---|---|---|---|---|---|---|---|---|\n");
        let or_dash =
            |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        for c in &r.churn {
            let (first, last) = (c.samples.first(), c.samples.last());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} | {} / {} | {} / {} | {:.3} | {} / {} | {} |",
                name(c.server),
                c.viewers,
                c.joins,
                c.failed,
                c.cpu_percent,
                first.map_or(0, |f| f.1),
                last.map_or(0, |l| l.1),
                first.map_or(0, |f| f.2),
                last.map_or(0, |l| l.2),
                c.loss * 100.0,
                or_dash(c.idle_cpu_before, 2),
                or_dash(c.idle_cpu_after, 2),
                or_dash(c.sessions_left, 0),
            );
        }
        s.push_str("\n![RSS during churn](plots/w3-rss.svg)\n![Open descriptors during churn](plots/w3-fds.svg)\n");
    }
    if !r.setup.is_empty() {
        s.push_str("\n### W4: setup rate\n\nSetup time: from the viewer's offer (WHEP) or first request (Janus) to ICE and DTLS complete at the viewer. Over 15 ms: the sessions that took longer at the viewer, and those the relay itself timed at over 15 ms from its answer to DTLS done (`relay_viewer_setup_seconds`); a slow session the tool saw and the relay did not waited in the tool (one thread drives every client).\n\n| server | sessions/s | sessions | failed | setup p50 ms | setup p99 ms | over 15 ms at the viewer / at the relay | server CPU % |\n|---|---|---|---|---|---|---|---|\n");
        for st in &r.setup {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                name(st.server),
                st.rate,
                st.sessions,
                st.failed,
                ms(st.setup_p50_ms),
                ms(st.setup_p99_ms),
                {
                    let count = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
                    format!("{} / {}", count(st.over_15ms), count(st.server_over_15ms))
                },
                st.cpu_percent
            );
        }
        for server in [ServerKind::Relay, ServerKind::Janus] {
            let best = r
                .setup
                .iter()
                .filter(|st| st.server == server && st.failed == 0)
                .filter(|st| st.setup_p99_ms.is_some_and(|p| p <= 100.0))
                .map(|st| st.rate)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            if r.setup.iter().any(|st| st.server == server) {
                let _ = writeln!(
                    s,
                    "- {}: highest rate tried with setup p99 at or under 100 ms: {}",
                    name(server),
                    best.map_or("none".into(), |b| format!("{b}/s"))
                );
            }
        }
    }
    if !r.xdp.is_empty() {
        // What each viewer got, from the runs themselves: the stream is the suite's clip.
        let per_viewer = r
            .xdp
            .iter()
            .map(|run| run.delivered_pps / run.viewers.max(1) as f64)
            .fold(0.0, f64::max);
        let _ = write!(
            s,
            "\n### XDP mode against portable mode\n\nThe relay alone, on a veth pair with \
             the viewers in a second namespace (`relay-bench xdp-egress`, section 3): the \
             publisher's clip (~{per_viewer:.0} packets/s to each viewer), one worker, sink \
             viewers counted by the sink XDP program, two full clients.\n\n| viewers | mode | \
             relay CPU % | us/pkt | XDP / portable | delivered pkt/s | loss % | RSS MiB \
             |\n|---|---|---|---|---|---|---|---|\n",
        );
        for run in &r.xdp {
            let ratio = r
                .xdp_ratios
                .iter()
                .find(|q| q.viewers == run.viewers && run.mode == crate::xdp_egress::Mode::Xdp)
                .map_or(String::new(), |q| format!("**{:.2}**", q.xdp_over_portable));
            let _ = writeln!(
                s,
                "| {} | {:?} | {:.1} | {:.2} | {ratio} | {:.0} | {:.3} | {:.1} |",
                run.viewers,
                run.mode,
                run.relay_cpu_percent,
                run.relay_us_per_packet,
                run.delivered_pps,
                run.loss_percent,
                run.rss_kib as f64 / 1024.0
            );
        }
        if let Some(q) = r.xdp_ratios.iter().max_by_key(|q| q.viewers) {
            let _ = writeln!(
                s,
                "\n- At {} viewers XDP mode spends {:.2} of portable mode's CPU per packet: \
                 the target of under 0.5 is {}met on veth, whose AF_XDP is copy mode only \
                 (XDP's user-space share alone: {:.2}).",
                q.viewers,
                q.xdp_over_portable,
                if q.xdp_over_portable < 0.5 {
                    ""
                } else {
                    "not "
                },
                q.xdp_user_over_portable
            );
        }
    }
    if r.unmeasured.iter().any(|u| !u.starts_with(W1R_TAG)) {
        s.push_str("\n### Runs that could not be measured\n\n");
        for why in r.unmeasured.iter().filter(|u| !u.starts_with(W1R_TAG)) {
            let _ = writeln!(s, "- {why}");
        }
    }
    s.push_str("\n### Where the relay is not ahead in this run\n\n");
    let behind = not_ahead(r, |w| w != Workload::W1r);
    if behind.is_empty() {
        s.push_str("Nowhere among the measured figures.\n");
    }
    for line in behind {
        let _ = writeln!(s, "- {line}");
    }
    s.push('\n');
    s
}

fn steady_table(s: &mut String, r: &Results, w: Workload, title: &str) {
    if runs(r, w).next().is_none() {
        return;
    }
    let _ = writeln!(
        s,
        "\n{title}\n\n| server | viewers | CPU % | us/pkt | delivered pkt/s | loss % | latency p50 / p99 ms | first keyframe p50 ms | RSS MiB | RSS/viewer KiB | tool CPU % | publisher CPU % |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for run in runs(r, w) {
        let viewers = match run.refused {
            0 => run.viewers.to_string(),
            n => format!("{} ({n} refused 503)", run.viewers),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            name(run.server),
            viewers,
            steady_cells(run),
            run.rss_per_viewer_kib,
            run.tool_cpu_percent,
            run.publisher_cpu_percent
        );
    }
}

/// A steady run's cells from CPU % to RSS MiB: CPU %, us/pkt, delivered pkt/s, loss %,
/// latency p50 / p99 ms, first keyframe p50 ms, RSS MiB.
fn steady_cells(run: &Run) -> String {
    let v = &run.viewers_window;
    format!(
        "{:.1} | {:.2} | {:.0} | {:.3} | {} / {} | {} | {:.1}",
        run.cpu_percent,
        run.us_per_packet,
        run.delivered_pps,
        run.loss * 100.0,
        ms(v.latency_p50_ms),
        ms(v.latency_p99_ms),
        ms(v.first_keyframe_p50_ms),
        run.rss_kib as f64 / 1024.0,
    )
}

/// Janus over relay, CPU per delivered packet, where both ran the same load.
fn ratio_lines(s: &mut String, r: &Results, w: Workload) {
    s.push('\n');
    for relay in runs(r, w).filter(|run| run.server == ServerKind::Relay) {
        if let Some(janus) =
            runs(r, w).find(|run| run.server == ServerKind::Janus && run.viewers == relay.viewers)
        {
            let _ = writeln!(
                s,
                "- {} viewers: Janus spends **{:.1}x** the relay's CPU per delivered packet \
                 ({:.2} vs {:.2} us) and {:.1}x its RSS per viewer",
                relay.viewers,
                janus.us_per_packet / relay.us_per_packet,
                janus.us_per_packet,
                relay.us_per_packet,
                janus.rss_per_viewer_kib / relay.rss_per_viewer_kib.max(0.1),
            );
        }
    }
}

/// Every figure where Janus did better than the relay under the same load, in the
/// steady workloads `steady` takes (and W4's setup times with W2).
fn not_ahead(r: &Results, steady: impl Fn(Workload) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    for relay in r
        .runs
        .iter()
        .filter(|run| run.server == ServerKind::Relay && steady(run.workload))
    {
        let Some(janus) = r.runs.iter().find(|j| {
            j.server == ServerKind::Janus
                && j.workload == relay.workload
                && j.viewers == relay.viewers
        }) else {
            continue;
        };
        let over = relay
            .rtsp_transport
            .map_or(String::new(), |t| format!(" (relay over RTSP/{t})"));
        let tag = format!("{:?} at {} viewers{over}", relay.workload, relay.viewers);
        let mut worse = |what: &str, relay: f64, janus: f64| {
            if relay > janus * 1.05 {
                lines.push(format!("{tag}: {what}: relay {relay:.2}, Janus {janus:.2}"));
            }
        };
        worse(
            "CPU per packet (us)",
            relay.us_per_packet,
            janus.us_per_packet,
        );
        worse(
            "RSS per viewer (KiB)",
            relay.rss_per_viewer_kib,
            janus.rss_per_viewer_kib,
        );
        worse(
            "RSS (MiB)",
            relay.rss_kib as f64 / 1024.0,
            janus.rss_kib as f64 / 1024.0,
        );
        worse("loss (%)", relay.loss * 100.0, janus.loss * 100.0 + 0.01);
        if let (Some(a), Some(b)) = (
            relay.viewers_window.latency_p99_ms,
            janus.viewers_window.latency_p99_ms,
        ) {
            worse("latency p99 (ms)", a, b + 0.5);
        }
        if let (Some(a), Some(b)) = (
            relay.viewers_window.first_keyframe_p50_ms,
            janus.viewers_window.first_keyframe_p50_ms,
        ) {
            worse("time to first keyframe p50 (ms)", a, b);
        }
    }
    let setup = if steady(Workload::W2) {
        &r.setup[..]
    } else {
        &[]
    };
    for relay in setup.iter().filter(|s| s.server == ServerKind::Relay) {
        if let Some(janus) = r
            .setup
            .iter()
            .find(|j| j.server == ServerKind::Janus && j.rate == relay.rate)
        {
            if let (Some(a), Some(b)) = (relay.setup_p99_ms, janus.setup_p99_ms) {
                if a > b * 1.05 {
                    lines.push(format!(
                        "W4 at {}/s: setup p99 relay {a:.1} ms, Janus {b:.1} ms",
                        relay.rate
                    ));
                }
            }
        }
    }
    lines
}

fn charts(r: &Results) -> Vec<(&'static str, Chart)> {
    let w2 = |f: fn(&Run) -> f64| -> Vec<Series> {
        [ServerKind::Relay, ServerKind::Janus]
            .into_iter()
            .map(|server| Series {
                name: name(server).into(),
                points: runs(r, Workload::W2)
                    .filter(|run| run.server == server)
                    .map(|run| (run.viewers as f64, f(run)))
                    .collect(),
            })
            .collect()
    };
    let w3 = |f: fn(&(f64, u64, usize)) -> f64| -> Vec<Series> {
        r.churn
            .iter()
            .map(|c| Series {
                name: name(c.server).into(),
                points: c
                    .samples
                    .iter()
                    .map(|sample| (sample.0, f(sample)))
                    .collect(),
            })
            .collect()
    };
    vec![
        (
            "w2-cpu.svg",
            Chart {
                title: "W2: server CPU, one ~2 Mbit/s stream".into(),
                x_label: "viewers".into(),
                y_label: "% of one core".into(),
                log_x: true,
                series: w2(|run| run.cpu_percent),
            },
        ),
        (
            "w2-rss.svg",
            Chart {
                title: "W2: server RSS".into(),
                x_label: "viewers".into(),
                y_label: "MiB".into(),
                log_x: true,
                series: w2(|run| run.rss_kib as f64 / 1024.0),
            },
        ),
        (
            "w3-rss.svg",
            Chart {
                title: "W3: server RSS during churn".into(),
                x_label: "seconds".into(),
                y_label: "MiB".into(),
                log_x: false,
                series: w3(|sample| sample.1 as f64 / 1024.0),
            },
        ),
        (
            "w3-fds.svg",
            Chart {
                title: "W3: open file descriptors during churn".into(),
                x_label: "seconds".into(),
                y_label: "descriptors".into(),
                log_x: false,
                series: w3(|sample| sample.2 as f64),
            },
        ),
    ]
}
