//! MediaMTX's hooks: commands run when a path starts (`runOnInit`), becomes ready and
//! stops being ready (`runOnReady`/`runOnNotReady`, also spelt `runOnAvailable`/
//! `runOnUnavailable`), and when a viewer starts and stops reading (`runOnRead`/
//! `runOnUnread`), with MediaMTX's environment (`MTX_PATH`, `MTX_SOURCE_TYPE`,
//! `MTX_SOURCE_ID`, `MTX_READER_TYPE`, `MTX_READER_ID`, `MTX_QUERY`, `RTSP_PORT`).
//! `MTX_QUERY` is the query of the reader's WHEP request, or of the WHIP publisher's
//! that made the path ready, escaped as MediaMTX does (Go's `url.QueryEscape`), so that
//! a `$MTX_QUERY` expanded into a command line cannot become shell syntax.
//!
//! As MediaMTX runs them: the command line is split as a shell would (no shell runs),
//! `$VARIABLE`s in it are expanded, the command gets a process group of its own and
//! is ended with SIGINT to that group when what started it ends; a command with
//! `...Restart` is started again 5 s after it exits. Commands that mark an end
//! (`runOnNotReady`, `runOnUnread`) run once and are not waited for. At shutdown every
//! command still running gets SIGINT and is waited for ([`end_all`]), as in MediaMTX.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::paths::{PathState, ServedPath};
use crate::worker::registry::Registry;
use crate::worker::session_info::{Role, SessionInfo};

/// MediaMTX's pause before a command with `...Restart` is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(5);

/// How long a command that got SIGINT is waited for before what follows it runs.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// How often the viewers of a path are looked at for `runOnRead`/`runOnUnread`.
const READERS_POLL: Duration = Duration::from_millis(500);

/// A command line and whether it is started again when it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub command: String,
    pub restart: bool,
}

/// The hooks of one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathHooks {
    pub on_init: Option<Hook>,
    pub on_ready: Option<Hook>,
    pub on_not_ready: Option<String>,
    pub on_read: Option<Hook>,
    pub on_unread: Option<String>,
    pub on_demand: Option<DemandHook>,
}

/// `runOnDemand`: a command that publishes to a `source: publisher` path, run while
/// viewers want the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandHook {
    pub hook: Hook,
    /// `runOnDemandStartTimeout`: how long it has to publish before it is stopped
    /// (and viewers waiting are told the path's state).
    pub start_timeout: Duration,
    /// `runOnDemandCloseAfter`: how long it runs on once nobody watches.
    pub close_after: Duration,
    /// `runOnUnDemand`: run once when it is stopped.
    pub on_undemand: Option<String>,
}

impl PathHooks {
    pub fn is_empty(&self) -> bool {
        *self == PathHooks::default()
    }
}

type Env = Vec<(&'static str, String)>;

/// What Go's `url.QueryEscape` leaves as it is (a URL's query never holds a space,
/// which Go would write `+`).
const QUERY_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A request's query as MediaMTX gives it to hooks in `MTX_QUERY`.
fn query_escape(query: &str) -> String {
    percent_encoding::utf8_percent_encode(query, QUERY_KEEPS).to_string()
}

/// The process groups of the commands [`start`] made that have not been reaped. The
/// process's own record, not a task's: a command outlives the relay unless signalled,
/// and at shutdown the tasks that started them may be gone ([`end_all`]).
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn groups() -> MutexGuard<'static, BTreeSet<i32>> {
    GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGINT to the process group of every command [`start`] made that is still running,
/// then waits up to `limit` for them to exit (reaping them: the runtime that would
/// have is gone by then). For the end of the process.
pub fn end_all(limit: Duration) {
    let running: Vec<i32> = groups().iter().copied().collect();
    for &group in &running {
        // SAFETY: kill(2) on a process group made for a command.
        unsafe { libc::kill(-group, libc::SIGINT) };
    }
    let end = Instant::now() + limit;
    for pid in running {
        // The group's leader is the command; what it started is its to end.
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) on a child of this process, not blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            // Reaped, or not ours to wait for any more (ECHILD).
            if r != 0 || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        groups().remove(&pid);
    }
}

/// A command running while its owner lives: dropping it ends the command with SIGINT
/// to its process group, sent at once (so also when the runtime is shutting down).
pub struct Running {
    /// The process group of the command running now; 0 between runs.
    group: Arc<AtomicI32>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Runs (and restarts) the command; ends once it has exited after `stop`.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Ends the command with SIGINT, as dropping it does, and waits up to `limit` for it
    /// to exit: what runs next (`runOnUnDemand`) comes after it, as in MediaMTX.
    pub async fn stop(mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(limit, task).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let group = self.group.swap(0, Ordering::SeqCst);
        if group > 0 {
            // SAFETY: kill(2) on the process group made for the command.
            unsafe { libc::kill(-group, libc::SIGINT) };
        }
    }
}

/// The words of `command` as a shell would split them, each with `$NAME`/`${NAME}`
/// taken from `env` (then from relay's own environment). None if the quoting is
/// unbalanced.
fn words(command: &str, env: &Env) -> Option<Vec<String>> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
            .unwrap_or_default()
    };
    let words = shell_words::split(command).ok()?;
    Some(words.iter().map(|w| expand(w, &lookup)).collect())
}

/// `$NAME` and `${NAME}` in `word`, as Go's os.Expand (MediaMTX's) does.
fn expand(word: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if len == 0 {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&lookup(name));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

fn command(words: &[String], env: &Env) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&words[0]);
    command
        .args(&words[1..])
        .envs(env.iter().map(|(k, v)| (*k, v)))
        // Its own process group: SIGINT reaches what it starts too.
        .process_group(0);
    command
}

/// Starts `hook` with `env` until the returned [`Running`] is dropped.
pub fn start(hook: &Hook, env: Env) -> Running {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let hook = hook.clone();
    let group = Arc::new(AtomicI32::new(0));
    let running = group.clone();
    let task = tokio::spawn(async move {
        let Some(words) = words(&hook.command, &env).filter(|w| !w.is_empty()) else {
            warn!(command = %hook.command, "hook not run: its quoting is unbalanced or it is empty");
            return;
        };
        loop {
            // Not reaped on drop: it was sent SIGINT and ends by itself.
            let mut child = match command(&words, &env).kill_on_drop(false).spawn() {
                Ok(child) => child,
                Err(e) => {
                    warn!(command = %hook.command, "hook cannot start: {e}");
                    return;
                }
            };
            let pid = child.id().map_or(0, |id| id as i32);
            running.store(pid, Ordering::SeqCst);
            if pid > 0 {
                groups().insert(pid);
            }
            tokio::select! {
                status = child.wait() => {
                    running.store(0, Ordering::SeqCst);
                    groups().remove(&pid);
                    info!(command = %hook.command, ?status, "hook exited");
                }
                // Running's drop sent SIGINT, unless it came before the group was known.
                _ = &mut stopped => {
                    let group = running.swap(0, Ordering::SeqCst);
                    if group > 0 {
                        // SAFETY: kill(2) on the process group made for the command.
                        unsafe { libc::kill(-group, libc::SIGINT) };
                    }
                    let _ = child.wait().await;
                    groups().remove(&pid);
                    return;
                }
            }
            if !hook.restart {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(RESTART_PAUSE) => {}
                _ = &mut stopped => return,
            }
        }
    });
    Running {
        group,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Runs `command` once with `env`, not waiting for it.
pub fn run_once(command_line: &str, env: Env) {
    let Some(words) = words(command_line, &env).filter(|w| !w.is_empty()) else {
        warn!(command = %command_line, "hook not run: its quoting is unbalanced or it is empty");
        return;
    };
    match command(&words, &env).spawn() {
        // Reaped by tokio's process driver once it exits.
        Ok(child) => drop(child),
        Err(e) => warn!(command = %command_line, "hook cannot start: {e}"),
    }
}

/// Runs the hooks of path `name` until it ends ([`PathState::Removed`], or dropped):
/// `runOnInit` from the start, `runOnReady`/`runOnNotReady` on its state, `runOnRead`/
/// `runOnUnread` for each of its viewers (`registry` knows them). It follows the path
/// through `states` only, so that it does not keep a path made from a pattern alive.
pub async fn watch_path(
    name: String,
    states: watch::Receiver<PathState>,
    source_type: &'static str,
    hooks: PathHooks,
    registry: Arc<Registry>,
) {
    let base: Env = vec![("MTX_PATH", name.clone()), ("RTSP_PORT", String::new())];
    let _init = hooks.on_init.as_ref().map(|h| start(h, base.clone()));
    let ready = watch_ready(&name, states.clone(), source_type, &hooks, &base, &registry);
    let readers = watch_readers(&name, states.clone(), &hooks, &base, &registry);
    tokio::join!(ready, readers, until_ended(states));
}

/// Returns when the path has ended.
async fn until_ended(mut states: watch::Receiver<PathState>) {
    // An error: the sender went with the path.
    let _ = states.wait_for(|s| *s == PathState::Removed).await;
}

/// Whether the path has ended: removed, or its state's sender dropped with it.
fn ended(states: &watch::Receiver<PathState>) -> bool {
    states.has_changed().is_err() || *states.borrow() == PathState::Removed
}

async fn watch_ready(
    name: &str,
    mut states: watch::Receiver<PathState>,
    source_type: &'static str,
    hooks: &PathHooks,
    base: &Env,
    registry: &Registry,
) {
    if hooks.on_ready.is_none() && hooks.on_not_ready.is_none() {
        return;
    }
    let mut running: Option<Running> = None;
    let mut was_ready = false;
    // Made when the path becomes ready, for runOnNotReady too (as MediaMTX).
    let mut env = base.clone();
    loop {
        let ready = states.borrow_and_update().is_ready();
        if ready != was_ready {
            if ready {
                env = base.clone();
                env.push(("MTX_SOURCE_TYPE", source_type.into()));
                // A WHIP publisher is registered before its path turns ready; the
                // newest, while one it replaced may still be leaving.
                let publisher = (registry.sessions().into_iter())
                    .filter(|s| s.path == name && s.role == Role::Publish)
                    .max_by_key(|s| s.created);
                let (id, query) = publisher
                    .map_or_else(Default::default, |s| (s.id.clone(), query_escape(&s.query)));
                env.push(("MTX_SOURCE_ID", id));
                env.push(("MTX_QUERY", query));
                running = hooks.on_ready.as_ref().map(|h| start(h, env.clone()));
            } else {
                running = None;
                if let Some(command) = &hooks.on_not_ready {
                    run_once(command, env.clone());
                }
            }
            was_ready = ready;
        }
        if ended(&states) || states.changed().await.is_err() {
            drop(running);
            return;
        }
    }
}

async fn watch_readers(
    name: &str,
    mut states: watch::Receiver<PathState>,
    hooks: &PathHooks,
    base: &Env,
    registry: &Registry,
) {
    if hooks.on_read.is_none() && hooks.on_unread.is_none() {
        return;
    }
    // Each reader's runOnRead, and the environment its runOnUnread gets too.
    let mut reading: HashMap<String, (Option<Running>, Env)> = HashMap::new();
    loop {
        // The path's end ends the readings it had (its sessions are closed with it).
        let now: Vec<Arc<SessionInfo>> = match ended(&states) {
            true => Vec::new(),
            false => (registry.sessions().into_iter())
                .filter(|s| s.path == name && s.role == Role::Read)
                .collect(),
        };
        for session in &now {
            if !reading.contains_key(&session.id) {
                let mut env = base.clone();
                env.push(("MTX_READER_TYPE", "webRTCSession".into()));
                env.push(("MTX_READER_ID", session.id.clone()));
                env.push(("MTX_QUERY", query_escape(&session.query)));
                let running = hooks.on_read.as_ref().map(|h| start(h, env.clone()));
                reading.insert(session.id.clone(), (running, env));
            }
        }
        let gone: Vec<String> = reading
            .keys()
            .filter(|id| !now.iter().any(|s| s.id == **id))
            .cloned()
            .collect();
        for id in gone {
            let Some((running, env)) = reading.remove(&id) else {
                continue;
            };
            // runOnRead ends (SIGINT) before runOnUnread starts.
            drop(running);
            if let Some(command) = &hooks.on_unread {
                run_once(command, env);
            }
        }
        if ended(&states) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(READERS_POLL) => {}
            // The end, or any change: looked at again at once.
            _ = states.changed() => {}
        }
    }
}

/// Runs `runOnDemand` for `path` as MediaMTX does: started when a viewer asks for the
/// path; stopped, then `runOnUnDemand` run, when it has not published within its start
/// timeout, when nobody has watched for `close_after`, or when the path ends. Returns
/// when the path ends or, `made` from a pattern, once the command stops (or nobody
/// asks within `close_after`): the path then goes too.
pub async fn run_on_demand(path: Arc<ServedPath>, demand: DemandHook, made: bool) {
    let env: Env = vec![
        ("MTX_PATH", path.name.clone()),
        ("MTX_QUERY", String::new()),
        ("RTSP_PORT", String::new()),
    ];
    loop {
        let asked = tokio::select! {
            () = path.demand_changed() => true,
            () = path.closed() => false,
            // A made path nobody watches was made by a request that did not (a page).
            () = tokio::time::sleep(demand.close_after), if made => false,
        };
        if !asked {
            return;
        }
        info!(path = %path.name, command = %demand.hook.command, "runOnDemand: starting");
        let running = start(&demand.hook, env.clone());
        let why = tokio::select! {
            why = keep_while_wanted(&path, &demand) => why,
            () = path.closed() => "the path was removed",
        };
        running.stop(STOP_WAIT).await;
        info!(path = %path.name, "runOnDemand: stopped, {why}");
        if let Some(command) = &demand.on_undemand {
            run_once(command, env.clone());
        }
        if made || path.state() == PathState::Removed {
            return;
        }
    }
}

/// Waits while the command started by `runOnDemand` is wanted; says why it is not.
async fn keep_while_wanted(path: &ServedPath, demand: &DemandHook) -> &'static str {
    let mut states = path.subscribe();
    let published = states.wait_for(PathState::is_ready);
    if tokio::time::timeout(demand.start_timeout, published)
        .await
        .is_err()
    {
        return "it did not publish within runOnDemandStartTimeout";
    }
    loop {
        if path.readers() > 0 {
            // The last viewer leaving says so.
            path.demand_changed().await;
            continue;
        }
        tokio::select! {
            () = path.demand_changed() => {}
            () = tokio::time::sleep(demand.close_after) => {
                if path.readers() == 0 {
                    return "nobody watched for runOnDemandCloseAfter";
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_all_ends_and_reaps_commands_whose_owner_was_never_dropped() {
        let file = std::env::temp_dir().join(format!("relay-end-all-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let f = file.display();
        let hook = Hook {
            command: format!(
                "sh -c 'trap \"echo ended >> {f}; exit 0\" INT; echo started >> {f}; \
                 while :; do sleep 0.1; done'"
            ),
            restart: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lines = || std::fs::read_to_string(&file).unwrap_or_default();
        let running = runtime.block_on(async {
            let running = start(&hook, Vec::new());
            while !lines().contains("started") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            running
        });
        let pid = running.group.load(Ordering::SeqCst);
        assert!(pid > 0 && groups().contains(&pid));
        // Its owner lost (no SIGINT from its drop), its task dropped with the runtime.
        std::mem::forget(running);
        drop(runtime);
        assert_eq!(lines(), "started\n", "nothing has signalled it yet");

        end_all(Duration::from_secs(10));
        assert_eq!(lines(), "started\nended\n", "SIGINT, and waited for");
        assert!(!groups().contains(&pid));
        // Reaped: no child of that pid is left.
        // SAFETY: waitpid(2), not blocking.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1);
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn command_lines_split_as_a_shell_would_and_expand_like_mediamtx() {
        let env: Env = vec![("MTX_PATH", "cams/front".into()), ("G1", "7".into())];
        assert_eq!(
            words(
                "ffmpeg -i 'rtsp://cam/$G1' -f x ${MTX_PATH}.mp4 \"a b\" $NOPE_NOT_SET",
                &env
            )
            .unwrap(),
            [
                "ffmpeg",
                "-i",
                "rtsp://cam/7",
                "-f",
                "x",
                "cams/front.mp4",
                "a b",
                ""
            ]
        );
        assert_eq!(words("echo $ {x", &env).unwrap(), ["echo", "$", "{x"]);
        assert!(words("echo 'unbalanced", &env).is_none());
        assert_eq!(words("", &env).unwrap(), Vec::<String>::new());
        assert_eq!(expand("$", &|_| "x".into()), "$");
        assert_eq!(expand("${}", &|_| "x".into()), "x");
    }
}
