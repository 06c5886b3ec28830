//! Domain names: compared, ordered and hashed without regard to ASCII case
//! (DNS names are case-insensitive, RFC 4343), kept as the operator wrote
//! them. One type, so no comparison can forget the rule. Shared, not
//! copied: a clone is a reference count, so session snapshots and tables
//! keyed by name stay cheap.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A domain's name as written in the file (or by the cloud API).
#[derive(Debug, Clone, Default)]
pub struct DomainName(Arc<str>);

impl DomainName {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0.to_string()
    }

    fn folded(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.bytes().map(|b| b.to_ascii_lowercase())
    }
}

impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        // Sessions of a domain share its name: usually one pointer compare.
        Arc::ptr_eq(&self.0, &other.0) || self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for DomainName {}

impl PartialEq<str> for DomainName {
    fn eq(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl PartialEq<&str> for DomainName {
    fn eq(&self, other: &&str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl PartialEq<String> for DomainName {
    fn eq(&self, other: &String) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl Hash for DomainName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Folded a block at a time: one hasher call per block, not per byte.
        let mut block = [0u8; 64];
        for chunk in self.0.as_bytes().chunks(block.len()) {
            let folded = &mut block[..chunk.len()];
            folded.copy_from_slice(chunk);
            folded.make_ascii_lowercase();
            state.write(folded);
        }
        state.write_u8(0xff);
    }
}

impl Ord for DomainName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.folded().cmp(other.folded())
    }
}

impl PartialOrd for DomainName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Deref for DomainName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// On the wire (control socket, hand-over, cloud API) a plain string.
impl Serialize for DomainName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

impl From<String> for DomainName {
    fn from(name: String) -> Self {
        Self(name.into())
    }
}

impl From<&str> for DomainName {
    fn from(name: &str) -> Self {
        Self(name.into())
    }
}

impl From<DomainName> for String {
    fn from(name: DomainName) -> Self {
        name.0.to_string()
    }
}

impl From<Arc<str>> for DomainName {
    fn from(name: Arc<str>) -> Self {
        Self(name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    #[test]
    fn names_differing_in_case_are_one_name_kept_as_written() {
        let a = DomainName::new("App.Example.com");
        let b = DomainName::new("app.example.COM");
        assert_eq!(a, b);
        assert!(a == "APP.EXAMPLE.COM");
        assert_eq!(HashSet::from([a.clone(), b.clone()]).len(), 1);
        assert_eq!(BTreeSet::from([a.clone(), b]).len(), 1);
        assert_eq!(a.to_string(), "App.Example.com");
        assert!(DomainName::new("a.test") < DomainName::new("B.test"));
        assert_ne!(a, DomainName::new("app.example.co"));
    }

    #[test]
    fn a_clone_shares_the_name() {
        let a = DomainName::new("a.test");
        assert!(std::ptr::eq(a.as_str(), a.clone().as_str()));
    }
}
