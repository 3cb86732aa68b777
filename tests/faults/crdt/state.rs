//! The converged state, read straight from every node and through every quorumd instance, and
//! the check that they all agree.

use crate::crdt::model::State;
use crate::crdt::workload::Client;
use quorumd::app::App;
use quorumd::crdt::{Crdt, LwwMap, OrSet, PnCounter};
use quorumd_testkit::nemesis::Nemesis;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// What the workload's CRDT types are, for reading them.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Set,
    Map,
}

impl Kind {
    fn path(self, name: &str) -> String {
        match self {
            Kind::Counter => format!("counters/{name}"),
            Kind::Set => format!("sets/{name}"),
            Kind::Map => format!("maps/{name}"),
        }
    }
}

/// Everything one node holds for a CRDT key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub meta: Option<Vec<u8>>,
    pub state: State,
    /// The materialised value under the user key, as the HTTP API would answer it.
    pub value: Value,
}

/// `name`'s metadata entry, state and materialised value on every node.
pub async fn node_views(nemesis: &Nemesis, app: &App, kind: Kind, name: &str) -> Vec<NodeView> {
    let loc = app.store().locate(name.as_bytes()).expect("user key");
    let prefix = &app.store().settings().layout.prefix;
    let mut views = Vec::new();
    for node in &nemesis.cluster.nodes {
        let mut c = redis::Client::open(node.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("direct connection");
        let (meta, state): (Option<Vec<u8>>, State) = redis::pipe()
            .cmd("HGET")
            .arg(&*loc.meta_key)
            .arg(name)
            .cmd("HGETALL")
            .arg(format!("{prefix}c:{name}"))
            .query_async(&mut c)
            .await
            .expect("read a node");
        let value = match kind {
            Kind::Counter => {
                let v: Option<String> = redis::cmd("GET")
                    .arg(name)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                json!({ "value": v.map_or(json!(0), |s| s.parse::<i64>().map_or(json!(s), |n| json!(n))) })
            }
            Kind::Set => {
                let m: BTreeSet<String> = redis::cmd("SMEMBERS")
                    .arg(name)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                json!({ "members": m })
            }
            Kind::Map => {
                let m: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(name)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                json!(m)
            }
        };
        views.push(NodeView { meta, state, value });
    }
    views
}

/// The value the state stands for, in the API's form.
fn value_of(kind: Kind, state: &State) -> Result<Value, String> {
    let fields = state.iter().map(|(f, v)| (&f[..], &v[..]));
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(match kind {
        Kind::Counter => {
            let v = PnCounter::from_fields(fields)
                .map_err(|e| e.to_string())?
                .value();
            json!({ "value": i64::try_from(v).map_or(json!(v.to_string()), |n| json!(n)) })
        }
        Kind::Set => {
            let s = OrSet::from_fields(fields).map_err(|e| e.to_string())?;
            json!({ "members": s.members().into_iter().map(text).collect::<BTreeSet<_>>() })
        }
        Kind::Map => {
            let m = LwwMap::from_fields(fields).map_err(|e| e.to_string())?;
            let o: BTreeMap<String, String> = m
                .entries()
                .into_iter()
                .map(|(f, v)| (text(f), text(v)))
                .collect();
            json!(o)
        }
    })
}

/// Convergence: every node holds the same metadata, state and materialised value, the value is
/// the one the state stands for, and every instance answers it. `Ok(state)` when converged.
pub async fn converged(
    nemesis: &Nemesis,
    app: &App,
    client: &Client,
    kind: Kind,
    name: &str,
) -> Result<State, String> {
    let views = node_views(nemesis, app, kind, name).await;
    for (i, v) in views.iter().enumerate().skip(1) {
        if *v != views[0] {
            return Err(format!(
                "{name}: node {i} differs from node 0: {v:?} vs {:?}",
                views[0]
            ));
        }
    }
    let expected = value_of(kind, &views[0].state).map_err(|e| format!("{name}: {e}"))?;
    if views[0].value != expected {
        return Err(format!(
            "{name}: nodes hold {} but their state stands for {expected}",
            views[0].value
        ));
    }
    for via in 0..client.bases.len() {
        let answered = client.read(via, &kind.path(name)).await?;
        if answered != expected {
            return Err(format!(
                "{name}: instance {via} answers {answered}, the nodes hold {expected}"
            ));
        }
    }
    Ok(views[0].state.clone())
}
