//! The systemd notify protocol (`Type=notify`): datagrams such as `READY=1` sent to the unix
//! socket named by `NOTIFY_SOCKET`. READY is sent once a quorum of nodes is reachable, and
//! `WATCHDOG=1` every half `WATCHDOG_USEC` when the unit sets `WatchdogSec`. Without
//! `NOTIFY_SOCKET` (not started by systemd) everything here does nothing.

use crate::events;
use quorumd_replication::store::VersionedStore;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often readiness is re-checked before READY=1 is sent.
const READY_POLL: Duration = Duration::from_millis(100);

/// Sends `state` (newline-separated `KEY=value` assignments) to the service manager.
/// Returns false when no manager listens (`NOTIFY_SOCKET` unset).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // A socket in the abstract namespace (Linux only).
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(true);
        }
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::other(format!(
            "abstract notify socket {:?} is Linux-only",
            String::from_utf8_lossy(name)
        )));
    }
    socket.send_to(state.as_bytes(), &path)?;
    Ok(true)
}

/// `notify`, with the outcome logged.
pub fn notify_logged(state: &str) {
    let first_line = state.lines().next().unwrap_or_default();
    match notify(state) {
        Ok(true) => events::ServiceManagerNotified {
            state: first_line,
            error: None,
        }
        .emit(),
        Ok(false) => {}
        Err(e) => events::ServiceManagerNotified {
            state: first_line,
            error: Some(&e.to_string()),
        }
        .emit(),
    }
}

/// The watchdog interval systemd asks for, halved as sd_watchdog_enabled(3) advises, if the
/// watchdog is meant for this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Starts the notifier: READY=1 once enough nodes are reachable for quorum reads and writes,
/// then watchdog pings. `None` when not run by a service manager.
pub fn spawn(store: Arc<VersionedStore>) -> Option<JoinHandle<()>> {
    std::env::var_os("NOTIFY_SOCKET")?;
    Some(tokio::spawn(async move {
        let q = store.settings().quorum;
        let required = q.read.max(q.write);
        let watchdog = watchdog_interval();
        let mut announced_waiting = false;
        loop {
            let reachable = store.pool().reachable();
            if reachable >= required {
                notify_logged(&format!(
                    "READY=1\nSTATUS=serving: {reachable} of {} nodes reachable",
                    q.nodes
                ));
                break;
            }
            if !announced_waiting {
                notify_logged(&format!(
                    "STATUS=waiting for a quorum: {reachable} of {required} nodes reachable"
                ));
                announced_waiting = true;
            }
            // The watchdog covers startup too, when WatchdogSec is shorter than it takes.
            if watchdog.is_some() {
                notify_logged("WATCHDOG=1");
            }
            tokio::time::sleep(READY_POLL).await;
        }
        let Some(every) = watchdog else { return };
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify_logged("WATCHDOG=1");
        }
    }))
}
