//! Rebuilding a [`Task`] from the fields a snapshot holds.
//!
//! `Task`'s fields are private to swarm-core and it has no constructor that
//! takes them all (`created_at` is set by its builder), so the decoder hands
//! the fields to `Task`'s own `Deserialize`, by name, through serde's
//! [`MapDeserializer`]: no text, no MessagePack, only the values. Fields the
//! snapshot leaves out (absent options, `pinned: false`, the default cost) take
//! the defaults `Task` declares, as they do when an event is read. A field that
//! swarm-core renames or adds without a default makes decoding fail with a
//! typed error (and the round-trip test fail), never a wrong task.

use serde::de::value::{Error, MapDeserializer};
use serde::de::{self, Deserialize, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;
use swarm_core::{Priority, Task};

/// One field's value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    U64(u64),
    Bool(bool),
    Str(&'a str),
    Bytes(&'a [u8]),
    Priority(Priority),
}

/// The fields of a task, as read from a snapshot.
#[derive(Debug, Default)]
pub(super) struct TaskFields<'a> {
    pub(super) fields: Vec<(&'static str, Value<'a>)>,
}

impl<'a> TaskFields<'a> {
    pub(super) fn clear(&mut self) {
        self.fields.clear();
    }

    pub(super) fn push(&mut self, name: &'static str, value: Value<'a>) {
        self.fields.push((name, value));
    }

    /// The task these fields describe.
    pub(super) fn build(&self) -> Result<Task, Error> {
        let map = MapDeserializer::new(self.fields.iter().copied());
        Task::deserialize(map)
    }
}

impl<'de> IntoDeserializer<'de, Error> for Value<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Value<'de> {
    type Error = Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::U64(v) => visitor.visit_u64(v),
            Value::Bool(v) => visitor.visit_bool(v),
            Value::Str(v) => visitor.visit_borrowed_str(v),
            Value::Bytes(v) => visitor.visit_borrowed_bytes(v),
            Value::Priority(p) => visitor.visit_str(p.as_str()),
        }
    }

    // Only present options are written: a value is `Some`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Value::Priority(p) => p
                .as_str()
                .into_deserializer()
                .deserialize_enum(name, variants, visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_missing_required_field_is_an_error_not_a_default() {
        let mut fields = TaskFields::default();
        fields.push("id", Value::U64(7));
        fields.push("kind", Value::Str("resize"));
        let err = fields.build().unwrap_err();
        assert!(err.to_string().contains("priority"), "{err}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        let mut fields = TaskFields::default();
        fields.push("id", Value::Str("seven"));
        assert!(fields.build().is_err());
    }
}
