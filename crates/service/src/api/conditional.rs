//! `If-Match` and `If-None-Match` on key-value writes and reads, as RFC 9110 §13.1.1–13.1.2
//! and §13.2.2 define them: `*` or a list of entity tags, several field lines joined into one list. A
//! syntax error is 400; a condition that does not hold is 412, whatever the tags say (a tag
//! quorumd never issued simply matches nothing). On a read, a failed `If-None-Match` is 304
//! Not Modified instead, so a client can revalidate a cached value without its bytes.
//!
//! The store's compare-and-set takes one condition: the key is live with one version, live, or
//! not live. A condition that needs more (a list, a negative tag, both headers) is pinned to
//! the state it holds for: the current version is read at the request's level, the condition
//! is evaluated on it here, and the write is sent conditional on exactly that state (the
//! store's read phase checks it again). If the state moved in between, the store's 412 says
//! what it is now and the condition is evaluated again, a few times at most. The extra read is
//! paid only by these forms; the single forms go to the store as they are.

use super::error::ApiError;
use axum::http::{HeaderMap, HeaderName, header};
use quorumd_core::hlc::Version;
use quorumd_replication::store::{Precondition, StoreError};
use std::future::Future;

/// Writes pinned to a state that moved before giving up with 412.
const MAX_ATTEMPTS: usize = 4;

/// One entity tag as sent: `W/"x"` is weak, `"x"` strong.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tag {
    weak: bool,
    opaque: String,
}

/// The value of one conditional header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tags {
    /// `*`.
    Any,
    /// One or more entity tags.
    List(Vec<Tag>),
}

impl Tags {
    /// Whether a tag matches the version: strong comparison (If-Match) takes strong tags only;
    /// weak comparison (If-None-Match) ignores the weakness. quorumd's own tags are strong.
    fn names(&self, v: Version, strong: bool) -> bool {
        let encoded = v.encode();
        match self {
            Tags::Any => true,
            Tags::List(tags) => tags
                .iter()
                .any(|t| (!strong || !t.weak) && t.opaque == encoded),
        }
    }
}

/// The answer a conditional read gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCondition {
    /// 200 with the value.
    Serve,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: `If-Match` names another version.
    PreconditionFailed,
}

/// The preconditions of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

impl Conditions {
    /// Reads both headers; 400 for malformed syntax only.
    pub fn from_headers(headers: &HeaderMap) -> Result<Conditions, ApiError> {
        Ok(Conditions {
            if_match: field(headers, &header::IF_MATCH)?,
            if_none_match: field(headers, &header::IF_NONE_MATCH)?,
        })
    }

    /// Whether the write may apply when the key's live version is `current` (`None`: not live).
    /// If-Match is evaluated first, then If-None-Match (§13.2.2); for a write, either failing
    /// is 412.
    pub fn hold_for(&self, current: Option<Version>) -> bool {
        let matched = match (&self.if_match, current) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(tags), Some(v)) => tags.names(v, true),
        };
        let none_matched = match (&self.if_none_match, current) {
            (None, _) | (Some(_), None) => true,
            (Some(tags), Some(v)) => !tags.names(v, false),
        };
        matched && none_matched
    }

    /// What a read of a live key at `current` answers under these conditions (§13.2.2: a read
    /// of an absent key is 404 whatever they say).
    pub fn for_read(&self, current: Version) -> ReadCondition {
        if self
            .if_match
            .as_ref()
            .is_some_and(|t| !t.names(current, true))
        {
            ReadCondition::PreconditionFailed
        } else if self
            .if_none_match
            .as_ref()
            .is_some_and(|t| t.names(current, false))
        {
            ReadCondition::NotModified
        } else {
            ReadCondition::Serve
        }
    }

    /// The store's condition when it says exactly the same thing, with no state to pin.
    fn direct(&self) -> Option<Precondition> {
        match (&self.if_match, &self.if_none_match) {
            (None, None) => Some(Precondition::None),
            (Some(Tags::Any), None) => Some(Precondition::IfExists),
            (None, Some(Tags::Any)) => Some(Precondition::IfAbsent),
            (Some(Tags::List(list)), None) => match &list[..] {
                [
                    Tag {
                        weak: false,
                        opaque,
                    },
                ] => opaque.parse().ok().map(Precondition::IfMatch),
                _ => None,
            },
            // Tags that name no version of ours exclude nothing.
            (None, Some(Tags::List(list)))
                if list.iter().all(|t| t.opaque.parse::<Version>().is_err()) =>
            {
                Some(Precondition::None)
            }
            _ => None,
        }
    }

    /// Runs `write` under these conditions. `read` gives the key's live version when the
    /// condition cannot be pinned from the headers alone; `write` applies the change under one
    /// store condition.
    pub async fn apply<T, R, RF, W, WF>(&self, read: R, mut write: W) -> Result<T, ApiError>
    where
        R: FnOnce() -> RF,
        RF: Future<Output = Result<Option<Version>, StoreError>>,
        W: FnMut(Precondition) -> WF,
        WF: Future<Output = Result<T, StoreError>>,
    {
        if let Some(cond) = self.direct() {
            return Ok(write(cond).await?);
        }
        let mut current = read().await?;
        for _ in 0..MAX_ATTEMPTS {
            if !self.hold_for(current) {
                break;
            }
            let pinned = match current {
                Some(v) => Precondition::IfMatch(v),
                None => Precondition::IfAbsent,
            };
            match write(pinned).await {
                Err(StoreError::PreconditionFailed { current: now }) => current = now,
                other => return Ok(other?),
            }
        }
        Err(StoreError::PreconditionFailed { current }.into())
    }
}

/// One conditional header, its field lines joined as one list; `None` when absent.
fn field(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Tags>, ApiError> {
    let lines: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
    if lines.is_empty() {
        return Ok(None);
    }
    parse(&lines.join(&b","[..]))
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

/// `"*" / #entity-tag` (RFC 9110 §13.1.1), with empty list elements ignored (§5.6.1). A bare
/// version without quotes is accepted too, as quorumd always has.
fn parse(value: &[u8]) -> Result<Tags, String> {
    let value = value.trim_ascii();
    if value == b"*" {
        return Ok(Tags::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_ascii_start();
        match rest.first() {
            None => break,
            Some(b',') => {
                rest = &rest[1..];
                continue;
            }
            Some(_) => {}
        }
        let (tag, after) = entity_tag(rest)?;
        tags.push(tag);
        rest = after.trim_ascii_start();
        match rest.first() {
            None => break,
            Some(b',') => rest = &rest[1..],
            Some(_) => return Err("entity tags must be separated by commas".into()),
        }
    }
    if tags.is_empty() {
        return Err("expected * or a list of entity tags such as \"<version>\"".into());
    }
    Ok(Tags::List(tags))
}

/// One `[W/]"..."` at the start of `s`, and what follows it.
fn entity_tag(s: &[u8]) -> Result<(Tag, &[u8]), String> {
    if s.first() == Some(&b'*') {
        return Err("* must stand alone, not in a list".into());
    }
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let Some(body) = s.strip_prefix(b"\"") else {
        // An unquoted version (the quotes were always optional for quorumd's own tags).
        let end = s
            .iter()
            .position(|b| *b == b',' || b.is_ascii_whitespace())
            .unwrap_or(s.len());
        let bare = std::str::from_utf8(&s[..end]).unwrap_or_default();
        return match (weak, bare.parse::<Version>()) {
            (false, Ok(_)) => Ok((
                Tag {
                    weak,
                    opaque: bare.to_owned(),
                },
                &s[end..],
            )),
            _ => Err(format!(
                "expected a quoted entity tag such as \"<version>\", got {:?}",
                String::from_utf8_lossy(&s[..end])
            )),
        };
    };
    let close = body
        .iter()
        .position(|b| *b == b'"')
        .ok_or("an entity tag lacks its closing quote")?;
    let opaque = &body[..close];
    // etagc = %x21 / %x23-7E / obs-text
    if let Some(bad) = opaque.iter().find(|b| **b <= 0x20 || **b == 0x7f) {
        return Err(format!(
            "byte 0x{bad:02x} is not allowed inside an entity tag"
        ));
    }
    Ok((
        Tag {
            weak,
            opaque: String::from_utf8_lossy(opaque).into_owned(),
        },
        &body[close + 1..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const V: Version = Version {
        ms: 5,
        counter: 1,
        writer: 2,
    };
    const OTHER: Version = Version {
        ms: 6,
        counter: 0,
        writer: 2,
    };

    #[test]
    fn a_read_is_not_modified_when_if_none_match_names_its_version() {
        let tag = format!("\"{}\"", V.encode());
        let read = |h: &[(&HeaderName, &str)]| conditions(h).unwrap().for_read(V);
        assert_eq!(read(&[]), ReadCondition::Serve);
        assert_eq!(
            read(&[(&header::IF_NONE_MATCH, &tag)]),
            ReadCondition::NotModified
        );
        assert_eq!(
            read(&[(&header::IF_NONE_MATCH, &format!("W/{tag}"))]),
            ReadCondition::NotModified,
            "weak comparison"
        );
        assert_eq!(
            read(&[(&header::IF_NONE_MATCH, "*")]),
            ReadCondition::NotModified
        );
        let other = format!("\"{}\"", OTHER.encode());
        assert_eq!(
            read(&[(&header::IF_NONE_MATCH, &other)]),
            ReadCondition::Serve
        );
        assert_eq!(read(&[(&header::IF_MATCH, &tag)]), ReadCondition::Serve);
        assert_eq!(
            read(&[(&header::IF_MATCH, &other)]),
            ReadCondition::PreconditionFailed
        );
        // If-Match is evaluated first.
        assert_eq!(
            read(&[(&header::IF_MATCH, &other), (&header::IF_NONE_MATCH, &tag)]),
            ReadCondition::PreconditionFailed
        );
    }

    fn conditions(headers: &[(&HeaderName, &str)]) -> Result<Conditions, ApiError> {
        let mut h = HeaderMap::new();
        for (name, value) in headers {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        Conditions::from_headers(&h)
    }

    fn if_match(value: &str) -> Conditions {
        conditions(&[(&header::IF_MATCH, value)]).unwrap()
    }

    fn if_none_match(value: &str) -> Conditions {
        conditions(&[(&header::IF_NONE_MATCH, value)]).unwrap()
    }

    #[test]
    fn the_single_forms_map_to_the_stores_conditions() {
        assert_eq!(conditions(&[]).unwrap().direct(), Some(Precondition::None));
        assert_eq!(if_match("*").direct(), Some(Precondition::IfExists));
        assert_eq!(if_none_match(" * ").direct(), Some(Precondition::IfAbsent));
        for tag in [format!("\"{V}\""), V.to_string()] {
            assert_eq!(if_match(&tag).direct(), Some(Precondition::IfMatch(V)));
        }
        // Only foreign tags: If-None-Match excludes nothing.
        assert_eq!(
            if_none_match("\"x\", W/\"y\"").direct(),
            Some(Precondition::None)
        );
    }

    #[test]
    fn a_foreign_tag_or_a_list_is_a_condition_not_a_syntax_error() {
        let foreign = if_match("\"definitely-not-the-version\"");
        assert_eq!(foreign.direct(), None);
        assert!(!foreign.hold_for(Some(V)) && !foreign.hold_for(None));
        let list = if_match(&format!("\"nope\", \"{OTHER}\", \"{V}\""));
        assert!(list.hold_for(Some(V)) && list.hold_for(Some(OTHER)));
        assert!(!list.hold_for(None));
        assert_eq!(list.direct(), None);
        // Several field lines are one list.
        let lines = conditions(&[
            (&header::IF_MATCH, "\"a\""),
            (&header::IF_MATCH, &format!("\"{V}\"")),
        ])
        .unwrap();
        assert!(lines.hold_for(Some(V)));
    }

    #[test]
    fn if_match_compares_strongly_and_if_none_match_weakly() {
        let weak = format!("W/\"{V}\"");
        assert!(!if_match(&weak).hold_for(Some(V)));
        assert!(!if_none_match(&weak).hold_for(Some(V)));
        assert!(if_none_match(&weak).hold_for(Some(OTHER)));
        assert!(if_none_match(&weak).hold_for(None));
        assert_eq!(if_none_match(&weak).direct(), None);
        assert!(!if_none_match(&format!("\"x\", \"{V}\"")).hold_for(Some(V)));
    }

    #[test]
    fn both_headers_must_hold() {
        let both = conditions(&[
            (&header::IF_MATCH, "*"),
            (&header::IF_NONE_MATCH, &format!("\"{V}\"")),
        ])
        .unwrap();
        assert!(!both.hold_for(Some(V)));
        assert!(both.hold_for(Some(OTHER)));
        assert!(!both.hold_for(None));
        assert_eq!(both.direct(), None, "needs the current version read");
    }

    #[test]
    fn malformed_syntax_is_a_400() {
        for bad in [
            "",
            ",",
            "nope",
            "\"unterminated",
            "*, \"x\"",
            "\"a\" \"b\"",
            "W/nope",
            "\"has space\"",
        ] {
            let r = conditions(&[(&header::IF_MATCH, bad)]);
            assert!(r.is_err(), "{bad:?} accepted");
        }
        // Empty list elements are ignored.
        assert!(if_match(&format!(" , \"{V}\" ,, ")).hold_for(Some(V)));
    }
}
