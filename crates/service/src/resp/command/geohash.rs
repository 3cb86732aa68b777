//! The geohash arithmetic of the GEO commands, without I/O, as redis-server 7.0 computes it
//! (`geohash.c`, `geohash_helper.c`, `geo.c`): the 52-bit interleaved score of a point, its
//! decoding, the base32 text of GEOHASH, the haversine distance on Redis's sphere, and the
//! nine areas a radius or box search scans. Every float operation is done in Redis's order so
//! that the scores, coordinates and distances are the same bits as redis-server's.

use std::f64::consts::PI;

/// Redis's bounds: Web Mercator's latitude limit, not the poles.
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;

/// Bits per coordinate in a score (26 + 26 = 52, exact in a double).
pub const STEP_MAX: u8 = 26;

/// Redis's `EARTH_RADIUS_IN_METERS`.
pub const EARTH_RADIUS_IN_METERS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;

/// `D_R`: the C macro `(M_PI / 180.0)`.
const D_R: f64 = PI / 180.0;

fn deg_rad(ang: f64) -> f64 {
    ang * D_R
}

fn rad_deg(ang: f64) -> f64 {
    ang / D_R
}

/// A coordinate pair Redis refuses (outside the bounds above).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("invalid longitude,latitude pair {longitude:.6},{latitude:.6}")]
pub struct OutOfRange {
    pub longitude: f64,
    pub latitude: f64,
}

/// `extractLongLatOrReply`'s range check.
pub fn check_range(longitude: f64, latitude: f64) -> Result<(), OutOfRange> {
    if !(LONG_MIN..=LONG_MAX).contains(&longitude) || !(LAT_MIN..=LAT_MAX).contains(&latitude) {
        return Err(OutOfRange {
            longitude,
            latitude,
        });
    }
    Ok(())
}

/// A distance unit of GEODIST and the searches: its name and meters per unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit(pub f64);

/// An unknown unit, in Redis's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported unit provided. please use M, KM, FT, MI")]
pub struct UnknownUnit;

/// `extractUnitOrReply`: m, km, ft, mi, any case.
pub fn unit(name: &[u8]) -> Result<Unit, UnknownUnit> {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map(|(_, m)| Unit(m))
        .ok_or(UnknownUnit)
}

/// A geohash of `step` bits per coordinate: latitude on the even bits, longitude on the odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bits {
    pub bits: u64,
    pub step: u8,
}

impl Bits {
    /// `HASHISZERO`: an area left out of a search.
    fn is_zero(self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// `geohashAlign52Bits`: the score of the area's south-west corner.
    fn align52(self) -> u64 {
        self.bits << (52 - u32::from(self.step) * 2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    min: f64,
    max: f64,
}

const LONG_RANGE: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// The area a geohash covers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Area {
    longitude: Range,
    latitude: Range,
}

/// Spreads the 32 bits of `v` to the even bits of the result.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bits of `x` into 32 bits.
fn squash(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

/// `interleave64(lat, long)`.
fn interleave(lat: u32, long: u32) -> u64 {
    spread(lat) | (spread(long) << 1)
}

/// `deinterleave64`: (latitude, longitude) cells.
fn deinterleave(bits: u64) -> (u32, u32) {
    (squash(bits), squash(bits >> 1))
}

/// C's `(uint32_t)` of an offset in `[0, 2^step]`: truncation.
fn to_cell(offset: f64) -> u32 {
    offset as u32
}

/// `geohashEncode`: `None` outside Redis's bounds or the ranges.
fn encode(
    long_range: Range,
    lat_range: Range,
    longitude: f64,
    latitude: f64,
    step: u8,
) -> Option<Bits> {
    if !(1..=32).contains(&step) || check_range(longitude, latitude).is_err() {
        return None;
    }
    if latitude < lat_range.min
        || latitude > lat_range.max
        || longitude < long_range.min
        || longitude > long_range.max
    {
        return None;
    }
    let mut lat_offset = (latitude - lat_range.min) / (lat_range.max - lat_range.min);
    let mut long_offset = (longitude - long_range.min) / (long_range.max - long_range.min);
    let cells = (1u64 << step) as f64;
    lat_offset *= cells;
    long_offset *= cells;
    Some(Bits {
        bits: interleave(to_cell(lat_offset), to_cell(long_offset)),
        step,
    })
}

/// `geohashDecode`.
fn decode(long_range: Range, lat_range: Range, hash: Bits) -> Option<Area> {
    if hash.is_zero() {
        return None;
    }
    let (ilato, ilono) = deinterleave(hash.bits);
    let cells = (1u64 << hash.step) as f64;
    let lat_scale = lat_range.max - lat_range.min;
    let long_scale = long_range.max - long_range.min;
    // `ilato + 1` is a uint32_t sum in C: it wraps.
    let (lat_next, long_next) = (ilato.wrapping_add(1), ilono.wrapping_add(1));
    Some(Area {
        latitude: Range {
            min: lat_range.min + (f64::from(ilato) * 1.0 / cells) * lat_scale,
            max: lat_range.min + (f64::from(lat_next) * 1.0 / cells) * lat_scale,
        },
        longitude: Range {
            min: long_range.min + (f64::from(ilono) * 1.0 / cells) * long_scale,
            max: long_range.min + (f64::from(long_next) * 1.0 / cells) * long_scale,
        },
    })
}

/// The score GEOADD stores for a point already checked by `check_range`.
pub fn score(longitude: f64, latitude: f64) -> Option<f64> {
    encode(LONG_RANGE, LAT_RANGE, longitude, latitude, STEP_MAX).map(|h| h.align52() as f64)
}

/// C's `(uint64_t)` of a double as x86-64 code computes it (values past `i64`'s range come
/// out as `cvttsd2si`'s "integer indefinite"): what Redis decodes from a score that no GEOADD
/// wrote (a negative one, an infinity).
fn c_u64(x: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if x < TWO_63 {
        c_i64(x) as u64
    } else {
        (c_i64(x - TWO_63) as u64) ^ (1 << 63)
    }
}

/// C's `(long long)` of a double on x86-64: truncation, `i64::MIN` out of range or NaN.
pub fn c_i64(x: f64) -> i64 {
    if x > -9_223_372_036_854_775_809.0 && x < 9_223_372_036_854_775_808.0 {
        x as i64
    } else {
        i64::MIN
    }
}

/// `decodeGeohash`: the point a score stands for, as (longitude, latitude), each clamped to
/// Redis's bounds (`geohashDecodeAreaToLongLat`).
pub fn decode_score(score: f64) -> (f64, f64) {
    let hash = Bits {
        bits: c_u64(score),
        step: STEP_MAX,
    };
    // The step is never zero, so the decoding always succeeds.
    let area = decode(LONG_RANGE, LAT_RANGE, hash).unwrap_or(Area {
        longitude: LONG_RANGE,
        latitude: LAT_RANGE,
    });
    let lon = ((area.longitude.min + area.longitude.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.latitude.min + area.latitude.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// GEOHASH's text for a score: the point re-encoded over the standard ranges (latitude
/// -90..90), ten base32 characters and a final `0` (Redis has only 52 bits for eleven).
pub fn hash_text(score: f64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = decode_score(score);
    let standard = Range {
        min: -90.0,
        max: 90.0,
    };
    // Redis ignores a failed encoding (it cannot fail for a decoded point): bits 0.
    let bits = encode(LONG_RANGE, standard, lon, lat, STEP_MAX).map_or(0, |h| h.bits);
    let mut out: String = (0..10)
        .map(|i| char::from(ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize]))
        .collect();
    out.push('0');
    out
}

/// `geohashGetDistance`: the haversine distance in meters.
pub fn distance(lon1d: f64, lat1d: f64, lon2d: f64, lat2d: f64) -> f64 {
    let lat1r = deg_rad(lat1d);
    let lon1r = deg_rad(lon1d);
    let lat2r = deg_rad(lat2d);
    let lon2r = deg_rad(lon2d);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let v = ((lon2r - lon1r) / 2.0).sin();
    2.0 * EARTH_RADIUS_IN_METERS * (u * u + lat1r.cos() * lat2r.cos() * v * v).sqrt().asin()
}

/// What a search covers, its sizes in the request's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Radius(f64),
    /// Width, then height.
    Box(f64, f64),
}

/// A search: its centre (longitude, latitude), its shape and the unit's meters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    pub center: (f64, f64),
    pub shape: Shape,
    pub unit: Unit,
}

impl Search {
    /// `geoWithinShape`: the distance from the centre, in meters, of a point inside.
    pub fn distance_if_within(&self, lon: f64, lat: f64) -> Option<f64> {
        let (x1, y1) = self.center;
        let conversion = self.unit.0;
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(x1, y1, lon, lat);
                // Written as Redis's `distance > radius` test: a NaN distance is inside.
                if d > r * conversion { None } else { Some(d) }
            }
            Shape::Box(w, h) => {
                let (width_m, height_m) = (w * conversion, h * conversion);
                // `geohashGetDistanceIfInRectangle`, 7.0's version.
                let lon_distance = distance(lon, lat, x1, lat);
                let lat_distance = distance(lon, lat, lon, y1);
                if lon_distance > width_m / 2.0 || lat_distance > height_m / 2.0 {
                    return None;
                }
                Some(distance(x1, y1, lon, lat))
            }
        }
    }

    /// `geohashBoundingBox`: min longitude, min latitude, max longitude, max latitude.
    fn bounding_box(&self) -> [f64; 4] {
        let (longitude, latitude) = self.center;
        let conversion = self.unit.0;
        let (height, width) = match self.shape {
            Shape::Radius(r) => (conversion * r, conversion * r),
            Shape::Box(w, h) => (conversion * (h / 2.0), conversion * (w / 2.0)),
        };
        let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
        let long_delta_top =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(latitude + lat_delta).cos());
        let long_delta_bottom =
            rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(latitude - lat_delta).cos());
        // The box's wider edge is the one nearer a pole.
        let long_delta = if latitude < 0.0 {
            long_delta_bottom
        } else {
            long_delta_top
        };
        [
            longitude - long_delta,
            latitude - lat_delta,
            longitude + long_delta,
            latitude + lat_delta,
        ]
    }

    /// `geohashCalculateAreasByShapeWGS84` then `membersOfAllNeighbors`'s walk: the score
    /// ranges `[min, max)` to scan, in Redis's order (the centre, N, S, E, W, NE, NW, SE, SW),
    /// with the areas left out and the repeats skipped as Redis skips them.
    pub fn score_ranges(&self) -> Vec<(f64, f64)> {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounding_box();
        let (longitude, latitude) = self.center;
        let radius_meters = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box(w, h) => ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt(),
        } * self.unit.0;
        let mut steps = estimate_steps(radius_meters, latitude);
        let around = |steps: u8| {
            let hash = encode(LONG_RANGE, LAT_RANGE, longitude, latitude, steps).unwrap_or(Bits {
                bits: 0,
                step: steps,
            });
            (hash, neighbors(hash))
        };
        let (mut hash, mut n) = around(steps);
        let area_of = |h: Bits| decode(LONG_RANGE, LAT_RANGE, h);
        let too_small = match (
            area_of(n.north),
            area_of(n.south),
            area_of(n.east),
            area_of(n.west),
        ) {
            (Some(north), Some(south), Some(east), Some(west)) => {
                north.latitude.max < max_lat
                    || south.latitude.min > min_lat
                    || east.longitude.max < max_lon
                    || west.longitude.min > min_lon
            }
            _ => false,
        };
        if steps > 1 && too_small {
            steps -= 1;
            (hash, n) = around(steps);
        }
        if steps >= 2
            && let Some(area) = area_of(hash)
        {
            let zero = Bits::default();
            if area.latitude.min < min_lat {
                (n.south, n.south_west, n.south_east) = (zero, zero, zero);
            }
            if area.latitude.max > max_lat {
                (n.north, n.north_east, n.north_west) = (zero, zero, zero);
            }
            if area.longitude.min < min_lon {
                (n.west, n.south_west, n.north_west) = (zero, zero, zero);
            }
            if area.longitude.max > max_lon {
                (n.east, n.south_east, n.north_east) = (zero, zero, zero);
            }
        }
        let areas = [
            hash,
            n.north,
            n.south,
            n.east,
            n.west,
            n.north_east,
            n.north_west,
            n.south_east,
            n.south_west,
        ];
        let mut ranges = Vec::new();
        let mut last_processed = 0;
        for (i, area) in areas.iter().enumerate() {
            if area.is_zero() {
                continue;
            }
            // Redis compares with the last area scanned, except the centre (index 0 reads
            // as "none yet"): a neighbour equal to the centre is scanned twice.
            if last_processed != 0 && *area == areas[last_processed] {
                continue;
            }
            let min = area.align52();
            let max = Bits {
                bits: area.bits.wrapping_add(1),
                step: area.step,
            }
            .align52();
            ranges.push((min as f64, max as f64));
            last_processed = i;
        }
        ranges
    }
}

/// `geohashEstimateStepsByRadius`.
fn estimate_steps(range_meters: f64, lat: f64) -> u8 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut range_meters = range_meters;
    let mut step: i32 = 1;
    while range_meters < MERCATOR_MAX {
        range_meters *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

#[derive(Debug, Clone, Copy, Default)]
struct Neighbors {
    north: Bits,
    east: Bits,
    west: Bits,
    south: Bits,
    north_east: Bits,
    south_east: Bits,
    north_west: Bits,
    south_west: Bits,
}

/// `geohash_move_x` (longitude, the odd bits) and `geohash_move_y` (latitude, the even
/// bits): one cell east/north (`d` > 0) or west/south, wrapping around.
fn moved(hash: Bits, dx: i8, dy: i8) -> Bits {
    const ODD: u64 = 0xaaaa_aaaa_aaaa_aaaa;
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let shift = 64 - u32::from(hash.step) * 2;
    let step = |moving: u64, still: u64, d: i8, fill: u64, keep: u64| {
        if d == 0 {
            return moving | still;
        }
        let zz = fill >> shift;
        let m = if d > 0 {
            moving.wrapping_add(zz.wrapping_add(1))
        } else {
            (moving | zz).wrapping_sub(zz.wrapping_add(1))
        };
        (m & (keep >> shift)) | still
    };
    let bits = step(hash.bits & ODD, hash.bits & EVEN, dx, EVEN, ODD);
    let bits = step(bits & EVEN, bits & ODD, dy, ODD, EVEN);
    Bits {
        bits,
        step: hash.step,
    }
}

fn neighbors(hash: Bits) -> Neighbors {
    Neighbors {
        east: moved(hash, 1, 0),
        west: moved(hash, -1, 0),
        south: moved(hash, 0, -1),
        north: moved(hash, 0, 1),
        north_west: moved(hash, -1, 1),
        south_west: moved(hash, -1, -1),
        north_east: moved(hash, 1, 1),
        south_east: moved(hash, 1, -1),
    }
}

/// `addReplyDoubleDistance`: `%.4f`.
pub fn distance_text(d: f64) -> String {
    format!("{d:.4}")
}

/// `addReplyHumanLongDouble`'s text (`ld2string(LD_STR_HUMAN)`): `%.17Lf` of the double,
/// trailing zeros and a bare point removed, `-0` printed as `0`.
pub fn coordinate_text(v: f64) -> String {
    let mut s = format!("{v:.17}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_and_points_are_redis_documented_ones() {
        // Redis's documentation: Palermo and Catania.
        let palermo = score(13.361389, 38.115556).unwrap();
        assert_eq!(palermo, 3479099956230698.0);
        assert_eq!(score(15.087269, 37.502669), Some(3479447370796909.0));
        let (lon, lat) = decode_score(palermo);
        assert_eq!(coordinate_text(lon), "13.36138933897018433");
        assert_eq!(coordinate_text(lat), "38.11555639549629859");
        assert_eq!(hash_text(palermo), "sqc8b49rny0");
        assert_eq!(hash_text(3479447370796909.0), "sqdtr74hyu0");
        let (lon2, lat2) = decode_score(3479447370796909.0);
        assert_eq!(distance_text(distance(lon, lat, lon2, lat2)), "166274.1516");
        assert_eq!(
            distance_text(distance(lon, lat, lon2, lat2) / unit(b"KM").unwrap().0),
            "166.2742"
        );
    }

    #[test]
    fn range_and_unit_errors_are_redis_texts() {
        assert_eq!(
            check_range(200.0, 0.0).unwrap_err().to_string(),
            "invalid longitude,latitude pair 200.000000,0.000000"
        );
        assert!(check_range(180.0, LAT_MAX).is_ok());
        assert!(check_range(-180.0, -85.06).is_err());
        assert_eq!(unit(b"yd"), Err(UnknownUnit));
        assert_eq!(unit(b"Mi"), Ok(Unit(1609.34)));
    }

    #[test]
    fn edges_clamp_and_odd_scores_decode_as_x86_casts() {
        // The east edge encodes one cell past the grid; decoding clamps it back.
        let s = score(180.0, LAT_MAX).unwrap();
        assert_eq!(decode_score(s), (180.0, LAT_MAX));
        assert_eq!(c_i64(f64::INFINITY), i64::MIN);
        assert_eq!(c_u64(-1.0), u64::MAX);
        assert_eq!(c_u64(f64::INFINITY), 0);
        assert_eq!(c_u64(2.5), 2);
        let (lon, lat) = decode_score(-1.0);
        assert_eq!((lon, lat), (180.0, LAT_MAX));
    }

    #[test]
    fn interleaving_round_trips() {
        for (a, b) in [
            (0u32, 0u32),
            (1, 2),
            (0x3ff_ffff, 0x155_5555),
            (u32::MAX, 7),
        ] {
            assert_eq!(deinterleave(interleave(a, b)), (a, b));
        }
    }

    #[test]
    fn neighbours_move_one_cell_and_wrap() {
        let h = Bits {
            bits: interleave(5, 9),
            step: 4,
        };
        assert_eq!(deinterleave(moved(h, 1, 0).bits), (5, 10));
        assert_eq!(deinterleave(moved(h, -1, 1).bits), (6, 8));
        let corner = Bits {
            bits: interleave(15, 0),
            step: 4,
        };
        assert_eq!(deinterleave(moved(corner, -1, 1).bits), (0, 15));
    }

    #[test]
    fn searches_scan_the_centre_first_and_cover_the_shape() {
        let search = Search {
            center: (15.0, 37.0),
            shape: Shape::Radius(200.0),
            unit: Unit(1000.0),
        };
        let ranges = search.score_ranges();
        assert!(!ranges.is_empty() && ranges.len() <= 9);
        let catania = 3479447370796909.0;
        assert!(ranges.iter().any(|&(lo, hi)| lo <= catania && catania < hi));
        let (lon, lat) = decode_score(catania);
        assert!(search.distance_if_within(lon, lat).is_some());
        let small = Search {
            shape: Shape::Box(1.0, 1.0),
            ..search
        };
        assert_eq!(small.distance_if_within(lon, lat), None);
        assert_eq!(estimate_steps(0.0, 0.0), 26);
        assert_eq!(estimate_steps(1e9, 89.0), 1);
    }

    #[test]
    fn coordinates_print_as_ld2string_human() {
        assert_eq!(coordinate_text(1.5), "1.5");
        assert_eq!(coordinate_text(-0.0), "0");
        assert_eq!(coordinate_text(180.0), "180");
        assert_eq!(distance_text(0.0), "0.0000");
    }
}
