//! Configuration: built-in defaults, then the TOML file, then `QUORUMD_*` environment variables
//! (nested keys joined by `__`). Every field has a default except `nodes`; every error names
//! the field it is about.

mod auth;
mod tls;

pub use auth::{AuthConfig, Scope, TokenEntry, TokensFile};
pub use tls::TlsConfig;

use crate::content::StreamChecksum;
use crate::layout::{Layout, SLOTS, Scheme};
use crate::quorum::{Consistency, QuorumSizes, ReadFanout};
use crate::redact::mask_url;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Shortest `sync.lease_ms`, in exchange intervals: leases are renewed at the start of each
/// exchange and while it runs, not in the pause between two, which this leaves room for twice.
pub const LEASE_PER_INTERVAL: u64 = 2;

/// The default location of the configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/quorumd.toml";

/// A configuration that breaks a rule the types cannot express, with the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: `{field}`: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    /// The configuration field the error is about, as `section.field`.
    pub fn field(&self) -> &str {
        let ConfigError::Invalid { field, .. } = self;
        field
    }
}

/// The error for `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Most runtime threads `worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// The whole service configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Redis servers to keep in sync, as `redis://[user:password@]host:port[/db]` or `rediss://`
    /// for TLS. Default: none (required).
    pub nodes: Vec<String>,
    /// This instance's identity: the writer id in versions is derived from it. Default: empty,
    /// meaning a random id per process start (always safe; set it to keep ids stable in logs).
    pub instance_id: String,
    /// Prefix of quorumd's reserved keys on every node (metadata, digests). Default `qd:`.
    pub key_prefix: String,
    /// How user keys are placed in metadata buckets, fixed for the lifetime of a cluster:
    /// `xxh3` (standalone servers only) or `slot` (the key's Redis Cluster hash slot, with every
    /// reserved key of a bucket in that slot; standalone servers and Redis Clusters).
    /// Default `xxh3`.
    pub placement: Scheme,
    /// Number of metadata buckets, fixed for the lifetime of a cluster: a power of two under
    /// `xxh3`, 16384 under `slot`. Default 0, meaning the placement's own (4096 under `xxh3`,
    /// 16384 under `slot`).
    pub buckets: u32,
    /// Sub-buckets per bucket, a power of two. Each bucket's metadata is split into this many
    /// hashes, each with its own digest, so a digest exchange that finds a bucket differing
    /// reads only the sub-buckets that differ (about 1/S of the bucket). Fixed for the lifetime
    /// of a cluster, except that `quorumd convert` merges a node's sub-buckets into fewer.
    /// Default 0, meaning the placement's own: 16 under `xxh3` and 4 under `slot`, 65,536
    /// metadata hashes either way.
    pub sub_buckets: u32,
    /// Threads of `quorumd run`'s async runtime, which serves both front ends and runs the
    /// background work. Default 0, meaning one per CPU core. Where the Redis nodes share this
    /// machine's cores, 1 spends about a fifth less CPU per request (no work stealing, no
    /// wake-ups across threads) and one core is the most it takes (docs/OPERATIONS.md).
    pub worker_threads: usize,
    /// Quorum sizes and default consistency.
    pub quorum: QuorumConfig,
    /// Per-node and per-request time limits.
    pub timeouts: TimeoutConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// The Redis-protocol front end.
    pub resp: RespConfig,
    /// Logging.
    pub log: LogConfig,
    /// Anti-entropy: digest exchange, full sweep, repair throttling.
    pub sync: SyncConfig,
    /// Bearer-token authentication of the HTTP API. Default: disabled.
    pub auth: auth::AuthConfig,
    /// TLS to the nodes (`rediss://`): CA, client certificate and key. Default: system roots.
    pub tls: TlsConfig,
    /// Distributed locks (Redlock on a majority, with fencing tokens).
    pub locks: LocksConfig,
    /// Locking queues.
    pub queues: QueueConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: Vec::new(),
            instance_id: String::new(),
            key_prefix: "qd:".into(),
            placement: Scheme::default(),
            buckets: 0,
            sub_buckets: 0,
            worker_threads: 0,
            quorum: QuorumConfig::default(),
            timeouts: TimeoutConfig::default(),
            http: HttpConfig::default(),
            resp: RespConfig::default(),
            log: LogConfig::default(),
            sync: SyncConfig::default(),
            auth: auth::AuthConfig::default(),
            tls: TlsConfig::default(),
            locks: LocksConfig::default(),
            queues: QueueConfig::default(),
        }
    }
}

/// Quorum sizes. R + W must exceed the number of nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuorumConfig {
    /// Answers a `quorum` read needs. Default 0, meaning a majority of the configured nodes.
    pub read: usize,
    /// Acknowledgements a `quorum` write needs. Default 0, meaning a majority.
    pub write: usize,
    /// Level used when a request names none. Default `quorum`.
    pub default_consistency: Consistency,
    /// Most client reads or writes carried by one script call to a node. While a node's calls
    /// are in flight, the operations that arrive wait and then go together as one call, so a
    /// node runs one script per batch instead of one per operation. Bounds how long one call
    /// blocks the node (a script is atomic). Default 256.
    pub batch_max_entries: usize,
    /// Script calls in flight at once per node and per kind (reads, writes). An operation that
    /// finds a free slot is sent at once, so an idle service adds no latency; with every slot
    /// busy, arrivals are batched. Default 2.
    pub batch_in_flight: usize,
    /// Which nodes a read asks. `needed`: as many healthy nodes as the level needs, in turn,
    /// and the others only when one of those fails, does not count (recovering), or has not
    /// answered within `read_hedge_ms`. `all`: every node at once, so that every read compares
    /// every copy for read repair. Default `needed`.
    pub read_fanout: ReadFanout,
    /// How long a `needed` read waits for its first nodes before asking the others too.
    /// Default 20.
    pub read_hedge_ms: u64,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            read: 0,
            write: 0,
            default_consistency: Consistency::Quorum,
            batch_max_entries: 256,
            batch_in_flight: 2,
            read_fanout: ReadFanout::Needed,
            read_hedge_ms: 20,
        }
    }
}

impl QuorumConfig {
    pub fn read_hedge(&self) -> Duration {
        Duration::from_millis(self.read_hedge_ms)
    }
}

/// Time limits, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// Limit for opening a connection to a node. Default 1000.
    pub connect_ms: u64,
    /// Limit for one command on one node; a node slower than this counts as failed for that
    /// operation. Default 500.
    pub node_ms: u64,
    /// Limit for a whole client request, all phases included; at least `node_ms`. Default 2000.
    pub request_ms: u64,
    /// Interval of the health probe (PING) per node. Default 1000.
    pub health_interval_ms: u64,
    /// First delay before reconnecting to a node that went away. Default 100.
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnect attempts (exponential back-off). Default 5000.
    pub reconnect_max_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect_ms: 1000,
            node_ms: 500,
            request_ms: 2000,
            health_interval_ms: 1000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5000,
        }
    }
}

impl TimeoutConfig {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn node(&self) -> Duration {
        Duration::from_millis(self.node_ms)
    }
    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms)
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:8379`.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Longest accepted key in bytes (after percent-decoding). Default 1024.
    pub max_key_bytes: usize,
    /// Allow `listen` (and `resp.listen`) on a non-loopback address while `auth.enabled` is
    /// false (and, for RESP, no `resp.password`). Default false: an open API on a public
    /// interface is refused at start.
    pub allow_public_without_auth: bool,
    /// On SIGTERM, longest wait in ms for requests in flight to finish before they are dropped
    /// and shutdown goes on (keep it below the service manager's stop timeout). Default 20000.
    pub drain_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8379)),
            max_body_bytes: 16 * 1024 * 1024,
            max_key_bytes: 1024,
            allow_public_without_auth: false,
            drain_timeout_ms: 20_000,
        }
    }
}

/// The Redis-protocol (RESP2/RESP3) listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RespConfig {
    /// Whether to serve the Redis protocol at all. Default true.
    pub enabled: bool,
    /// Address to listen on. Default `127.0.0.1:7379`.
    pub listen: SocketAddr,
    /// Most client connections at once; more are answered with an error and closed.
    /// Default 10000 (Redis's `maxclients`).
    pub max_connections: usize,
    /// Largest request (one command with all its arguments) in bytes. Default 64 MiB.
    pub max_request_bytes: usize,
    /// Most arguments in one command. Default 1048576 (Redis's limit).
    pub max_args: usize,
    /// Largest single argument (e.g. a value) in bytes. Default 16 MiB, like `http.max_body_bytes`.
    pub max_bulk_bytes: usize,
    /// Password clients must give with AUTH (or HELLO ... AUTH) before other commands.
    /// Default none: no authentication. Never printed.
    pub password: Option<Secret>,
    /// Whether FLUSHDB and FLUSHALL run. They tombstone every key on every node, so they are
    /// answered with an error naming this switch unless it is set. Default false.
    pub allow_flush: bool,
}

impl Default for RespConfig {
    fn default() -> Self {
        RespConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7379)),
            max_connections: 10_000,
            max_request_bytes: 64 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_bulk_bytes: 16 * 1024 * 1024,
            password: None,
            allow_flush: false,
        }
    }
}

/// A secret from the configuration: shown as `***` in debug output and in printed
/// configurations.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax (`RUST_LOG` overrides it). Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How the full sweep treats keys found on nodes without quorumd metadata (written directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdoptPolicy {
    /// Among the nodes holding the key, the value held by most wins (ties broken by the
    /// lowest node index); it is versioned and copied to every node.
    Majority,
    /// Change nothing; count and report.
    ReportOnly,
}

/// What quorumd does when a key it versions was changed on a node outside quorumd (by a client
/// talking to the node directly, an operator, a restore from an old dump).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectWritesPolicy {
    /// The change becomes a new version, written to every node (the newest direct change
    /// wins); a direct delete becomes a tombstone.
    Adopt,
    /// The versioned value is written back over the change, from a node that holds it intact.
    Restore,
    /// Change nothing; count and report.
    ReportOnly,
}

/// One entry of `sync.direct_writes_rules`: the policy for direct changes to the keys a
/// pattern matches. Both fields are required: a rule without either would say nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectWritesRule {
    /// Glob pattern (Redis MATCH syntax) of the keys the rule covers; not empty.
    pub pattern: String,
    /// The policy for those keys: `adopt`, `restore` or `report-only`.
    pub policy: DirectWritesPolicy,
}

impl DirectWritesPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectWritesPolicy::Adopt => "adopt",
            DirectWritesPolicy::Restore => "restore",
            DirectWritesPolicy::ReportOnly => "report-only",
        }
    }
}

/// Anti-entropy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Interval between digest exchanges in ms; 0 disables the background exchange (on-demand
    /// sweeps still work). Default 5000.
    pub exchange_interval_ms: u64,
    /// Cron schedule of the full sweep (seconds field first, e.g. `0 0 3 * * *` = 03:00 UTC
    /// daily); empty disables it. Default `0 0 3 * * *`.
    pub full_sweep_cron: String,
    /// Keys whose newest version is younger than this are treated as writes still landing:
    /// not repaired in this pass, re-examined in the next. Default 3000.
    pub in_flight_window_ms: u64,
    /// Buckets whose metadata is read per round trip. Default 32.
    pub bucket_batch: usize,
    /// Keys per DUMP/APPLY script call. Default 500.
    pub key_batch: usize,
    /// Most keys repaired per second per node; 0 = unlimited. Default 200000.
    pub max_repairs_per_sec: u64,
    /// Most keys scanned per second per node by the full sweep; 0 = unlimited. Default 10000: a nightly sweep that leaves client traffic its CPU (`make bench`: at ~72k keys/s it cost quorum PUTs 47%).
    pub max_scan_keys_per_sec: u64,
    /// SCAN COUNT hint of the full sweep. Default 1000.
    pub scan_count: usize,
    /// When a node's smoothed latency exceeds this many ms, the sweep slows down to give
    /// client traffic priority. Default 20.
    pub backoff_latency_ms: u64,
    /// Tombstones (and expired values) older than this are purged once every node holds them.
    /// Default 86400000 (one day).
    pub tombstone_grace_ms: u64,
    /// Background sweep work is split between the quorumd instances sharing the nodes: buckets
    /// are grouped in this many shards, each held by one instance under a lease. Default 64.
    pub shards: u32,
    /// Lifetime of a shard lease in ms; an instance that dies loses its shards after this.
    /// Leases are renewed when a background exchange starts and while it runs, not between
    /// exchanges, so with the periodic exchange on it must be at least twice
    /// `exchange_interval_ms`. Default 15000.
    pub lease_ms: u64,
    /// Most keys a node's hint set may hold on each other node (the keys it missed while
    /// down). A hint past it is dropped and counted in `quorumd_hints_dropped_total`; the digest
    /// exchange then finds what the node lacks, as it does for any key without a hint.
    /// Default 100000.
    pub max_hints_per_node: u64,
    /// What the full sweep does with keys written straight to a node. Default `majority`.
    pub adopt_policy: AdoptPolicy,
    /// What is done with a change made on a node outside quorumd to a key quorumd versions,
    /// found live, by the scrub or by a read: `adopt`, `restore` or `report-only`. Under
    /// `report-only`, keys created outside quorumd are reported too, whatever `adopt_policy`
    /// says. Default `adopt`.
    pub direct_writes: DirectWritesPolicy,
    /// Policies for direct changes by key pattern, in order: the first rule whose pattern
    /// matches a key decides for it, and `direct_writes` for the keys no rule matches
    /// (`[[sync.direct_writes_rules]]` with `pattern` and `policy`). Default none.
    pub direct_writes_rules: Vec<DirectWritesRule>,
    /// The checksum new stream entries record: `full` (letter `y`: entries, last ID,
    /// entries-added, max-deleted ID and consumer groups) or `entries` (letter `x`: the
    /// entries only). Entries keep the letter they were written with and every instance that
    /// knows `y` checks both, but an older instance cannot read a `y` entry: a rolling upgrade
    /// from one sets `entries` until every instance runs this version. Default `full`.
    pub stream_checksum: StreamChecksum,
    /// Subscribe to every node's keyspace notifications (turning them on with `CONFIG SET`)
    /// to see direct changes within about a second; the full sweep's scrub finds them
    /// otherwise. Default true.
    pub live_detection: bool,
    /// Glob patterns (Redis MATCH syntax) of keys the full sweep looks at; empty = all.
    pub include: Vec<String>,
    /// Glob patterns of keys the full sweep ignores. The reserved prefix is always ignored.
    pub exclude: Vec<String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            exchange_interval_ms: 5000,
            full_sweep_cron: "0 0 3 * * *".into(),
            in_flight_window_ms: 3000,
            bucket_batch: 32,
            key_batch: 500,
            max_repairs_per_sec: 200_000,
            max_scan_keys_per_sec: 10_000,
            scan_count: 1000,
            backoff_latency_ms: 20,
            tombstone_grace_ms: 86_400_000,
            shards: 64,
            lease_ms: 15_000,
            max_hints_per_node: 100_000,
            adopt_policy: AdoptPolicy::Majority,
            direct_writes: DirectWritesPolicy::Adopt,
            direct_writes_rules: Vec::new(),
            stream_checksum: StreamChecksum::Full,
            live_detection: true,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// The longest `locks.max_ttl_ms` accepted: 30 days.
pub const MAX_LOCK_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// Distributed locks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocksConfig {
    /// Longest lock TTL accepted, in ms (at most 30 days); longer requests get 400. A
    /// restarted node counts toward lock majorities only this long after it came back.
    /// Default 60000.
    pub max_ttl_ms: u64,
    /// Clock drift allowed per ms of TTL (Redlock's drift factor). Default 0.01.
    pub drift_factor: f64,
    /// Fixed clock drift allowance added to every lock, in ms. Default 2.
    pub drift_ms: u64,
    /// Shortest pause before retrying a contended acquisition, in ms. Default 5.
    pub retry_min_ms: u64,
    /// Longest pause before retrying a contended acquisition, in ms (the pause is random in
    /// between, so contenders do not retry in lockstep). Default 50.
    pub retry_max_ms: u64,
    /// Time limit for one lock script on one node, in ms; an acquisition also caps it at a
    /// fifth of its TTL, so a slow node does not eat the lock's validity. Default 100.
    pub node_timeout_ms: u64,
}

impl Default for LocksConfig {
    fn default() -> Self {
        LocksConfig {
            max_ttl_ms: 60_000,
            drift_factor: 0.01,
            drift_ms: 2,
            retry_min_ms: 5,
            retry_max_ms: 50,
            node_timeout_ms: 100,
        }
    }
}

/// Locking queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Deliveries after which an item that was never acknowledged moves to the dead-letter
    /// state instead of being delivered again. Default 5.
    pub max_deliveries: u32,
    /// Largest payload accepted, in bytes; larger gets 413. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Longest lease accepted, in ms; `locks.max_ttl_ms` caps it too. Default 60000.
    pub max_lease_ms: u64,
    /// How long an acknowledged item's tombstone is kept on a node when not every node
    /// confirmed the acknowledgement, in ms. A node that stays stale longer than this may
    /// bring the item back. Default 86400000 (one day).
    pub tombstone_ttl_ms: u64,
    /// Candidates each node proposes per claim attempt. Default 16.
    pub claim_candidates: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_deliveries: 5,
            max_payload_bytes: 1024 * 1024,
            max_lease_ms: 60_000,
            tombstone_ttl_ms: 86_400_000,
            claim_candidates: 16,
        }
    }
}

/// A parsed node address: a standalone server, or a Redis Cluster given by seed addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// The URL as configured (contains the password, if any: never log it). For a cluster,
    /// the URL of its first seed.
    pub url: String,
    /// The address as configured with the password replaced by `***`: safe for logs, errors
    /// and the API.
    pub display: String,
    /// `host:port/db` for a server, `cluster:host:port,host:port` (its seeds) for a cluster;
    /// used to find duplicates and to name the node in hints.
    pub identity: String,
    /// For a cluster, one `redis://` (or `rediss://`) URL per seed, credentials included;
    /// empty for a standalone server.
    pub cluster_seeds: Vec<String>,
}

/// Scheme prefix of a cluster replica: `redis+cluster://` or `rediss+cluster://`.
const CLUSTER_SUFFIX: &str = "+cluster://";

impl NodeAddress {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`) for a standalone server;
    /// `redis+cluster://[user:password@]host:port[,host:port...]` (or `rediss+cluster://`)
    /// for a Redis Cluster, given by one or more seeds.
    pub fn parse(raw: &str) -> Result<NodeAddress, String> {
        if let Some(at) = raw.find(CLUSTER_SUFFIX) {
            return Self::parse_cluster(raw, &raw[..at], &raw[at + CLUSTER_SUFFIX.len()..]);
        }
        let (url, host, port, db) = Self::parse_server(raw)?;
        Ok(NodeAddress {
            url,
            display: mask_url(raw),
            identity: format!("{host}:{port}/{db}"),
            cluster_seeds: Vec::new(),
        })
    }

    /// The URL, lowercased host, port and database of one server.
    fn parse_server(raw: &str) -> Result<(String, String, u16, u32), String> {
        let parsed = url::Url::parse(raw).map_err(|e| format!("{}: {e}", mask_url(raw)))?;
        let display = mask_url(raw);
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(format!(
                "{display}: scheme must be redis://, rediss://, redis+cluster:// or rediss+cluster://"
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{display}: missing host"))?;
        let port = parsed.port().unwrap_or(6379);
        let db = parsed.path().trim_start_matches('/');
        let db: u32 = if db.is_empty() {
            0
        } else {
            db.parse()
                .map_err(|_| format!("{display}: database must be a number"))?
        };
        Ok((raw.to_string(), host.to_ascii_lowercase(), port, db))
    }

    fn parse_cluster(raw: &str, scheme: &str, rest: &str) -> Result<NodeAddress, String> {
        let (credentials, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let mut seeds = Vec::new();
        let mut identities = Vec::new();
        for host in hosts.split(',') {
            let seed = format!("{scheme}://{credentials}{host}");
            let (url, host, port, db) = Self::parse_server(&seed)?;
            if db != 0 {
                return Err(format!(
                    "{}: a Redis Cluster has database 0 only",
                    mask_url(&seed)
                ));
            }
            identities.push(format!("{host}:{port}"));
            seeds.push(url);
        }
        let display = match credentials.find(':') {
            Some(colon) => format!(
                "{scheme}{CLUSTER_SUFFIX}{}***@{hosts}",
                &credentials[..=colon]
            ),
            None => raw.to_string(),
        };
        Ok(NodeAddress {
            url: seeds[0].clone(),
            display,
            identity: format!("cluster:{}", identities.join(",")),
            cluster_seeds: seeds,
        })
    }

    /// Whether this node is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_seeds.is_empty()
    }
}

/// Configuration checked and resolved into the values the service runs with.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    pub nodes: Vec<NodeAddress>,
    pub quorum: QuorumSizes,
}

impl Config {
    /// Checks every rule the types cannot express.
    pub fn validate(mut self) -> Result<Validated, ConfigError> {
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "at least one node is required"));
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut seen = HashSet::new();
        for (i, raw) in self.nodes.iter().enumerate() {
            let node = NodeAddress::parse(raw).map_err(|m| invalid(format!("nodes[{i}]"), m))?;
            if !seen.insert(node.identity.clone()) {
                return Err(invalid(
                    format!("nodes[{i}]"),
                    format!("duplicate node {}", node.display),
                ));
            }
            nodes.push(node);
        }
        let nonzero = |v: usize| (v > 0).then_some(v);
        let quorum = QuorumSizes::new(
            nodes.len(),
            nonzero(self.quorum.read),
            nonzero(self.quorum.write),
        )
        .map_err(|m| invalid("quorum", m))?;
        if self.buckets == 0 {
            self.buckets = match self.placement {
                Scheme::Xxh3 => 4096,
                Scheme::Slot => SLOTS,
            };
        }
        if self.sub_buckets == 0 {
            self.sub_buckets = self.placement.default_sub_buckets();
        }
        if self.placement == Scheme::Slot && self.buckets != SLOTS {
            return Err(invalid(
                "buckets",
                format!(
                    "{} cannot be used with placement = \"slot\", whose buckets are the {SLOTS} hash slots: leave buckets unset",
                    self.buckets
                ),
            ));
        }
        if self.placement != Scheme::Slot
            && let Some(i) = nodes.iter().position(NodeAddress::is_cluster)
        {
            return Err(invalid(
                format!("nodes[{i}]"),
                format!(
                    "{} is a Redis Cluster, which needs placement = \"slot\" (every script's keys in one hash slot)",
                    nodes[i].display
                ),
            ));
        }
        if self.placement == Scheme::Slot && self.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "key_prefix",
                "must not contain braces with placement = \"slot\": quorumd's reserved keys carry a hash tag of their own",
            ));
        }
        if !self.buckets.is_power_of_two() || self.buckets > 1 << 20 {
            return Err(invalid(
                "buckets",
                format!(
                    "{} must be a power of two between 1 and 1048576",
                    self.buckets
                ),
            ));
        }
        if !self.sub_buckets.is_power_of_two() || self.sub_buckets > 1 << 10 {
            return Err(invalid(
                "sub_buckets",
                format!(
                    "{} must be a power of two between 1 and 1024",
                    self.sub_buckets
                ),
            ));
        }
        // A typo of a few digits would otherwise start that many threads, or fail to start
        // the runtime with a bare OS error.
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "worker_threads",
                format!(
                    "{} is more than {MAX_WORKER_THREADS}: 0 means one per CPU core",
                    self.worker_threads
                ),
            ));
        }
        if self.key_prefix.is_empty() {
            return Err(invalid(
                "key_prefix",
                "must not be empty: it separates quorumd's keys from user keys",
            ));
        }
        let t = &self.timeouts;
        for (field, v) in [
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.node_ms", t.node_ms),
            ("timeouts.request_ms", t.request_ms),
            ("timeouts.health_interval_ms", t.health_interval_ms),
            ("timeouts.reconnect_min_ms", t.reconnect_min_ms),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if t.node_ms > t.request_ms {
            return Err(invalid(
                "timeouts.node_ms",
                format!(
                    "{} must not exceed timeouts.request_ms ({})",
                    t.node_ms, t.request_ms
                ),
            ));
        }
        if t.reconnect_min_ms > t.reconnect_max_ms {
            return Err(invalid(
                "timeouts.reconnect_min_ms",
                format!(
                    "{} must not exceed timeouts.reconnect_max_ms ({})",
                    t.reconnect_min_ms, t.reconnect_max_ms
                ),
            ));
        }
        for (field, v) in [
            ("quorum.batch_max_entries", self.quorum.batch_max_entries),
            ("quorum.batch_in_flight", self.quorum.batch_in_flight),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if self.quorum.read_hedge_ms == 0 {
            return Err(invalid(
                "quorum.read_hedge_ms",
                "must be greater than 0 (read_fanout = \"all\" asks every node at once)",
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(invalid("http.max_body_bytes", "must be greater than 0"));
        }
        let sync = &self.sync;
        for (field, v) in [
            ("sync.bucket_batch", sync.bucket_batch),
            ("sync.key_batch", sync.key_batch),
            ("sync.scan_count", sync.scan_count),
            ("sync.shards", sync.shards as usize),
            ("sync.lease_ms", sync.lease_ms as usize),
            ("sync.max_hints_per_node", sync.max_hints_per_node as usize),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if let Some(i) = sync
            .direct_writes_rules
            .iter()
            .position(|r| r.pattern.is_empty())
        {
            return Err(invalid(
                format!("sync.direct_writes_rules[{i}].pattern"),
                "must not be empty (\"*\" matches every key)",
            ));
        }
        // Leases are renewed when a background exchange starts and while it runs, but not in
        // the pause of an interval before the next one: a lease must outlast that pause, and
        // twice it leaves room for the renewal round itself, or instances hand shards back and
        // forth.
        if sync.exchange_interval_ms > 0
            && sync.lease_ms < sync.exchange_interval_ms.saturating_mul(LEASE_PER_INTERVAL)
        {
            return Err(invalid(
                "sync.lease_ms",
                format!(
                    "{} must be at least {} ms, {LEASE_PER_INTERVAL} × sync.exchange_interval_ms \
                     ({} ms): leases are renewed only when a background exchange starts",
                    sync.lease_ms,
                    sync.exchange_interval_ms.saturating_mul(LEASE_PER_INTERVAL),
                    sync.exchange_interval_ms
                ),
            ));
        }
        let locks = &self.locks;
        if locks.max_ttl_ms == 0 || locks.node_timeout_ms == 0 {
            return Err(invalid(
                if locks.max_ttl_ms == 0 {
                    "locks.max_ttl_ms"
                } else {
                    "locks.node_timeout_ms"
                },
                "must be greater than 0",
            ));
        }
        // Far beyond any useful TTL, and far below what Redis's `PX` overflows at (an expiry
        // past the year 292 million, refused with "invalid expire time").
        if locks.max_ttl_ms > MAX_LOCK_TTL_MS {
            return Err(invalid(
                "locks.max_ttl_ms",
                format!(
                    "{} must be at most {MAX_LOCK_TTL_MS} (30 days): a node that restarted waits \
                     this long before it counts for locks again",
                    locks.max_ttl_ms
                ),
            ));
        }
        if !(0.0..0.5).contains(&locks.drift_factor) {
            return Err(invalid(
                "locks.drift_factor",
                format!("{} must be at least 0 and below 0.5", locks.drift_factor),
            ));
        }
        if locks.retry_min_ms > locks.retry_max_ms {
            return Err(invalid(
                "locks.retry_min_ms",
                format!(
                    "{} must not exceed locks.retry_max_ms ({})",
                    locks.retry_min_ms, locks.retry_max_ms
                ),
            ));
        }
        let queues = &self.queues;
        for (field, v) in [
            ("queues.max_deliveries", queues.max_deliveries as usize),
            ("queues.max_lease_ms", queues.max_lease_ms as usize),
            ("queues.max_payload_bytes", queues.max_payload_bytes),
            ("queues.claim_candidates", queues.claim_candidates),
            ("queues.tombstone_ttl_ms", queues.tombstone_ttl_ms as usize),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if self.http.max_key_bytes == 0 {
            return Err(invalid("http.max_key_bytes", "must be greater than 0"));
        }
        check_listen_safety(&self.http, &self.auth)?;
        check_resp_listen_safety(&self.resp, &self.http, &self.auth)?;
        check_listeners_apart(&self.http, &self.resp)?;
        let resp = &self.resp;
        for (field, v) in [
            ("resp.max_connections", resp.max_connections),
            ("resp.max_request_bytes", resp.max_request_bytes),
            ("resp.max_args", resp.max_args),
            ("resp.max_bulk_bytes", resp.max_bulk_bytes),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        Ok(Validated {
            config: self,
            nodes,
            quorum,
        })
    }

    /// Where quorumd's keys live on the nodes. `buckets` and `sub_buckets` are resolved by
    /// `validate`.
    pub fn layout(&self) -> Layout {
        Layout {
            prefix: self.key_prefix.clone(),
            scheme: self.placement,
            buckets: self.buckets,
            sub_buckets: self.sub_buckets,
        }
    }

    /// The configuration as TOML with every node password masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.nodes = shown.nodes.iter().map(|n| mask_url(n)).collect();
        shown.auth = shown.auth.masked();
        if shown.resp.password.is_some() {
            shown.resp.password = Some(Secret("***".into()));
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// An unauthenticated API must not be reachable from other machines by accident.
fn check_listen_safety(http: &HttpConfig, auth: &auth::AuthConfig) -> Result<(), ConfigError> {
    if !auth.enabled && !http.listen.ip().is_loopback() && !http.allow_public_without_auth {
        return Err(invalid(
            "http.listen",
            format!(
                "{} is not a loopback address and auth.enabled is false: enable [auth] with \
                 tokens, or set http.allow_public_without_auth = true to accept an open API",
                http.listen
            ),
        ));
    }
    Ok(())
}

/// The two listeners cannot share an address: the second bind would fail at start, after the
/// first had already announced itself. Port 0 (any free port) never clashes.
fn check_listeners_apart(http: &HttpConfig, resp: &RespConfig) -> Result<(), ConfigError> {
    let (h, r) = (http.listen, resp.listen);
    let same_ip = h.ip() == r.ip() || h.ip().is_unspecified() || r.ip().is_unspecified();
    if resp.enabled && h.port() != 0 && h.port() == r.port() && same_ip {
        return Err(invalid(
            "resp.listen",
            format!("{r} overlaps http.listen ({h}): give the two listeners different ports"),
        ));
    }
    Ok(())
}

/// The same rule for the Redis protocol: a public `resp.listen` needs AUTH (tokens or
/// `resp.password`), unless `http.allow_public_without_auth` accepts an open service.
fn check_resp_listen_safety(
    resp: &RespConfig,
    http: &HttpConfig,
    auth: &auth::AuthConfig,
) -> Result<(), ConfigError> {
    let protected = auth.enabled || resp.password.is_some();
    if resp.enabled
        && !protected
        && !resp.listen.ip().is_loopback()
        && !http.allow_public_without_auth
    {
        return Err(invalid(
            "resp.listen",
            format!(
                "{} is not a loopback address and neither auth.enabled nor resp.password is \
                 set: enable [auth] with tokens or set resp.password, or set \
                 http.allow_public_without_auth = true to accept an open service",
                resp.listen
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_nodes(nodes: &[&str]) -> Config {
        Config {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    fn field_of(err: ConfigError) -> String {
        err.field().to_string()
    }

    #[test]
    fn a_cluster_replica_is_given_by_its_seeds_and_needs_the_slot_placement() {
        let a = NodeAddress::parse("rediss+cluster://app:s3cret@H1:7000,h2:7001").unwrap();
        assert!(a.is_cluster());
        assert_eq!(
            a.cluster_seeds,
            ["rediss://app:s3cret@H1:7000", "rediss://app:s3cret@h2:7001"]
        );
        assert_eq!(a.identity, "cluster:h1:7000,h2:7001");
        assert_eq!(a.display, "rediss+cluster://app:***@H1:7000,h2:7001");
        assert!(!a.display.contains("s3cret"));
        let plain = NodeAddress::parse("redis+cluster://h:7000").unwrap();
        assert_eq!(plain.cluster_seeds, ["redis://h:7000"]);
        assert!(NodeAddress::parse("redis+cluster://h:7000/2").is_err());
        assert!(NodeAddress::parse("http+cluster://h:7000").is_err());
        assert!(!NodeAddress::parse("redis://h:7000").unwrap().is_cluster());

        let mut c = with_nodes(&["redis://a:1", "redis+cluster://b:1,b:2", "redis://c:1"]);
        assert_eq!(field_of(c.clone().validate().unwrap_err()), "nodes[1]");
        c.placement = Scheme::Slot;
        assert_eq!(c.validate().unwrap().nodes.len(), 3);
    }

    #[test]
    fn invalid_values_name_their_field() {
        assert_eq!(field_of(with_nodes(&[]).validate().unwrap_err()), "nodes");
        assert_eq!(
            field_of(with_nodes(&["http://x:1"]).validate().unwrap_err()),
            "nodes[0]"
        );
        assert_eq!(
            field_of(
                with_nodes(&["redis://a:1", "redis://A:1/0"])
                    .validate()
                    .unwrap_err()
            ),
            "nodes[1]"
        );
        let mut c = with_nodes(&["redis://a:1", "redis://b:1", "redis://c:1"]);
        c.quorum.read = 1;
        c.quorum.write = 2;
        assert_eq!(field_of(c.validate().unwrap_err()), "quorum");
        let mut c = with_nodes(&["redis://a:1"]);
        c.timeouts.node_ms = 5000;
        assert_eq!(field_of(c.validate().unwrap_err()), "timeouts.node_ms");
        let mut c = with_nodes(&["redis://a:1"]);
        c.buckets = 1000;
        assert_eq!(field_of(c.validate().unwrap_err()), "buckets");
        let mut c = with_nodes(&["redis://a:1"]);
        assert_eq!(c.clone().validate().unwrap().config.buckets, 4096);
        c.placement = Scheme::Slot;
        assert_eq!(c.clone().validate().unwrap().config.buckets, SLOTS);
        c.buckets = 4096;
        assert_eq!(field_of(c.clone().validate().unwrap_err()), "buckets");
        c.buckets = 0;
        c.key_prefix = "{qd}:".into();
        assert_eq!(field_of(c.validate().unwrap_err()), "key_prefix");
        let mut c = with_nodes(&["redis://a:1"]);
        assert_eq!(c.clone().validate().unwrap().config.sub_buckets, 16);
        c.placement = Scheme::Slot;
        assert_eq!(c.clone().validate().unwrap().config.sub_buckets, 4);
        c.placement = Scheme::Xxh3;
        for bad in [12, 2048] {
            c.sub_buckets = bad;
            assert_eq!(
                field_of(c.clone().validate().unwrap_err()),
                "sub_buckets",
                "{bad}"
            );
        }
        c.sub_buckets = 1;
        assert!(c.clone().validate().is_ok());
        c.worker_threads = MAX_WORKER_THREADS + 1;
        assert_eq!(
            field_of(c.clone().validate().unwrap_err()),
            "worker_threads"
        );
        c.worker_threads = MAX_WORKER_THREADS;
        assert!(c.clone().validate().is_ok());
        c.quorum.read_hedge_ms = 0;
        assert_eq!(
            field_of(c.clone().validate().unwrap_err()),
            "quorum.read_hedge_ms"
        );
        c.quorum.read_hedge_ms = 1;
        c.sync.direct_writes_rules = vec![
            DirectWritesRule {
                pattern: "cfg:*".into(),
                policy: DirectWritesPolicy::Restore,
            },
            DirectWritesRule {
                pattern: String::new(),
                policy: DirectWritesPolicy::Adopt,
            },
        ];
        assert_eq!(
            field_of(c.clone().validate().unwrap_err()),
            "sync.direct_writes_rules[1].pattern"
        );
        c.sync.direct_writes_rules.pop();
        assert!(c.clone().validate().is_ok());
        c.sync.max_hints_per_node = 0;
        assert_eq!(
            field_of(c.validate().unwrap_err()),
            "sync.max_hints_per_node"
        );
    }

    #[test]
    fn a_lease_must_outlast_two_exchange_intervals() {
        let mut c = with_nodes(&["redis://a:1"]);
        c.sync.exchange_interval_ms = 10_000;
        c.sync.lease_ms = 15_000;
        let err = c.clone().validate().unwrap_err();
        assert_eq!(field_of(err), "sync.lease_ms");
        c.sync.lease_ms = 20_000;
        assert!(c.clone().validate().is_ok());
        // No periodic exchange, nothing to outlast.
        c.sync.exchange_interval_ms = 0;
        c.sync.lease_ms = 1;
        assert!(c.clone().validate().is_ok());
        // The defaults keep the rule.
        assert!(with_nodes(&["redis://a:1"]).validate().is_ok());
    }

    #[test]
    fn lock_and_queue_settings_are_checked() {
        let mut c = with_nodes(&["redis://a:1"]);
        c.locks.drift_factor = 0.7;
        assert_eq!(field_of(c.validate().unwrap_err()), "locks.drift_factor");
        let mut c = with_nodes(&["redis://a:1"]);
        c.locks.retry_min_ms = 100;
        c.locks.retry_max_ms = 10;
        assert_eq!(field_of(c.validate().unwrap_err()), "locks.retry_min_ms");
        let mut c = with_nodes(&["redis://a:1"]);
        c.locks.node_timeout_ms = 0;
        assert_eq!(field_of(c.validate().unwrap_err()), "locks.node_timeout_ms");
        let mut c = with_nodes(&["redis://a:1"]);
        c.locks.max_ttl_ms = i64::MAX as u64;
        assert_eq!(field_of(c.validate().unwrap_err()), "locks.max_ttl_ms");
        let mut c = with_nodes(&["redis://a:1"]);
        c.queues.max_deliveries = 0;
        assert_eq!(field_of(c.validate().unwrap_err()), "queues.max_deliveries");
    }

    #[test]
    fn passwords_are_masked() {
        let mut c = with_nodes(&["redis://u:topsecret@h:1"]);
        c.resp.password = Some(Secret("respsecret".into()));
        assert!(!c.to_masked_toml().contains("topsecret"));
        assert!(!c.to_masked_toml().contains("respsecret"));
        assert!(!format!("{c:?}").contains("respsecret"));
        let err = with_nodes(&["redis://u:topsecret@h:1/notanumber"])
            .validate()
            .unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn public_listen_needs_auth_or_explicit_consent() {
        let mut c = with_nodes(&["redis://a:1"]);
        c.http.listen = "0.0.0.0:8379".parse().unwrap();
        let err = c.clone().validate().unwrap_err();
        assert!(
            err.to_string().contains("allow_public_without_auth"),
            "{err}"
        );
        assert_eq!(field_of(err), "http.listen");
        let mut open = c.clone();
        open.http.allow_public_without_auth = true;
        assert!(open.validate().is_ok());
        let mut authed = c;
        authed.auth.enabled = true;
        authed.auth.tokens.push(auth::TokenEntry {
            name: "ops".into(),
            token: "a-long-enough-token-123".into(),
            scope: auth::Scope::Write,
        });
        let shown = authed.to_masked_toml();
        assert!(!shown.contains("a-long-enough-token-123"), "{shown}");
        assert!(authed.validate().is_ok());
        let mut v6 = with_nodes(&["redis://a:1"]);
        v6.http.listen = "[::1]:8379".parse().unwrap();
        assert!(v6.validate().is_ok(), "IPv6 loopback is local");
    }

    #[test]
    fn the_two_listeners_need_different_addresses() {
        let mut c = with_nodes(&["redis://a:1"]);
        c.resp.listen = c.http.listen;
        let err = c.clone().validate().unwrap_err();
        assert!(err.to_string().contains("overlaps http.listen"), "{err}");
        assert_eq!(field_of(err), "resp.listen");
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.resp.listen = "127.0.0.1:0".parse().unwrap();
        assert!(
            c.clone().validate().is_ok(),
            "port 0: each its own free port"
        );
        c.http.listen = "127.0.0.1:8379".parse().unwrap();
        c.resp.listen = "127.0.0.2:8379".parse().unwrap();
        assert!(c.clone().validate().is_ok(), "other addresses");
        c.resp.enabled = false;
        c.resp.listen = c.http.listen;
        assert!(c.validate().is_ok(), "resp disabled");
    }

    #[test]
    fn public_resp_listen_needs_auth_or_explicit_consent() {
        let mut c = with_nodes(&["redis://a:1"]);
        c.resp.listen = "0.0.0.0:7379".parse().unwrap();
        let err = c.clone().validate().unwrap_err();
        assert_eq!(field_of(err), "resp.listen");
        let mut disabled = c.clone();
        disabled.resp.enabled = false;
        assert!(
            disabled.validate().is_ok(),
            "a disabled listener is not exposed"
        );
        let mut open = c.clone();
        open.http.allow_public_without_auth = true;
        assert!(open.validate().is_ok());
        let mut password = c.clone();
        password.resp.password = Some(Secret("pw".into()));
        assert!(password.validate().is_ok());
        let mut tokens = c;
        tokens.auth.enabled = true;
        tokens.auth.tokens.push(auth::TokenEntry {
            name: "ops".into(),
            token: "a-long-enough-token-123".into(),
            scope: auth::Scope::Write,
        });
        assert!(tokens.validate().is_ok());
    }

    #[test]
    fn tls_and_credentials_are_accepted() {
        let v = with_nodes(&["rediss://user:pw@h:6380/2", "redis://h2"])
            .validate()
            .unwrap();
        assert_eq!(v.nodes[0].identity, "h:6380/2");
        assert_eq!(v.nodes[1].identity, "h2:6379/0");
    }
}
