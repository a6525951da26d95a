//! Login identifiers: E.164 phone numbers and email addresses, normalised before use.

/// A validated login identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// `+` followed by 7 to 15 digits, the first not zero.
    Phone(String),
    /// A lower-cased email address.
    Email(String),
}

impl Identifier {
    /// Parses and normalises; `None` when it is neither a phone number nor an email address.
    pub fn parse(raw: &str) -> Option<Identifier> {
        let raw = raw.trim();
        if let Some(digits) = raw.strip_prefix('+') {
            let ok = (7..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            return ok.then(|| Identifier::Phone(raw.to_owned()));
        }
        let (local, domain) = raw.split_once('@')?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && raw.len() <= tern_protocol::limits::MAX_IDENTIFIER_LEN
            && raw.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Identifier::Email(raw.to_ascii_lowercase()))
    }

    /// The normalised text, used as the storage key.
    pub fn as_str(&self) -> &str {
        match self {
            Identifier::Phone(s) | Identifier::Email(s) => s,
        }
    }

    /// The key for per-prefix rate limits: country code and first digits of a number, or the
    /// domain of an email address.
    pub fn prefix(&self) -> &str {
        match self {
            Identifier::Phone(s) => &s[..s.len().min(6)],
            Identifier::Email(s) => s.split_once('@').map_or(s.as_str(), |(_, d)| d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Identifier;

    #[test]
    fn phones_and_emails_parse_and_normalise() {
        assert_eq!(
            Identifier::parse("+4915112345678"),
            Some(Identifier::Phone("+4915112345678".into()))
        );
        assert_eq!(
            Identifier::parse(" Bob@Example.ORG "),
            Some(Identifier::Email("bob@example.org".into()))
        );
        for bad in [
            "",
            "12345678",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "a@b",
            "@x.org",
            "a b@x.org",
            "+1555abc1234",
        ] {
            assert_eq!(Identifier::parse(bad), None, "{bad:?} must be refused");
        }
    }
}
