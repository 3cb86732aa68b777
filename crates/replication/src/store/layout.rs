//! The layout marker every node carries (`{prefix}layout`): the entry format and the
//! placement its metadata uses. quorumd checks it at start and refuses nodes of another layout
//! instead of misreading their metadata; `quorumd convert` converts entry formats 1 and 2 in
//! place, and merges a node's sub-buckets into the fewer the configuration asks for.

use super::VersionedStore;
use quorumd_core::layout::{DigestKeys, Layout};
use quorumd_node::calls::layout::{self, BucketSubKeys, NodeLayout};
use quorumd_node::pool::{Node, NodeError};
use std::collections::HashMap;

/// The entry format this build writes: binary, see `quorumd_core::meta`.
pub const ENTRY_FORMAT: &str = "3";

/// Marked formats that `quorumd convert` turns into [`ENTRY_FORMAT`] in place (format 1 has no
/// marker): format 2's text entries, and under `placement = "slot"` its one-field digest
/// hashes.
const CONVERTIBLE_FORMATS: [&str; 1] = ["2"];

/// The bucket digest hash of entry format 1, which had no marker: its presence on a node
/// without a marker means metadata of format 1. Every later layout writes its marker before
/// any metadata, so this one key tells an unmarked node with metadata from an empty one.
fn format_one_digest_key(prefix: &str) -> String {
    format!("{prefix}d")
}

/// The channel quorumd's writing scripts announce their writes of user keys on, for the live
/// detection. A channel, not a key, and not a keyspace channel: no keyspace pattern names it.
pub fn own_writes_channel(prefix: &str) -> String {
    format!("{prefix}own")
}

pub fn layout_key(prefix: &str) -> String {
    format!("{prefix}layout")
}

/// The key the live detection writes to check that a node's key events arrive.
pub fn probe_key(prefix: &str) -> String {
    format!("{prefix}notify:probe")
}

/// The probe key for one event source: on a cluster's master, tagged with a slot it owns, so
/// that the write lands on that master.
pub fn probe_key_for(prefix: &str, source: &quorumd_node::pool::EventSource) -> String {
    match source {
        quorumd_node::pool::EventSource::Server => probe_key(prefix),
        quorumd_node::pool::EventSource::Master { slots, .. } => format!(
            "{}{{{}}}",
            probe_key(prefix),
            quorumd_core::layout::slot_tag(slots.first().map_or(0, |&(a, _)| u32::from(a)))
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "{node} holds quorumd metadata of entry format {format} ({what}), and this build reads format {ENTRY_FORMAT} only. Convert it in place with `quorumd convert` (values, versions and digests are kept), or delete quorumd's keys ({prefix}*) on that node and let a full sweep adopt its values"
    )]
    OldFormat {
        node: String,
        format: &'static str,
        what: &'static str,
        prefix: String,
    },
    #[error(
        "{node} holds quorumd metadata of another layout: its {field} is {found}, this configuration's is {expected}. Start quorumd with the node's {field}, or rebuild: delete quorumd's keys ({prefix}*) on every node and let a full sweep adopt the values"
    )]
    Mismatch {
        node: String,
        field: &'static str,
        found: String,
        expected: String,
        prefix: String,
    },
    #[error(
        "{node} holds quorumd metadata in {found} sub-buckets per bucket, and this configuration's sub_buckets is {expected}. Merge them into {expected} in place with `quorumd convert` (values, versions and digests are kept), or start quorumd with sub_buckets = {found}"
    )]
    MoreSubBuckets {
        node: String,
        found: u32,
        expected: u32,
    },
    #[error("checking the layout on {node}: {source}")]
    Node { node: String, source: NodeError },
}

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    /// Nodes converted from an older entry format (the others were already of this one, or
    /// empty).
    pub nodes_converted: Vec<String>,
    pub entries_converted: u64,
    /// Slot digests turned from one-field hashes into strings (`placement = "slot"` only).
    pub slot_digests_converted: u64,
    /// Entries moved into fewer sub-buckets (the configuration's `sub_buckets` lower than the
    /// node's).
    pub entries_moved: u64,
}

impl VersionedStore {
    fn expected_layout(&self) -> [(&'static str, String); 4] {
        [
            ("format", ENTRY_FORMAT.to_owned()),
            ("placement", self.settings.layout.scheme.as_str().to_owned()),
            ("buckets", self.settings.layout.buckets.to_string()),
            ("sub_buckets", self.settings.layout.sub_buckets.to_string()),
        ]
    }

    /// Checks every reachable node's layout, and marks empty nodes with this one. A node that
    /// is down at start is checked by the next start that reaches it.
    #[tracing::instrument(name = "store.check_layout", skip_all)]
    pub async fn check_layout(&self) -> Result<(), LayoutError> {
        self.visit_layouts(false).await.map(drop)
    }

    /// Converts entry formats 1 and 2 to this build's format, and merges sub-buckets into the
    /// configuration's fewer, on every reachable node, in place, and marks it; nodes already
    /// of this layout are left as they are.
    #[tracing::instrument(name = "store.convert_layout", skip_all)]
    pub async fn convert_layout(&self) -> Result<ConvertReport, LayoutError> {
        self.visit_layouts(true).await
    }

    async fn visit_layouts(&self, convert: bool) -> Result<ConvertReport, LayoutError> {
        let prefix = &self.settings.layout.prefix;
        let key = layout_key(prefix);
        let mut report = ConvertReport::default();
        for node in self.pool.nodes() {
            let failed = |source| LayoutError::Node {
                node: node.display.clone(),
                source,
            };
            let found = match layout::read(node, &key, &format_one_digest_key(prefix)).await {
                Ok(l) => l,
                // Out of reach now: the next start that reaches it checks it.
                Err(
                    NodeError::Unavailable(_) | NodeError::Timeout(_) | NodeError::Connection(_),
                ) => continue,
                Err(e) => return Err(failed(e)),
            };
            let work = match found {
                NodeLayout::Marked(fields) => match self.conversion_for(node, &fields)? {
                    Some(work) => work,
                    None => continue,
                },
                // A node wiped and healed before its marker was written back holds this
                // layout's metadata without the marker: marked below, not refused.
                NodeLayout::Unmarked if self.holds_own_metadata(node).await.map_err(failed)? => {
                    super::events::LayoutMarkerRestored {
                        node: &node.display,
                    }
                    .emit();
                    Conversion::default()
                }
                NodeLayout::Unmarked => Conversion {
                    format: Some(("1", "from before content checksums")),
                    sub_buckets_from: None,
                },
                NodeLayout::Empty => Conversion::default(),
            };
            if work.format.is_some() || work.sub_buckets_from.is_some() {
                if !convert {
                    return Err(work.refusal(node, &self.settings.layout));
                }
                self.convert_node(node, &work, &mut report)
                    .await
                    .map_err(failed)?;
                report.nodes_converted.push(node.display.clone());
            }
            self.mark_layout(node).await.map_err(failed)?;
        }
        Ok(report)
    }

    /// Whether the metadata of a node without a marker is of this build's format and this
    /// configuration's layout: every entry of a sample parses as this format and sits in the
    /// hash this layout places its key in. Format 1's text entries do not parse, and another
    /// placement, bucket or sub-bucket count puts keys in other hashes.
    async fn holds_own_metadata(&self, node: &Node) -> Result<bool, NodeError> {
        let meta_prefix = format!("{}m", self.settings.layout.prefix);
        let sample = layout::sample_metadata(node, &meta_prefix, 16, 8, 64).await?;
        Ok(sample.iter().all(|(hash, entries)| {
            entries.iter().all(|(key, entry)| {
                quorumd_core::meta::Meta::parse(entry).is_ok()
                    && self.locate(key).is_ok_and(|loc| *loc.meta_key == **hash)
            })
        }))
    }

    /// Writes this configuration's layout marker on `node`: after a wipe, before the node
    /// holds metadata again for long (see `sync::exchange`).
    pub async fn mark_layout(&self, node: &Node) -> Result<(), NodeError> {
        let fields: Vec<(&str, String)> = self.expected_layout().into_iter().collect();
        layout::write(node, &layout_key(&self.settings.layout.prefix), &fields).await
    }

    /// What a marked node needs before this build can use it: `None` when its marker is this
    /// layout's; an error when it differs in a way no conversion mends.
    fn conversion_for(
        &self,
        node: &Node,
        fields: &HashMap<String, String>,
    ) -> Result<Option<Conversion>, LayoutError> {
        let format = fields.get("format").map(String::as_str).unwrap_or_default();
        let old_format = CONVERTIBLE_FORMATS.iter().find(|f| **f == format).copied();
        // Fewer sub-buckets are the larger count's low bits, so merging into fewer is a
        // conversion; more would need each key's hash, which Lua cannot compute.
        let sub_buckets_from = fields
            .get("sub_buckets")
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&s| s.is_power_of_two() && s > self.settings.layout.sub_buckets);
        for (field, want) in self.expected_layout() {
            let found = fields.get(field).cloned().unwrap_or_default();
            let mended = match field {
                "format" => old_format.is_some(),
                "sub_buckets" => sub_buckets_from.is_some(),
                _ => false,
            };
            if found != want && !mended {
                return Err(LayoutError::Mismatch {
                    node: node.display.clone(),
                    field,
                    found: if found.is_empty() {
                        "unset".into()
                    } else {
                        found
                    },
                    expected: want,
                    prefix: self.settings.layout.prefix.clone(),
                });
            }
        }
        let work = Conversion {
            format: old_format.map(|f| (f, "text entries, before the binary ones")),
            sub_buckets_from,
        };
        Ok((work.format.is_some() || work.sub_buckets_from.is_some()).then_some(work))
    }

    /// Converts one node in place: its entries to this format, then its sub-buckets merged.
    async fn convert_node(
        &self,
        node: &Node,
        work: &Conversion,
        report: &mut ConvertReport,
    ) -> Result<(), NodeError> {
        let target = &self.settings.layout;
        // The node's metadata is where its own sub-bucket count put it until the merge.
        let on_node = Layout {
            sub_buckets: work.sub_buckets_from.unwrap_or(target.sub_buckets),
            ..target.clone()
        };
        if work.format.is_some() {
            for bucket in 0..on_node.buckets {
                report.entries_converted += layout::convert(
                    node,
                    &on_node.bucket_meta_keys(bucket),
                    self.settings.stream_checksum,
                )
                .await?;
            }
            // Format 2 kept the slot placement's bucket digests as one-field hashes; format 3
            // keeps them as strings (`xxh3`'s one digest hash is unchanged).
            if let DigestKeys::Strings(keys) = on_node.digest_keys() {
                report.slot_digests_converted += layout::convert_slot_digests(node, &keys).await?;
            }
        }
        if work.sub_buckets_from.is_some() {
            let buckets: Vec<BucketSubKeys> = (0..on_node.buckets)
                .map(|bucket| BucketSubKeys {
                    sub_digest_key: on_node.sub_digest_key(bucket),
                    meta_keys: on_node.bucket_meta_keys(bucket),
                })
                .collect();
            // A few dozen buckets per call: each call blocks the node while it moves them.
            for chunk in buckets.chunks(64) {
                report.entries_moved +=
                    layout::merge_sub_buckets(node, chunk, target.sub_buckets).await?;
            }
        }
        Ok(())
    }
}

/// What one node needs converted.
#[derive(Debug, Default)]
struct Conversion {
    /// Its entry format, when older than this build's, and what that format was.
    format: Option<(&'static str, &'static str)>,
    /// Its sub-bucket count, when more than this configuration's.
    sub_buckets_from: Option<u32>,
}

impl Conversion {
    /// The refusal at start, naming what `quorumd convert` would do.
    fn refusal(&self, node: &Node, layout: &Layout) -> LayoutError {
        match (self.format, self.sub_buckets_from) {
            (Some((format, what)), _) => LayoutError::OldFormat {
                node: node.display.clone(),
                format,
                what,
                prefix: layout.prefix.clone(),
            },
            (None, found) => LayoutError::MoreSubBuckets {
                node: node.display.clone(),
                found: found.unwrap_or_default(),
                expected: layout.sub_buckets,
            },
        }
    }
}
