//! The two stages before the rules: TOML syntax, then the file's shape.
//!
//! Which advice a user gets is decided by where the problem was found, not
//! by reading a library's English: a failure of [`DeTable::parse`] is a
//! syntax error; keys serde did not consume come back through
//! `serde_ignored` as [`UnknownKey`]s; and since the raw structs of
//! `parse.rs` have no required field, no enum and no `deny_unknown_fields`,
//! the only error serde can still raise in the second stage is a value of
//! the wrong type ([`SchemaError::WrongType`]). Missing keys and values
//! outside an enum's list are our own checks (`parse.rs`).

use std::ops::Range;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::Problem;

/// Why a file could not be read into the raw structs.
#[derive(Debug)]
pub(super) enum SchemaError {
    /// Not TOML at all (first stage).
    Syntax(toml::de::Error),
    /// TOML, but a value's type is not the key's (second stage).
    WrongType(toml::de::Error),
}

impl SchemaError {
    pub(super) fn into_problem(self, text: &str) -> Problem {
        let (error, fix) = match self {
            Self::Syntax(e) => (e, SYNTAX_FIX),
            Self::WrongType(e) => (
                e,
                "check the value's type: strings need quotes, numbers must not have them",
            ),
        };
        let offset = error.span().map_or(0, |s| s.start);
        Problem::at(
            text,
            offset,
            error.message().trim().to_string(),
            fix.to_string(),
        )
    }
}

/// The advice for text that is not TOML (also used by `store.rs`).
pub(super) const SYNTAX_FIX: &str = "fix the TOML syntax at this position";

/// A key no field of the raw structs took.
#[derive(Debug)]
pub(super) struct UnknownKey {
    /// The tables above the key, array indices left out: `["domain", "websocket"]`.
    pub table: Vec<String>,
    pub key: String,
    /// Where the key is written.
    pub span: Range<usize>,
}

/// Reads `text` into `T`, and lists the keys `T` has no field for.
pub(super) fn read<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<UnknownKey>), SchemaError> {
    let doc = DeTable::parse(text).map_err(SchemaError::Syntax)?;
    let mut ignored: Vec<Vec<Segment>> = Vec::new();
    let raw: T = serde_ignored::deserialize(toml::de::Deserializer::from(doc.clone()), |path| {
        ignored.push(segments(&path))
    })
    .map_err(SchemaError::WrongType)?;
    let unknown = ignored
        .iter()
        .filter_map(|path| unknown_key(doc.get_ref(), path))
        .collect();
    Ok((raw, unknown))
}

enum Segment {
    Key(String),
    Index(usize),
}

/// `serde_ignored`'s path, root first. A `Spanned<T>` reads its value
/// through a map with one private key; that step is not in the file.
fn segments(path: &serde_ignored::Path) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                parent
            }
            Path::Map { parent, key } => {
                if !key.starts_with("$__serde_spanned_private_") {
                    out.push(Segment::Key(key.clone()));
                }
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    out.reverse();
    out
}

/// Finds the ignored key in the document, for its position.
fn unknown_key(root: &DeTable, path: &[Segment]) -> Option<UnknownKey> {
    let (last, parents) = path.split_last()?;
    let Segment::Key(key) = last else { return None };
    let mut table = root;
    let mut names = Vec::new();
    let mut value: Option<&DeValue> = None;
    for segment in parents {
        let next = match (segment, value) {
            (Segment::Key(k), _) => {
                names.push(k.clone());
                table.get(k.as_str())
            }
            (Segment::Index(i), Some(DeValue::Array(array))) => array.get(*i),
            (Segment::Index(_), _) => None,
        }?;
        value = Some(next.get_ref());
        if let DeValue::Table(t) = next.get_ref() {
            table = t;
        }
    }
    let (spanned_key, _) = table.get_key_value(key.as_str())?;
    Some(UnknownKey {
        table: names,
        key: key.clone(),
        span: Spanned::span(spanned_key),
    })
}

/// The keys a derived `Deserialize` struct accepts, as serde lists them
/// (after renames): asks `T` to deserialize from a probe that only records
/// the field list `deserialize_struct` is given.
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.unwrap_or_default()
}

struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe: not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` `` — serde's way of
/// listing what was expected.
pub(super) fn expected(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    }
}
