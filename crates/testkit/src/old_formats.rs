//! Metadata entries of the text formats before entry format 3, for the tests of `quorumd
//! convert` and the memory bench's "beside today's" figure. quorumd itself no longer writes
//! them; its conversion reads them in Lua (`crates/node/lua/store/convert.lua`).

use quorumd_core::meta::Meta;

/// `m` in entry format 2's text, `{version hex}|{kind}|{expiry or 0}|{content}|{entry hash}`,
/// or in format 1's, which has no content field.
pub fn text_entry(m: &Meta, format: u8) -> String {
    let head = format!(
        "{}|{}|{}",
        m.version.encode(),
        m.kind.code(),
        m.expires_at_ms.unwrap_or(0)
    );
    match format {
        1 => format!("{head}|{}", m.entry_hash),
        _ => format!("{head}|{}|{}", m.content, m.entry_hash),
    }
}
