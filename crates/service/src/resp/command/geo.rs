//! The GEO commands: GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH, GEOSEARCHSTORE, GEORADIUS,
//! GEORADIUS_RO, GEORADIUSBYMEMBER and GEORADIUSBYMEMBER_RO, with redis-server 7.0's replies
//! and errors (`geo.c`).
//!
//! A geo set is a sorted set whose scores are 52-bit geohashes (`geohash.rs`), so nothing here
//! stores anything of its own: GEOADD is ZADD with computed scores (as Redis rewrites it), the
//! reads go through the sorted sets' read, and the STORE forms through ZRANGESTORE's write.
//! The searches check their options only after the key is read, as Redis does (a wrong type
//! comes first, and FROMMEMBER looks its member up while the options are read).

use super::geohash::{self, Search, Shape, Unit};
use super::zset_ops::{self, AddFlags, Members};
use super::zsets::{ZsetCmd, as_zset, read_sets, store_set};
use super::{Access, Command, Flag, Spec, data, eq, int_arg, read_typed, syntax_error};
use crate::resp::frame::Frame;
use bytes::Bytes;
use quorumd_core::quorum::Consistency;
use quorumd_replication::store::VersionedStore;
use std::cmp::Ordering;

const READ: &[Flag] = &[Flag::ReadOnly];
const WRITE: &[Flag] = &[Flag::Write, Flag::DenyOom];

pub static SPECS: &[Spec] = &[
    Spec::keyed("geoadd", -5, WRITE, (1, 1, 1), parse_geoadd),
    Spec::keyed("geopos", -2, READ, (1, 1, 1), |a| {
        data(GeoCmd::Pos(a[1].clone(), a[2..].to_vec()))
    }),
    Spec::keyed("geohash", -2, READ, (1, 1, 1), |a| {
        data(GeoCmd::Hash(a[1].clone(), a[2..].to_vec()))
    }),
    Spec::keyed("geodist", -4, READ, (1, 1, 1), parse_geodist),
    Spec::keyed("geosearch", -7, READ, (1, 1, 1), |a| {
        parse_search(a, Kind::Search)
    }),
    Spec::keyed("geosearchstore", -8, WRITE, (1, 2, 1), |a| {
        parse_search(a, Kind::SearchStore)
    }),
    // STORE makes these two writes, as in Redis's table; their _RO forms refuse STORE.
    Spec::keyed("georadius", -6, WRITE, (1, 1, 1), |a| {
        parse_search(a, Kind::Radius { ro: false })
    }),
    Spec::keyed("georadius_ro", -6, READ, (1, 1, 1), |a| {
        parse_search(a, Kind::Radius { ro: true })
    }),
    Spec::keyed("georadiusbymember", -5, WRITE, (1, 1, 1), |a| {
        parse_search(a, Kind::ByMember { ro: false })
    }),
    Spec::keyed("georadiusbymember_ro", -5, READ, (1, 1, 1), |a| {
        parse_search(a, Kind::ByMember { ro: true })
    }),
];

/// A float argument as `getDoubleFromObjectOrReply` takes it, with its error text.
fn float_arg(arg: &[u8], error: &str) -> Result<f64, Frame> {
    zset_ops::parse_score(arg).ok_or_else(|| Frame::error(error))
}

/// `extractLongLatOrReply`: both numbers, then the range.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Frame> {
    let lon = float_arg(lon, "ERR value is not a valid float")?;
    let lat = float_arg(lat, "ERR value is not a valid float")?;
    geohash::check_range(lon, lat).map_err(|e| Frame::error(format!("ERR {e}")))?;
    Ok((lon, lat))
}

fn unit_arg(arg: &[u8]) -> Result<Unit, Frame> {
    geohash::unit(arg).map_err(|e| Frame::error(format!("ERR {e}")))
}

/// `geoaddCommand`: NX, XX and CH, then longitude, latitude, member triples, each point
/// checked before anything is written; then ZADD does the rest.
fn parse_geoadd(a: &[Bytes]) -> Result<Command, Frame> {
    let (mut flags, mut ch) = (AddFlags::default(), false);
    let mut at = 2;
    while let Some(opt) = a.get(at) {
        if eq(opt, "nx") {
            flags.nx = true;
        } else if eq(opt, "xx") {
            flags.xx = true;
        } else if eq(opt, "ch") {
            ch = true;
        } else {
            break;
        }
        at += 1;
    }
    let rest = &a[at..];
    // No triple at all reaches ZADD, which refuses it with the same syntax error.
    if rest.is_empty() || !rest.len().is_multiple_of(3) || (flags.nx && flags.xx) {
        return Err(syntax_error());
    }
    let mut pairs = Vec::with_capacity(rest.len() / 3);
    for t in rest.chunks(3) {
        let (lon, lat) = lon_lat(&t[0], &t[1])?;
        let score = geohash::score(lon, lat).ok_or_else(syntax_error)?;
        pairs.push((score, t[2].clone()));
    }
    data(ZsetCmd::Add {
        key: a[1].clone(),
        flags,
        ch,
        pairs,
    })
}

/// GEODIST's unit and argument count are checked before the key is read.
fn parse_geodist(a: &[Bytes]) -> Result<Command, Frame> {
    let unit = match a.len() {
        4 => Unit(1.0),
        5 => unit_arg(&a[4])?,
        _ => return Err(syntax_error()),
    };
    data(GeoCmd::Dist {
        key: a[1].clone(),
        members: (a[2].clone(), a[3].clone()),
        unit,
    })
}

/// Which search command: `georadiusGeneric`'s flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Radius { ro: bool },
    ByMember { ro: bool },
    Search,
    SearchStore,
}

impl Kind {
    fn geosearch(self) -> bool {
        matches!(self, Kind::Search | Kind::SearchStore)
    }

    /// STORE and STOREDIST with a key: GEORADIUS and GEORADIUSBYMEMBER only.
    fn takes_store(self) -> bool {
        matches!(
            self,
            Kind::Radius { ro: false } | Kind::ByMember { ro: false }
        )
    }

    /// The index of the first option.
    fn base_args(self) -> usize {
        match self {
            Kind::Radius { .. } => 6,
            Kind::ByMember { .. } => 5,
            Kind::Search => 2,
            Kind::SearchStore => 3,
        }
    }
}

fn parse_search(a: &[Bytes], kind: Kind) -> Result<Command, Frame> {
    let key = if kind == Kind::SearchStore {
        a[2].clone()
    } else {
        a[1].clone()
    };
    data(GeoCmd::Search {
        key,
        dst: store_key(a, kind),
        kind,
        args: a.to_vec(),
    })
}

/// The key a search may write, found before it runs (for ordering pipelined commands): the
/// last STORE or STOREDIST key. A request whose options turn out invalid writes nothing.
fn store_key(a: &[Bytes], kind: Kind) -> Option<Bytes> {
    if kind == Kind::SearchStore {
        return Some(a[1].clone());
    }
    if !kind.takes_store() {
        return None;
    }
    let mut found = None;
    let mut i = kind.base_args();
    while i < a.len() {
        if (eq(&a[i], "store") || eq(&a[i], "storedist")) && i + 1 < a.len() {
            found = Some(a[i + 1].clone());
            i += 1;
        } else if eq(&a[i], "count") {
            i += 1;
        }
        i += 1;
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// A search's options, read as `georadiusGeneric` reads them.
struct Query {
    /// `None` when the key is missing and nothing located the centre.
    search: Option<Search>,
    with_dist: bool,
    with_hash: bool,
    with_coord: bool,
    sort: Sort,
    /// 0: no COUNT.
    count: usize,
    any: bool,
    /// The destination and whether it stores distances (STOREDIST).
    store: Option<(Bytes, bool)>,
}

/// `longLatFromMember`.
fn member_point(set: &Members, member: &[u8]) -> Result<(f64, f64), Frame> {
    zset_ops::score(set, member)
        .map(geohash::decode_score)
        .ok_or_else(|| Frame::error("ERR could not decode requested zset member"))
}

/// `extractDistanceOrReply`: the radius, then the unit.
fn radius(value: &[u8], unit: &[u8]) -> Result<(Shape, Unit), Frame> {
    let r = float_arg(value, "ERR need numeric radius")?;
    if r < 0.0 {
        return Err(Frame::error("ERR radius cannot be negative"));
    }
    Ok((Shape::Radius(r), unit_arg(unit)?))
}

/// `extractBoxOrReply`: width, height, then the unit.
fn box_shape(width: &[u8], height: &[u8], unit: &[u8]) -> Result<(Shape, Unit), Frame> {
    let w = float_arg(width, "ERR need numeric width")?;
    let h = float_arg(height, "ERR need numeric height")?;
    if h < 0.0 || w < 0.0 {
        return Err(Frame::error("ERR height or width cannot be negative"));
    }
    Ok((Shape::Box(w, h), unit_arg(unit)?))
}

/// `georadiusGeneric`'s parsing, given the set read (`None`: missing), in its order of
/// checks: the centre and radius of the older commands, each option left to right (FROMMEMBER
/// looks its member up there), then the combinations.
fn parse_query(a: &[Bytes], kind: Kind, set: Option<&Members>) -> Result<Query, Frame> {
    let mut center = None;
    let mut shape = None;
    match (kind, set) {
        (Kind::Radius { .. }, _) => {
            center = Some(lon_lat(&a[2], &a[3])?);
            shape = Some(radius(&a[4], &a[5])?);
        }
        // A missing key: its options are still read, for the reply's kind.
        (Kind::ByMember { .. }, None) => {}
        (Kind::ByMember { .. }, Some(set)) => {
            center = Some(member_point(set, &a[2])?);
            shape = Some(radius(&a[3], &a[4])?);
        }
        (Kind::Search | Kind::SearchStore, _) => {}
    }
    let mut q = Query {
        search: None,
        with_dist: false,
        with_hash: false,
        with_coord: false,
        sort: Sort::None,
        count: 0,
        any: false,
        store: (kind == Kind::SearchStore).then(|| (a[1].clone(), false)),
    };
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let base = kind.base_args();
    let remaining = a.len().saturating_sub(base);
    let mut i = 0;
    while i < remaining {
        let arg = &a[base + i];
        let next = |k: usize| &a[base + i + k];
        if eq(arg, "withdist") {
            q.with_dist = true;
        } else if eq(arg, "withhash") {
            q.with_hash = true;
        } else if eq(arg, "withcoord") {
            q.with_coord = true;
        } else if eq(arg, "any") {
            q.any = true;
        } else if eq(arg, "asc") {
            q.sort = Sort::Asc;
        } else if eq(arg, "desc") {
            q.sort = Sort::Desc;
        } else if eq(arg, "count") && i + 1 < remaining {
            let n = int_arg(next(1))?;
            if n <= 0 {
                return Err(Frame::error("ERR COUNT must be > 0"));
            }
            q.count = usize::try_from(n).unwrap_or(usize::MAX);
            i += 1;
        } else if (eq(arg, "store") || eq(arg, "storedist"))
            && i + 1 < remaining
            && kind.takes_store()
        {
            q.store = Some((next(1).clone(), eq(arg, "storedist")));
            i += 1;
        } else if eq(arg, "storedist") && kind == Kind::SearchStore {
            q.store = Some((a[1].clone(), true));
        } else if eq(arg, "frommember") && i + 1 < remaining && kind.geosearch() && !fromloc {
            if let Some(set) = set {
                center = Some(member_point(set, next(1))?);
            }
            frommember = true;
            i += 1;
        } else if eq(arg, "fromlonlat") && i + 2 < remaining && kind.geosearch() && !frommember {
            center = Some(lon_lat(next(1), next(2))?);
            fromloc = true;
            i += 2;
        } else if eq(arg, "byradius") && i + 2 < remaining && kind.geosearch() && !bybox {
            shape = Some(radius(next(1), next(2))?);
            byradius = true;
            i += 2;
        } else if eq(arg, "bybox") && i + 3 < remaining && kind.geosearch() && !byradius {
            shape = Some(box_shape(next(1), next(2), next(3))?);
            bybox = true;
            i += 3;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    if q.store.is_some() && (q.with_dist || q.with_hash || q.with_coord) {
        let what = if kind == Kind::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Frame::error(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    // Redis names the command as the client spelt it.
    let name = String::from_utf8_lossy(&a[0]);
    if kind.geosearch() && !(frommember || fromloc) {
        return Err(Frame::error(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if kind.geosearch() && !(byradius || bybox) {
        return Err(Frame::error(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if q.any && q.count == 0 {
        return Err(Frame::error("ERR the ANY argument requires COUNT argument"));
    }
    // COUNT keeps the nearest: it sorts unless ANY takes the first found.
    if q.count != 0 && q.sort == Sort::None && !q.any {
        q.sort = Sort::Asc;
    }
    q.search = match (center, shape) {
        (Some(center), Some((shape, unit))) => Some(Search {
            center,
            shape,
            unit,
        }),
        _ => None,
    };
    Ok(q)
}

/// A member found by a search.
struct Point<'a> {
    member: &'a [u8],
    score: f64,
    /// Meters from the centre.
    dist: f64,
    lon: f64,
    lat: f64,
}

/// `membersOfAllNeighbors`: the members inside the shape, area by area in Redis's order,
/// each area's in the set's order; with `limit` (ANY's count, 0: none) it stops once that
/// many are found.
fn find<'a>(set: &'a Members, search: &Search, limit: usize) -> Vec<Point<'a>> {
    let mut found = Vec::new();
    let full = |found: &Vec<Point>| limit != 0 && found.len() >= limit;
    for (min, max) in search.score_ranges() {
        if full(&found) {
            break;
        }
        let start = set.partition_point(|(_, s)| *s < min);
        for (member, score) in &set[start..] {
            if *score >= max {
                break;
            }
            let (lon, lat) = geohash::decode_score(*score);
            if let Some(dist) = search.distance_if_within(lon, lat) {
                found.push(Point {
                    member,
                    score: *score,
                    dist,
                    lon,
                    lat,
                });
            }
            if full(&found) {
                break;
            }
        }
    }
    found
}

/// The answer to a search on the set read (`None`: missing): the reply, and for the STORE
/// forms the destination and its new members (empty: delete it).
fn run_search(q: Query, set: Option<&Members>) -> (Frame, Option<(Bytes, Members)>) {
    let (Some(set), Some(search)) = (set, q.search) else {
        return match q.store {
            Some((dst, _)) => (Frame::Integer(0), Some((dst, Members::new()))),
            None => (Frame::Array(vec![]), None),
        };
    };
    let mut found = find(set, &search, if q.any { q.count } else { 0 });
    let returned = if q.count == 0 {
        found.len()
    } else {
        found.len().min(q.count)
    };
    if q.sort != Sort::None {
        // `sort_gp_asc` / `sort_gp_desc`: by distance only.
        let desc = q.sort == Sort::Desc;
        let cmp = |a: &Point, b: &Point| {
            let o = if a.dist > b.dist {
                Ordering::Greater
            } else if a.dist == b.dist {
                Ordering::Equal
            } else {
                Ordering::Less
            };
            if desc { o.reverse() } else { o }
        };
        // As Redis: the whole result through glibc's qsort (a merge sort: stable), or only
        // the first `returned` through its own `pqsort`, whose order of equal distances is
        // its own.
        if returned == found.len() {
            found.sort_by(cmp);
        } else if returned > 0 {
            partial_sort(&mut found, 0, returned - 1, &cmp);
        }
    }
    found.truncate(returned);
    let conversion = search.unit.0;
    if let Some((dst, storedist)) = q.store {
        let n = found.len() as i64;
        let mut members: Members = found
            .iter()
            .map(|p| {
                let score = if storedist {
                    p.dist / conversion
                } else {
                    p.score
                };
                (p.member.to_vec(), score)
            })
            .collect();
        // A member found twice (Redis scans a neighbour equal to the centre twice) is stored
        // once.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members.dedup_by(|a, b| a.0 == b.0);
        zset_ops::sort(&mut members);
        return (Frame::Integer(n), Some((dst, members)));
    }
    let options = usize::from(q.with_dist) + usize::from(q.with_hash) + usize::from(q.with_coord);
    let items = found
        .iter()
        .map(|p| {
            let member = Frame::bulk(p.member.to_vec());
            if options == 0 {
                return member;
            }
            let mut item = vec![member];
            if q.with_dist {
                item.push(Frame::bulk(geohash::distance_text(p.dist / conversion)));
            }
            if q.with_hash {
                item.push(Frame::Integer(geohash::c_i64(p.score)));
            }
            if q.with_coord {
                item.push(coordinates(p.lon, p.lat));
            }
            Frame::Array(item)
        })
        .collect();
    (Frame::Array(items), None)
}

/// Redis's `pqsort` (`pqsort.c`, Bentley and McIlroy's quicksort from NetBSD that only
/// recurses into the parts overlapping `lrange..=rrange`), step for step, so that members at
/// equal distances come out in Redis's order.
fn partial_sort<T>(v: &mut [T], lrange: usize, rrange: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
    // The part being sorted: `v[a..a + n]`.
    let (mut a, mut n) = (0usize, v.len());
    let med3 = |v: &[T], x: usize, y: usize, z: usize| {
        if cmp(&v[x], &v[y]) == Ordering::Less {
            if cmp(&v[y], &v[z]) == Ordering::Less {
                y
            } else if cmp(&v[x], &v[z]) == Ordering::Less {
                z
            } else {
                x
            }
        } else if cmp(&v[y], &v[z]) == Ordering::Greater {
            y
        } else if cmp(&v[x], &v[z]) == Ordering::Less {
            x
        } else {
            z
        }
    };
    let vecswap = |v: &mut [T], x: usize, y: usize, n: usize| {
        for i in 0..n {
            v.swap(x + i, y + i);
        }
    };
    // Whether `lrange..=rrange` overlaps `v[start..start + len]`.
    let wanted = |start: usize, len: usize| !(rrange < start || lrange >= start + len);
    loop {
        if n < 7 {
            for pm in a + 1..a + n {
                let mut pl = pm;
                while pl > a && cmp(&v[pl - 1], &v[pl]) == Ordering::Greater {
                    v.swap(pl, pl - 1);
                    pl -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d);
                pm = med3(v, pm - d, pm, pm + d);
                pn = med3(v, pn - 2 * d, pn - d, pn);
            }
            pm = med3(v, pl, pm, pn);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        // `pc` and `pd` may step below `pb` by one: kept as signed positions.
        let (mut pc, mut pd) = ((a + n - 1) as isize, (a + n - 1) as isize);
        loop {
            while pb as isize <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c == Ordering::Greater {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb as isize <= pc {
                let c = cmp(&v[pc as usize], &v[a]);
                if c == Ordering::Less {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pc as usize, pd as usize);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb as isize > pc {
                break;
            }
            v.swap(pb, pc as usize);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let r = (pa - a).min(pb - pa);
        vecswap(v, a, pb - r, r);
        let (pc, pd) = (pc as usize, pd as usize);
        let r = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - r, r);
        let left = pb - pa;
        if left > 1 && wanted(a, left) {
            partial_sort_from(v, a, left, lrange, rrange, cmp);
        }
        let right = pd - pc;
        if right > 1 {
            a = pn - right;
            n = right;
            if wanted(a, n) {
                continue;
            }
        }
        return;
    }
}

/// `partial_sort` on `v[a..a + n]`, the ranges still counted in all of `v`.
fn partial_sort_from<T>(
    v: &mut [T],
    a: usize,
    n: usize,
    lrange: usize,
    rrange: usize,
    cmp: &impl Fn(&T, &T) -> Ordering,
) {
    // Sorting the sub-slice with the ranges shifted keeps every index relation the same.
    let sub = &mut v[a..a + n];
    let l = lrange.saturating_sub(a);
    let r = rrange.saturating_sub(a);
    if rrange < a {
        return;
    }
    partial_sort(sub, l, r, cmp);
}

fn coordinates(lon: f64, lat: f64) -> Frame {
    Frame::Array(vec![
        Frame::DoubleText(geohash::coordinate_text(lon)),
        Frame::DoubleText(geohash::coordinate_text(lat)),
    ])
}

pub enum GeoCmd {
    Pos(Bytes, Vec<Bytes>),
    Hash(Bytes, Vec<Bytes>),
    Dist {
        key: Bytes,
        members: (Bytes, Bytes),
        unit: Unit,
    },
    /// The searches: the whole request, parsed once the key is read.
    Search {
        key: Bytes,
        dst: Option<Bytes>,
        kind: Kind,
        args: Vec<Bytes>,
    },
}

impl GeoCmd {
    pub fn access(&self) -> Access<'_> {
        match self {
            GeoCmd::Pos(key, _) | GeoCmd::Hash(key, _) | GeoCmd::Dist { key, .. } => Access {
                reads: vec![key],
                writes: vec![],
            },
            GeoCmd::Search { key, dst, .. } => Access {
                reads: vec![key],
                writes: dst.iter().map(|k| &k[..]).collect(),
            },
        }
    }

    pub async fn apply(self, store: &VersionedStore, level: Consistency) -> Frame {
        match self {
            GeoCmd::Pos(key, members) => {
                read_typed(store, &key, level, as_zset, |set| {
                    Frame::Array(
                        members
                            .iter()
                            .map(|m| match set.and_then(|s| zset_ops::score(s, m)) {
                                Some(score) => {
                                    let (lon, lat) = geohash::decode_score(score);
                                    coordinates(lon, lat)
                                }
                                None => Frame::NullArray,
                            })
                            .collect(),
                    )
                })
                .await
            }
            GeoCmd::Hash(key, members) => {
                read_typed(store, &key, level, as_zset, |set| {
                    Frame::Array(
                        members
                            .iter()
                            .map(|m| match set.and_then(|s| zset_ops::score(s, m)) {
                                Some(score) => Frame::bulk(geohash::hash_text(score)),
                                None => Frame::Null,
                            })
                            .collect(),
                    )
                })
                .await
            }
            GeoCmd::Dist { key, members, unit } => {
                read_typed(store, &key, level, as_zset, |set| {
                    let Some(set) = set else {
                        return Frame::Null;
                    };
                    let (Some(a), Some(b)) = (
                        zset_ops::score(set, &members.0),
                        zset_ops::score(set, &members.1),
                    ) else {
                        return Frame::Null;
                    };
                    let ((lon1, lat1), (lon2, lat2)) =
                        (geohash::decode_score(a), geohash::decode_score(b));
                    let d = geohash::distance(lon1, lat1, lon2, lat2) / unit.0;
                    Frame::bulk(geohash::distance_text(d))
                })
                .await
            }
            GeoCmd::Search {
                key, kind, args, ..
            } => {
                let set = match read_sets(store, &[key], level, false).await {
                    Ok(sets) => sets.into_iter().next().flatten(),
                    Err(e) => return e,
                };
                let q = match parse_query(&args, kind, set.as_ref()) {
                    Ok(q) => q,
                    Err(e) => return e,
                };
                let (answer, write) = run_search(q, set.as_ref());
                match write {
                    None => answer,
                    Some((dst, members)) => match store_set(store, &dst, level, members).await {
                        Frame::Integer(_) => answer,
                        failed => failed,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::from(s.to_owned())).collect()
    }

    fn parse_error(line: &str) -> Option<Frame> {
        let a = args(line);
        let spec = SPECS.iter().find(|s| eq(&a[0], s.name))?;
        (spec.parse)(&a).err()
    }

    fn query_error(line: &str, kind: Kind, set: Option<&Members>) -> Option<Frame> {
        parse_query(&args(line), kind, set).err()
    }

    #[test]
    fn geoadd_checks_points_before_the_key() {
        let e = |t: &str| Some(Frame::error(t));
        assert_eq!(
            parse_error("geoadd k 200 0 x"),
            e("ERR invalid longitude,latitude pair 200.000000,0.000000")
        );
        assert_eq!(
            parse_error("geoadd k abc 0 x"),
            e("ERR value is not a valid float")
        );
        assert_eq!(parse_error("geoadd k nx xx 1 2 a"), Some(syntax_error()));
        assert_eq!(parse_error("geoadd k 1 2 a 3"), Some(syntax_error()));
        assert_eq!(parse_error("geoadd k ch 1 2 a"), None);
        assert_eq!(
            parse_error("geodist k a b yd"),
            e("ERR unsupported unit provided. please use M, KM, FT, MI")
        );
        assert_eq!(parse_error("geodist k a b m x"), Some(syntax_error()));
    }

    #[test]
    fn search_options_follow_georadius_generic() {
        let set: Members = vec![(b"p".to_vec(), 3479099956230698.0)];
        let e = |t: &str| Some(Frame::error(t));
        let s = Some(&set);
        assert_eq!(
            query_error("geosearch k frommember q byradius 1 km", Kind::Search, s),
            e("ERR could not decode requested zset member")
        );
        // A missing key does not look the member up.
        assert_eq!(
            query_error("geosearch k frommember q byradius 1 km", Kind::Search, None),
            None
        );
        assert_eq!(
            query_error("GeoSearch k byradius 1 km", Kind::Search, s),
            e("ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for GeoSearch")
        );
        assert_eq!(
            query_error(
                "geosearch k frommember p bybox 1 1 km byradius 1 m",
                Kind::Search,
                s
            ),
            Some(syntax_error())
        );
        assert_eq!(
            query_error(
                "geosearch k frommember p byradius 1 km any",
                Kind::Search,
                s
            ),
            e("ERR the ANY argument requires COUNT argument")
        );
        assert_eq!(
            query_error(
                "geosearch k frommember p byradius 1 km count 0",
                Kind::Search,
                s
            ),
            e("ERR COUNT must be > 0")
        );
        assert_eq!(
            query_error(
                "georadius_ro k 1 2 3 m store d",
                Kind::Radius { ro: true },
                s
            ),
            Some(syntax_error())
        );
        assert_eq!(
            query_error(
                "georadius k 1 2 3 m store d withdist",
                Kind::Radius { ro: false },
                s
            ),
            e(
                "ERR STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and \
               WITHCOORD options"
            )
        );
        // A missing key answers ByMember without reading its radius.
        assert_eq!(
            query_error(
                "georadiusbymember k m x km",
                Kind::ByMember { ro: false },
                None
            ),
            None
        );
    }

    #[test]
    fn store_keys_are_known_before_the_search_runs() {
        let a = args("georadius k 1 2 3 m count 5 store d1 storedist d2");
        assert_eq!(
            store_key(&a, Kind::Radius { ro: false }),
            Some(Bytes::from("d2"))
        );
        assert_eq!(store_key(&a, Kind::Radius { ro: true }), None);
    }

    #[test]
    fn coordinates_are_bulk_strings_in_resp2_and_doubles_in_resp3() {
        use crate::resp::frame::Protocol;
        let c = coordinates(13.361389338970184, -0.0);
        assert_eq!(
            &c.to_bytes(Protocol::Resp2)[..],
            b"*2\r\n$20\r\n13.36138933897018433\r\n$1\r\n0\r\n"
        );
        assert_eq!(
            &c.to_bytes(Protocol::Resp3)[..],
            b"*2\r\n,13.36138933897018433\r\n,0\r\n"
        );
    }

    #[test]
    fn partial_sort_orders_the_wanted_prefix() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for n in [1usize, 5, 7, 8, 40, 41, 100, 300] {
            let mut v: Vec<u32> = (0..n).map(|_| rng.random_range(0..50)).collect();
            let mut sorted = v.clone();
            sorted.sort();
            let k = rng.random_range(1..=n);
            partial_sort(&mut v, 0, k - 1, &|a: &u32, b: &u32| a.cmp(b));
            assert_eq!(v[..k], sorted[..k], "n {n} k {k}");
        }
    }

    #[test]
    fn count_sorts_and_any_stops_early() {
        let mut set: Members = [(13.361389, 38.115556, "a"), (15.087269, 37.502669, "b")]
            .iter()
            .map(|&(lon, lat, m)| (m.as_bytes().to_vec(), geohash::score(lon, lat).unwrap()))
            .collect();
        zset_ops::sort(&mut set);
        let q = parse_query(
            &args("geosearch k fromlonlat 15 37 byradius 200 km count 1"),
            Kind::Search,
            Some(&set),
        )
        .ok()
        .unwrap();
        let (reply, _) = run_search(q, Some(&set));
        assert_eq!(reply, Frame::Array(vec![Frame::bulk("b")]));
    }
}
