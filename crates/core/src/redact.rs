//! Redaction of secrets: node passwords never reach a log line, an error or the API.

/// Replaces the password of a URL by `***`; leaves anything unparseable mostly hidden.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => match raw.rfind('@') {
            Some(at) => format!("***{}", &raw[at..]),
            None => raw.to_string(),
        },
    }
}

/// Masks the password of every URL found inside free text (error messages, JSON): in each
/// `scheme://user:password@host`, the password becomes `***`.
pub fn mask_urls_in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first character that cannot be part of it.
        let end = tail
            .find(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(amp), Some(colon)) if colon < amp => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[amp..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_free_text_are_masked() {
        let t = "node redis://app:s3cret@h:6379/0 failed; also rediss://:pw@x:1 and redis://h:2";
        let m = mask_urls_in_text(t);
        assert_eq!(
            m,
            "node redis://app:***@h:6379/0 failed; also rediss://:***@x:1 and redis://h:2"
        );
        assert!(!m.contains("s3cret") && !m.contains("pw@"));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url("redis://user:s3cret@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(mask_url("rediss://:s3cret@h:1"), "rediss://:***@h:1");
        assert!(!mask_url("redis://u:s3cret@@bad url").contains("s3cret"));
    }
}
