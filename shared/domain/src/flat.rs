//! A struct as a flat Redis hash, through its own serde derive, so that its
//! field list is written once (the struct): every field a string, numbers in
//! decimal, `true`/`false` as `1`/`0`, `None` as the empty string, nested
//! structs as JSON. Reading back parses each string as the field's type asks;
//! a missing field takes the struct's default, an unknown one is ignored.

use serde::{
    de::{self, value::Error, IntoDeserializer, Visitor},
    forward_to_deserialize_any, ser, Deserialize, Serialize,
};
use serde_json::Value;

/// `value`'s fields as `(name, string)` pairs.
///
/// # Panics
/// If `T` is not a struct, or a field cannot be serialized (never for the
/// plain data structs this is for).
pub fn to_fields<T: Serialize>(value: &T) -> Vec<(&'static str, String)> {
    value
        .serialize(Fields(Vec::new()))
        .expect("flat::to_fields takes a struct of plain data")
}

/// A `T` from hash fields.
///
/// # Errors
/// A field whose string does not parse as its type, naming the field.
pub fn from_fields<T: for<'de> Deserialize<'de>>(
    fields: impl IntoIterator<Item = (String, String)>,
) -> Result<T, String> {
    let map = de::value::MapDeserializer::<_, Error>::new(
        fields
            .into_iter()
            .map(|(k, v)| (k.clone(), Field { name: k, text: v })),
    );
    T::deserialize(map).map_err(|e| e.to_string())
}

/// Serializes a struct into its fields (only a struct is accepted).
struct Fields(Vec<(&'static str, String)>);

impl ser::SerializeStruct for Fields {
    type Ok = Vec<(&'static str, String)>;
    type Error = Error;

    fn serialize_field<F: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &F,
    ) -> Result<(), Error> {
        // A primitive as its string; anything nested as JSON.
        let text = match value.serialize(Primitive) {
            Ok(text) => text,
            Err(_) => serde_json::to_string(value).map_err(ser::Error::custom)?,
        };
        self.0.push((key, text));
        Ok(())
    }

    fn end(self) -> Result<Self::Ok, Error> {
        Ok(self.0)
    }
}

/// Methods that refuse what a serializer does not take, saying `why`.
macro_rules! refuse {
    ($why:literal; $($method:ident($($arg:ty),*) -> $ret:ty),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<$ret, Error> {
            Err(ser::Error::custom($why))
        }
    )*};
    ($why:literal; generic $($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method<T: ?Sized + Serialize>(self, $(_: $arg,)* _: &T) -> Result<Self::Ok, Error> {
            Err(ser::Error::custom($why))
        }
    )*};
}

/// The compound forms neither serializer takes.
macro_rules! refuse_compound {
    ($why:literal) => {
        refuse!($why;
            serialize_bytes(&[u8]) -> Self::Ok,
            serialize_unit_struct(&'static str) -> Self::Ok,
            serialize_seq(Option<usize>) -> Self::SerializeSeq,
            serialize_tuple(usize) -> Self::SerializeTuple,
            serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
            serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant,
            serialize_map(Option<usize>) -> Self::SerializeMap,
            serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant,
        );
        refuse!($why; generic serialize_newtype_variant(&'static str, u32, &'static str));
    };
}

impl ser::Serializer for Fields {
    type Ok = Vec<(&'static str, String)>;
    type Error = Error;
    type SerializeSeq = ser::Impossible<Self::Ok, Error>;
    type SerializeTuple = ser::Impossible<Self::Ok, Error>;
    type SerializeTupleStruct = ser::Impossible<Self::Ok, Error>;
    type SerializeTupleVariant = ser::Impossible<Self::Ok, Error>;
    type SerializeMap = ser::Impossible<Self::Ok, Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<Self::Ok, Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }

    refuse!("not a struct";
        serialize_bool(bool) -> Self::Ok, serialize_i8(i8) -> Self::Ok,
        serialize_i16(i16) -> Self::Ok, serialize_i32(i32) -> Self::Ok,
        serialize_i64(i64) -> Self::Ok, serialize_u8(u8) -> Self::Ok,
        serialize_u16(u16) -> Self::Ok, serialize_u32(u32) -> Self::Ok,
        serialize_u64(u64) -> Self::Ok, serialize_f32(f32) -> Self::Ok,
        serialize_f64(f64) -> Self::Ok, serialize_char(char) -> Self::Ok,
        serialize_str(&str) -> Self::Ok, serialize_none() -> Self::Ok,
        serialize_unit() -> Self::Ok,
        serialize_unit_variant(&'static str, u32, &'static str) -> Self::Ok,
    );
    refuse!("not a struct"; generic serialize_some(), serialize_newtype_struct(&'static str));
    refuse_compound!("not a struct");
}

/// One field's value as its string: numbers in decimal, `true`/`false` as
/// `1`/`0`, `None` as the empty string, a unit variant as its name; anything
/// else is refused (and [`Fields`] writes it as JSON).
struct Primitive;

macro_rules! to_text {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<String, Error> {
            Ok(v.to_string())
        }
    )*};
}

impl ser::Serializer for Primitive {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    to_text!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str)
    );

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(if v { "1" } else { "0" }.to_string())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Ok(String::new())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<String, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Ok(String::new())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, Error> {
        v.serialize(self)
    }
    refuse!("nested"; serialize_struct(&'static str, usize) -> Self::SerializeStruct);
    refuse_compound!("nested");
}

/// One field's string, deserialized as the field's type asks.
struct Field {
    /// The field's name, for errors.
    name: String,
    /// Its string.
    text: String,
}

impl IntoDeserializer<'_, Error> for Field {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! parse_number {
    ($($method:ident $visit:ident $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            // An empty number reads as 0, as a missing one does.
            let n: $ty = if self.text.is_empty() {
                <$ty>::default()
            } else {
                self.text
                    .parse()
                    .map_err(|_| de::Error::custom(format!("{}: `{}` is not a number", self.name, self.text)))?
            };
            visitor.$visit(n)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Field {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.text)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(self.text == "1" || self.text == "true")
    }

    parse_number!(
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64,
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
        deserialize_f32 visit_f32 f32, deserialize_f64 visit_f64 f64
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.text.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let field = self.name;
        self.text
            .into_deserializer()
            .deserialize_enum(name, variants, visitor)
            .map_err(|e: Error| de::Error::custom(format!("{field}: {e}")))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        json(&self.name, &self.text)?
            .deserialize_struct(name, fields, visitor)
            .map_err(|e| de::Error::custom(format!("{}: {e}", self.name)))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        json(&self.name, &self.text)?
            .deserialize_map(visitor)
            .map_err(de::Error::custom)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        json(&self.name, &self.text)?
            .deserialize_seq(visitor)
            .map_err(de::Error::custom)
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct identifier ignored_any
    }
}

fn json(name: &str, text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| de::Error::custom(format!("{name}: {e}")))
}

/// `value`'s fields as [`to_fields`] gives them, handed to `emit` one at a
/// time with their text in one buffer reused from field to field (no string
/// per field): what enqueue packs a record with (issue 34).
///
/// # Panics
/// As [`to_fields`].
pub fn for_each_field<T: Serialize>(value: &T, emit: impl FnMut(&'static str, &str)) {
    value
        .serialize(Visit {
            text: String::with_capacity(256),
            emit,
        })
        .expect("flat::for_each_field takes a struct of plain data")
}

/// Serializes a struct into `emit` calls (only a struct is accepted).
struct Visit<F> {
    text: String,
    emit: F,
}

impl<F: FnMut(&'static str, &str)> ser::SerializeStruct for Visit<F> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<V: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), Error> {
        // A primitive as its string; anything nested as JSON (as `Fields`).
        self.text.clear();
        if value.serialize(PrimitiveInto(&mut self.text)).is_err() {
            // Into the same buffer (it keeps its room for the next field).
            let mut bytes = std::mem::take(&mut self.text).into_bytes();
            bytes.clear();
            serde_json::to_writer(&mut bytes, value).map_err(ser::Error::custom)?;
            self.text = String::from_utf8(bytes).map_err(ser::Error::custom)?;
        }
        (self.emit)(key, &self.text);
        Ok(())
    }

    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<F: FnMut(&'static str, &str)> ser::Serializer for Visit<F> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }

    refuse!("not a struct";
        serialize_bool(bool) -> (), serialize_i8(i8) -> (),
        serialize_i16(i16) -> (), serialize_i32(i32) -> (),
        serialize_i64(i64) -> (), serialize_u8(u8) -> (),
        serialize_u16(u16) -> (), serialize_u32(u32) -> (),
        serialize_u64(u64) -> (), serialize_f32(f32) -> (),
        serialize_f64(f64) -> (), serialize_char(char) -> (),
        serialize_str(&str) -> (), serialize_none() -> (),
        serialize_unit() -> (),
        serialize_unit_variant(&'static str, u32, &'static str) -> (),
    );
    refuse!("not a struct"; generic serialize_some(), serialize_newtype_struct(&'static str));
    refuse_compound!("not a struct");
}

/// [`Primitive`], written into a buffer: the same text, no string of its own.
struct PrimitiveInto<'a>(&'a mut String);

/// `v` in decimal at the end of `out` (what its `Display` writes, without
/// the formatting machinery).
pub fn push_decimal(out: &mut String, v: i128) {
    if v < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let n = v.unsigned_abs();
    // In 64 bits when it fits (every field but an i128's): 128-bit division
    // is a call per digit.
    match u64::try_from(n) {
        Ok(mut n) => loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        },
        Err(_) => {
            let mut n = n;
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

macro_rules! write_text {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Error> {
            use std::fmt::Write as _;
            write!(self.0, "{v}").map_err(ser::Error::custom)
        }
    )*};
}

macro_rules! write_decimal {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Error> {
            push_decimal(self.0, i128::from(v));
            Ok(())
        }
    )*};
}

impl ser::Serializer for PrimitiveInto<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    // Integers in decimal, as their `Display` writes them.
    write_decimal!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64)
    );
    write_text!(serialize_f32(f32), serialize_f64(f64), serialize_char(char));

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.0.push_str(v);
        Ok(())
    }
    fn collect_str<T: ?Sized + std::fmt::Display>(self, v: &T) -> Result<(), Error> {
        use std::fmt::Write as _;
        write!(self.0, "{v}").map_err(ser::Error::custom)
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.0.push(if v { '1' } else { '0' });
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.0.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    refuse!("nested"; serialize_struct(&'static str, usize) -> Self::SerializeStruct);
    refuse_compound!("nested");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Inner {
        a: String,
        b: Vec<u32>,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        name: String,
        n: u32,
        big: i64,
        flag: bool,
        code: Option<i64>,
        inner: Inner,
        state: crate::status::JobState,
    }

    #[test]
    fn every_kind_of_field_round_trips_as_strings() {
        let s = Sample {
            name: "12".into(),
            n: 7,
            big: -3,
            flag: true,
            code: Some(0),
            inner: Inner {
                a: "x".into(),
                b: vec![1, 2],
            },
            state: crate::status::JobState::TimedOut,
        };
        let fields = to_fields(&s);
        let get = |k: &str| fields.iter().find(|(f, _)| *f == k).unwrap().1.clone();
        assert_eq!(
            (get("name"), get("n"), get("flag")),
            ("12".into(), "7".into(), "1".into())
        );
        assert_eq!(
            (get("code"), get("state")),
            ("0".into(), "timed_out".into())
        );
        for v in [
            0i128,
            7,
            -3,
            10,
            i128::from(u64::MAX),
            i128::from(u64::MAX) + 1,
            -i128::from(u64::MAX) - 1,
            i128::from(i64::MIN),
            i128::MAX,
            i128::MIN,
        ] {
            let mut out = String::from("x");
            push_decimal(&mut out, v);
            assert_eq!(out, format!("x{v}"));
        }
        // One field at a time, in one buffer: the very same list.
        let mut visited = Vec::new();
        for_each_field(&s, |k, v| visited.push((k, v.to_string())));
        assert_eq!(visited, fields);
        let empty = Sample {
            code: None,
            ..Sample::default()
        };
        let mut visited = Vec::new();
        for_each_field(&empty, |k, v| visited.push((k, v.to_string())));
        assert_eq!(visited, to_fields(&empty));
        let owned = fields.into_iter().map(|(k, v)| (k.to_string(), v));
        assert_eq!(from_fields::<Sample>(owned).unwrap(), s);
    }

    #[test]
    fn missing_and_empty_fields_read_as_defaults_and_unknown_ones_are_ignored() {
        let s: Sample = from_fields([
            ("code".to_string(), String::new()),
            ("n".to_string(), String::new()),
            ("other".to_string(), "x".to_string()),
        ])
        .unwrap();
        assert_eq!(s, Sample::default());
    }

    #[test]
    fn a_bad_number_is_an_error_that_says_so() {
        let e = from_fields::<Sample>([("n".to_string(), "seven".to_string())]).unwrap_err();
        assert!(e.contains("n: `seven` is not a number"), "{e}");
    }
}
