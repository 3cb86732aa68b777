//! Local `redis-server` processes for `quorumd demo`, tests and benchmarks: each on a free
//! loopback port, in a private temporary directory, killed when dropped (and by the kernel if
//! this process dies first), so no run leaves servers behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error(
        "redis-server was not found on PATH. Install it with `sudo apt-get install redis-server` \
         (Debian/Ubuntu), `sudo dnf install redis` (Fedora) or `brew install redis` (macOS)"
    )]
    RedisMissing,
    #[error("cannot start redis-server on port {port}: {message}")]
    Start { port: u16, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A free loopback port, as far as the kernel can tell right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True when `redis-server` can be run.
pub fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One redis-server process.
pub struct RedisProcess {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

impl RedisProcess {
    /// Starts a server on a free port in `dir`. `extra` are additional `--name value` options.
    pub fn start(dir: &Path, extra: &[&str]) -> Result<RedisProcess, DevClusterError> {
        if !redis_available() {
            return Err(DevClusterError::RedisMissing);
        }
        let mut last = None;
        // Another process may grab the port between our probe and redis' bind: retry.
        for _ in 0..5 {
            let mut p = RedisProcess {
                port: free_port()?,
                dir: dir.to_path_buf(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
                paused: false,
            };
            match p.spawn() {
                Ok(()) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(DevClusterError::Start {
            port: 0,
            message: "no attempt made".into(),
        }))
    }

    fn spawn(&mut self) -> Result<(), DevClusterError> {
        let port = self.port.to_string();
        let node_dir = self.dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&node_dir)?;
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--protected-mode", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&node_dir)
        .args(["--logfile", "redis.log"])
        .args(&self.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
            // its parent thread exits, so a crashed test cannot leave servers behind.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = spawn_from_keeper(cmd).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DevClusterError::RedisMissing,
            _ => DevClusterError::Io(e),
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(node_dir.join("redis.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(DevClusterError::Start {
                    port: self.port,
                    message: format!("exited with {status}: {tail}"),
                });
            }
            if answers(self.addr()) {
                self.child = Some(child);
                self.paused = false;
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DevClusterError::Start {
                    port: self.port,
                    message: "did not answer PING within 10 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// Kills the server (SIGKILL). Its data is lost: servers run without persistence.
    pub fn kill(&mut self) {
        if self.paused {
            self.signal(libc::SIGCONT);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
        // kill(2) returns before the threads have stopped: on a busy machine the server could
        // still answer a request sent just after this call.
        if let Some(pid) = self.pid() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !all_threads_stopped(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Kills the server and starts it again on the same port and data directory. With
    /// `--appendonly yes --appendfsync always` it comes back with everything it acknowledged.
    pub fn restart(&mut self) -> Result<(), DevClusterError> {
        self.kill();
        self.spawn()
    }

    /// Kills the server and starts an empty one on the same port.
    pub fn restart_empty(&mut self) -> Result<(), DevClusterError> {
        self.kill();
        let _ = std::fs::remove_dir_all(self.dir.join(format!("node-{}", self.port)));
        self.spawn()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd` from one thread that lives as long as the process. The parent-death signal
/// fires when the *thread* that spawned a child exits, so children must not be spawned from
/// pooled threads (tokio retires idle blocking threads after 10 s, which would kill them).
fn spawn_from_keeper(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: std::sync::LazyLock<std::sync::Mutex<std::sync::mpsc::Sender<Request>>> =
        std::sync::LazyLock::new(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("redis-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawn the process keeper thread");
            std::sync::Mutex::new(tx)
        });
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    let sent = KEEPER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply_tx));
    sent.map_err(|_| std::io::Error::other("process keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("process keeper thread is gone"))?
}

/// The first 7 bytes of the answer to a PING sent with short timeouts, if any.
fn ping_reply(addr: SocketAddr) -> Option<[u8; 7]> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    s.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Sends PING with a short timeout; true when the answer is `+PONG`.
pub fn ping(addr: SocketAddr) -> bool {
    ping_reply(addr).is_some_and(|r| &r == b"+PONG\r\n")
}

/// True when a server listens on `addr` and speaks RESP: `+PONG`, or `-NOAUTH` from a server
/// started with a password (`--requirepass`, ACL users).
pub fn answers(addr: SocketAddr) -> bool {
    ping_reply(addr).is_some_and(|r| &r == b"+PONG\r\n" || &r == b"-NOAUTH")
}

/// N redis-server processes sharing one temporary directory.
pub struct DevCluster {
    pub nodes: Vec<RedisProcess>,
    // Declared last: dropped after the processes that use it.
    _dir: tempfile::TempDir,
}

impl DevCluster {
    pub fn start(n: usize) -> Result<DevCluster, DevClusterError> {
        Self::start_with(n, &[])
    }

    pub fn start_with(n: usize, extra: &[&str]) -> Result<DevCluster, DevClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("quorumd-nodes-")
            .tempdir()?;
        let nodes = (0..n)
            .map(|_| RedisProcess::start(dir.path(), extra))
            .collect::<Result<_, _>>()?;
        Ok(DevCluster { nodes, _dir: dir })
    }

    /// A cluster of servers started by the caller (e.g. each with its own TLS port), sharing
    /// `dir`, which is removed after they stop.
    pub fn from_processes(nodes: Vec<RedisProcess>, dir: tempfile::TempDir) -> DevCluster {
        DevCluster { nodes, _dir: dir }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// Replicas of different shapes, one per entry of `masters`: a Redis Cluster of that many
    /// masters without replicas (`redis-cli --cluster create` wants at least 3), or a
    /// standalone server for 0. The processes in that order, and each replica's URL.
    pub fn start_shaped(masters: &[usize]) -> Result<(DevCluster, Vec<String>), DevClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("quorumd-nodes-")
            .tempdir()?;
        let mut nodes = Vec::new();
        let mut urls = Vec::new();
        for &m in masters {
            let first = nodes.len();
            if m == 0 {
                nodes.push(RedisProcess::start(dir.path(), &[])?);
                urls.push(nodes[first].url());
                continue;
            }
            for _ in 0..m {
                nodes.push(RedisProcess::start(dir.path(), CLUSTER_OPTIONS)?);
            }
            urls.push(create_redis_cluster(&nodes[first..], 0)?);
        }
        Ok((DevCluster { nodes, _dir: dir }, urls))
    }

    /// `count` Redis Clusters of `masters` masters with `replicas` replicas each, made by
    /// `redis-cli --cluster create`: the processes, cluster after cluster (each cluster's
    /// masters first, as `redis-cli` assigns them), and each cluster's `redis+cluster://` URL
    /// naming all its servers as seeds.
    pub fn start_clusters(
        count: usize,
        masters: usize,
        replicas: usize,
    ) -> Result<(DevCluster, Vec<String>), DevClusterError> {
        let size = masters * (1 + replicas);
        let all = Self::start_with(count * size, CLUSTER_OPTIONS)?;
        let urls = all
            .nodes
            .chunks(size)
            .map(|servers| create_redis_cluster(servers, replicas))
            .collect::<Result<_, _>>()?;
        Ok((all, urls))
    }
}

/// Options of a server that is to join a Redis Cluster (its `nodes.conf` in its own directory).
pub const CLUSTER_OPTIONS: &[&str] = &[
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    // Short, so that a test's failover takes a second or two.
    "--cluster-node-timeout",
    "1000",
    // A master down (with no replica to take over) takes only its own slots out of service,
    // not the whole cluster: what per-shard health is for.
    "--cluster-require-full-coverage",
    "no",
];

/// Makes one Redis Cluster of `servers` (started with [`CLUSTER_OPTIONS`]) with
/// `redis-cli --cluster create`, `replicas` replicas per master and slots spread evenly over
/// the masters, and waits until every server reports `cluster_state:ok` and knows them all,
/// and every replica has finished its first sync.
/// Returns its `redis+cluster://` URL.
pub fn create_redis_cluster(
    servers: &[RedisProcess],
    replicas: usize,
) -> Result<String, DevClusterError> {
    let addrs: Vec<String> = servers.iter().map(|m| m.addr().to_string()).collect();
    create_redis_cluster_over(servers, replicas, &addrs, &[])?;
    Ok(format!("redis+cluster://{}", addrs.join(",")))
}

/// [`create_redis_cluster`] through other addresses than the servers' plain ports (`addrs`,
/// one per server, e.g. their TLS ports), with `cli` options given to `redis-cli` before
/// `--cluster` (e.g. `--tls` and its certificates). The servers are then checked for being
/// settled on their plain ports.
pub fn create_redis_cluster_over(
    servers: &[RedisProcess],
    replicas: usize,
    addrs: &[String],
    cli: &[&str],
) -> Result<(), DevClusterError> {
    let port = servers.first().map_or(0, |m| m.port());
    let failed = |message: String| DevClusterError::Start { port, message };
    // Under `timeout`: redis-cli waits for the nodes to join without a limit of its own, and
    // nodes whose cluster bus cannot connect (a TLS certificate refused) never do.
    let out = Command::new("timeout")
        .args(["60", "redis-cli"])
        .args(cli)
        .args(["--cluster", "create"])
        .args(addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("redis-cli --cluster create: {e}")))?;
    if !out.status.success() {
        let why = if out.status.code() == Some(124) {
            "the nodes did not join within 60 s".to_owned()
        } else {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
                .filter(|l| l.contains("ERR"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        return Err(failed(format!("redis-cli --cluster create: {why}")));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in servers {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &m.port().to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let known = format!("cluster_known_nodes:{}", servers.len());
            // A replica that has not finished its first sync cannot take over its master
            // (it counts as disconnected for longer than the validity factor allows).
            let replication = Command::new("redis-cli")
                .args(["-p", &m.port().to_string(), "info", "replication"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let synced = replication.contains("role:master")
                || replication.contains("master_link_status:up");
            if info.contains("cluster_state:ok") && info.contains(&known) && synced {
                break;
            }
            if Instant::now() > deadline {
                return Err(failed(format!("the cluster did not settle: {info}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// True when every thread of `pid` is stopped by a signal (state `T` in `/proc`). Where there
/// is no `/proc` to ask, true: the caller cannot wait any better.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    threads.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).map_or(true, |stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_returns_once_every_thread_has_stopped() {
        let mut cluster = DevCluster::start(1).expect("redis-server");
        let node = &mut cluster.nodes[0];
        let pid = node.pid().unwrap();
        assert!(!all_threads_stopped(pid), "a running server");
        node.pause();
        assert!(all_threads_stopped(pid), "paused");
        node.resume();
        let deadline = Instant::now() + Duration::from_secs(5);
        while all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "never resumed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
