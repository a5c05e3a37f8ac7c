//! Compact JSON written byte for byte as `serde_json` writes it, with strings scanned eight bytes
//! at a time. `serde_json` looks at each byte of each string through a table to find what needs
//! escaping; in the answer to a 2 KB review that loop was a fifth of the instructions
//! (docs/performance.md). Used where a request's answer is written (the patch, the status
//! annotation, the review); everything else keeps `serde_json`.
//!
//! Numbers are written by `serde_json` itself, and a `serde_json::value::RawValue` is spliced
//! as `serde_json` splices it (it serializes as a struct of a reserved name).

use std::fmt::Display;

use serde::ser::{self, Impossible, Serialize};

/// The error of a value JSON cannot hold (a map key that is not a string or a number).
pub type Error = serde_json::Error;

type Result<T = ()> = std::result::Result<T, Error>;

/// The name `serde_json::value::RawValue` serializes under (its `raw` module's `TOKEN`): its one
/// field holds JSON text, written as it is.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// Appends `value` as compact JSON to `out`: the bytes `serde_json::to_writer` writes.
pub fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result {
    value.serialize(Writer(out))
}

pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    to_writer(&mut out, value)?;
    Ok(out)
}

pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let out = to_vec(value)?;
    // Only whole strings and ASCII are written, so the bytes are UTF-8.
    Ok(String::from_utf8(out).expect("JSON written from &str is UTF-8"))
}

/// `text` as a JSON string, quotes included. Eight bytes at a time: a word with nothing to
/// escape is stored whole, the rest byte by byte, into room reserved for the longest result
/// (every byte as `\u00XX`): no write checks the capacity and no short run calls `memcpy`,
/// which cost more than the scan in the short strings a patch is made of.
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Saturating: a text that long cannot have room, and `reserve` panics rather than wrap.
    out.reserve(bytes.len().saturating_mul(6).saturating_add(2));
    let len = out.len();
    // SAFETY: at most six bytes per byte of `text` and two quotes are written, within the room
    // reserved above; `set_len` covers exactly the bytes written.
    unsafe {
        let start = out.as_mut_ptr().add(len);
        let mut dst = put(start, b'"');
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word: [u8; 8] = word.try_into().expect("eight bytes");
            if needs_escape(u64::from_le_bytes(word)) == 0 {
                dst.cast::<[u8; 8]>().write_unaligned(word);
                dst = dst.add(8);
            } else {
                for b in word {
                    dst = byte(dst, b);
                }
            }
        }
        for &b in words.remainder() {
            dst = byte(dst, b);
        }
        dst = put(dst, b'"');
        out.set_len(len + dst.offset_from(start) as usize);
    }
}

/// Writes `b` at `dst`, returns the next place.
///
/// # Safety
/// `dst` must have room for a byte.
unsafe fn put(dst: *mut u8, b: u8) -> *mut u8 {
    dst.write(b);
    dst.add(1)
}

/// Writes one byte of a string, escaped when it must be; returns the next place.
///
/// # Safety
/// `dst` must have room for six bytes.
unsafe fn byte(dst: *mut u8, b: u8) -> *mut u8 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[b as usize] {
        0 => put(dst, b),
        b'u' => {
            let hex = [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]];
            dst.cast::<[u8; 6]>()
                .write_unaligned([b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
            dst.add(6)
        }
        letter => {
            dst.cast::<[u8; 2]>().write_unaligned([b'\\', letter]);
            dst.add(2)
        }
    }
}

/// What a byte is written as inside a string: 0 for itself, `u` for `\u00XX`, else the letter
/// after the backslash. The same set `serde_json` escapes: `"`, `\` and the control characters.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Not 0 when a byte of `word` needs escaping. Bytes of 0x80 and above never do (`!word` drops
/// them); below 0x80, `byte - n` wraps into the high bit when `byte < n`. A borrow may mark a
/// byte above a marked one, never a word with none.
fn needs_escape(word: u64) -> u64 {
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * n as u64) & !w & HIGHS;
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    below(word, 0x20) | below(quote, 1) | below(backslash, 1)
}

/// A number as a map key: in quotes.
fn quoted_number<T: Serialize>(out: &mut Vec<u8>, n: T) -> Result {
    out.push(b'"');
    number(out, n)?;
    out.push(b'"');
    Ok(())
}

/// Numbers as `serde_json` writes them (itoa, ryu; `null` for a float that is not finite).
fn number<T: Serialize>(out: &mut Vec<u8>, n: T) -> Result {
    serde_json::to_writer(out, &n)
}

/// Serializer methods for numbers: `$write(buffer, number)`.
macro_rules! numbers {
    ($write:ident; $($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result {
            $write(self.0, v)
        })*
    };
}

/// The serializer: writes into the buffer it holds.
struct Writer<'o>(&'o mut Vec<u8>);

/// Opens an array or object.
fn open(out: &mut Vec<u8>, bracket: u8) -> Compound<'_> {
    out.push(bracket);
    Compound { out, first: true }
}

/// `{"variant":`, before the variant's value and a closing `}`.
fn open_variant(out: &mut Vec<u8>, variant: &str) {
    out.push(b'{');
    write_str(out, variant);
    out.push(b':');
}

/// An array or object being written; `first` until its first element.
struct Compound<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.comma();
        value.serialize(Writer(self.out))
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result {
        self.comma();
        write_str(self.out, key);
        self.out.push(b':');
        value.serialize(Writer(self.out))
    }

    fn close(self, bracket: u8) -> Result {
        self.out.push(bracket);
        Ok(())
    }
}

impl<'o> ser::Serializer for Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'o>;
    type SerializeTuple = Compound<'o>;
    type SerializeTupleStruct = Compound<'o>;
    type SerializeTupleVariant = Compound<'o>;
    type SerializeMap = Compound<'o>;
    type SerializeStruct = Struct<'o>;
    type SerializeStructVariant = Compound<'o>;

    fn serialize_bool(self, v: bool) -> Result {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    numbers! { number;
        serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_i128(i128), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_u128(u128), serialize_f32(f32), serialize_f64(f64),
    }

    fn serialize_char(self, v: char) -> Result {
        write_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result {
        write_str(self.0, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result {
        let mut seq = open(self.0, b'[');
        for b in v {
            seq.element(b)?;
        }
        seq.close(b']')
    }

    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        open_variant(self.0, variant);
        value.serialize(Writer(&mut *self.0))?;
        self.0.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Ok(open(self.0, b'['))
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        open_variant(self.0, variant);
        Ok(open(self.0, b'['))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(open(self.0, b'{'))
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        if name == RAW_VALUE {
            return Ok(Struct::Raw(self.0));
        }
        Ok(Struct::Object(open(self.0, b'{')))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        open_variant(self.0, variant);
        Ok(open(self.0, b'{'))
    }
}

/// Arrays: a sequence, a tuple, a tuple struct.
macro_rules! array {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
                self.element(value)
            }

            fn end(self) -> Result {
                self.close(b']')
            }
        })*
    };
}

array!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

/// `{"variant":[...]}`
impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.out.extend_from_slice(b"]}");
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.comma();
        key.serialize(Key(self.out))?;
        self.out.push(b':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(Writer(self.out))
    }

    fn end(self) -> Result {
        self.close(b'}')
    }
}

/// `{"variant":{...}}`
impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }

    fn end(self) -> Result {
        self.out.extend_from_slice(b"}}");
        Ok(())
    }
}

/// A struct: an object, or a `RawValue` whose text is written as it is.
enum Struct<'o> {
    Object(Compound<'o>),
    Raw(&'o mut Vec<u8>),
}

impl ser::SerializeStruct for Struct<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        match self {
            Struct::Object(object) => object.field(key, value),
            Struct::Raw(out) if key == RAW_VALUE => value.serialize(RawText(out)),
            Struct::Raw(_) => Err(ser::Error::custom("a RawValue has one field")),
        }
    }

    fn end(self) -> Result {
        match self {
            Struct::Object(object) => object.close(b'}'),
            Struct::Raw(_) => Ok(()),
        }
    }
}

/// A float as a map key: in quotes when finite, else refused (as serde_json does).
fn float_key<T: Serialize>(out: &mut Vec<u8>, finite: bool, n: T) -> Result {
    if !finite {
        return Err(ser::Error::custom(
            "float key must be finite (got NaN or +/-inf)",
        ));
    }
    quoted_number(out, n)
}

fn key_must_be_a_string() -> Error {
    ser::Error::custom("key must be a string")
}

/// A map key: a string, or a number or boolean written in quotes (as `serde_json` does).
struct Key<'o>(&'o mut Vec<u8>);

/// What a serializer that takes one kind of value answers for every other kind.
macro_rules! refuse {
    ($error:expr; $($method:ident($($arg:ty),*) -> $ok:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ok> {
            Err($error)
        })*
    };
}

impl ser::Serializer for Key<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result {
        write_str(self.0, v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_bool(self, v: bool) -> Result {
        let text: &[u8] = if v { b"\"true\"" } else { b"\"false\"" };
        self.0.extend_from_slice(text);
        Ok(())
    }

    numbers! { quoted_number;
        serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_i128(i128), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_u128(u128),
    }

    fn serialize_f32(self, v: f32) -> Result {
        float_key(self.0, v.is_finite(), v)
    }

    fn serialize_f64(self, v: f64) -> Result {
        float_key(self.0, v.is_finite(), v)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result {
        Err(key_must_be_a_string())
    }

    refuse! { key_must_be_a_string();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result {
        self.serialize_str(&value.to_string())
    }
}

/// The text field of a `RawValue`: JSON already, written as it is.
struct RawText<'o>(&'o mut Vec<u8>);

fn not_raw() -> Error {
    ser::Error::custom("a RawValue holds its JSON as a string")
}

impl ser::Serializer for RawText<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result {
        self.0.extend_from_slice(v.as_bytes());
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result {
        Err(not_raw())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result {
        Err(not_raw())
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result {
        Err(not_raw())
    }

    refuse! { not_raw();
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_i128(i128) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_u128(u128) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::value::RawValue;
    use serde_json::{json, Value};

    use super::*;

    fn same<T: Serialize + ?Sized>(value: &T) {
        let ours = to_vec(value).map_err(|e| e.to_string());
        let theirs = serde_json::to_vec(value).map_err(|e| e.to_string());
        assert_eq!(
            ours.as_deref().map(String::from_utf8_lossy),
            theirs.as_deref().map(String::from_utf8_lossy)
        );
    }

    /// Text that crosses the eight-byte words anywhere: quotes, backslashes, every control
    /// character, DEL, and characters of two to four bytes.
    fn text() -> impl Strategy<Value = String> {
        "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é€😀 ]{0,40}"
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec((text(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in text()) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn any_unicode_string_is_too(s in any::<String>()) {
            prop_assert_eq!(to_string(&s).unwrap(), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn any_value_is_written_as_serde_json_writes_it(v in value()) {
            prop_assert_eq!(to_vec(&v).unwrap(), serde_json::to_vec(&v).unwrap());
        }
    }

    /// Each byte value alone, and at each place of a word: the escape is found where it is.
    #[test]
    fn every_byte_at_every_place_of_a_word() {
        for b in 0..=0x7fu8 {
            for at in 0..17 {
                let mut s = "x".repeat(17);
                s.replace_range(at..at + 1, std::str::from_utf8(&[b]).unwrap());
                same(s.as_str());
            }
        }
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Pair(u8, &'static str);

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    struct Wrapped(i128);

    #[derive(Serialize)]
    enum Shape {
        Plain,
        Newtype(u128),
        Tuple(i8, f32),
        Struct { a: Option<u16>, b: Vec<Unit> },
    }

    struct Bytes(&'static [u8]);

    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[derive(Serialize)]
    struct Every {
        unit: (),
        unit_struct: Unit,
        pair: Pair,
        wrapped: Wrapped,
        shapes: [Shape; 4],
        bytes: Bytes,
        none: Option<char>,
        some: Option<char>,
        floats: [f64; 4],
        small: f32,
        raw: Box<RawValue>,
        raws: Vec<Box<RawValue>>,
        #[serde(flatten)]
        flat: BTreeMap<String, i16>,
    }

    /// Every shape of serde's data model that a derive or a map can produce.
    #[test]
    fn every_shape_of_the_data_model() {
        let every = Every {
            unit: (),
            unit_struct: Unit,
            pair: Pair(7, "a\"b"),
            wrapped: Wrapped(-170141183460469231731687303715884105728),
            shapes: [
                Shape::Plain,
                Shape::Newtype(u128::MAX),
                Shape::Tuple(-1, 0.1),
                Shape::Struct {
                    a: Some(3),
                    b: vec![Unit, Unit],
                },
            ],
            bytes: Bytes(b"\x00\xff"),
            none: None,
            some: Some('\u{1}'),
            floats: [f64::NAN, f64::INFINITY, -0.0, 1e300],
            small: 1.5e-7,
            raw: RawValue::from_string(r#"{"k": [1, 2]}"#.into()).unwrap(),
            raws: vec![RawValue::from_string("\"s\"".into()).unwrap()],
            flat: BTreeMap::from([("x\ty".into(), -4)]),
        };
        same(&every);
        same(&json!({}));
        same(&json!([]));
        same(&Vec::<Unit>::new());
    }

    /// Keys as serde_json writes them: numbers and booleans quoted; anything else refused.
    #[test]
    fn map_keys() {
        same(&BTreeMap::from([(1i32, 'a'), (-2, 'b')]));
        same(&BTreeMap::from([(u128::MAX, ())]));
        same(&BTreeMap::from([(true, 1), (false, 2)]));
        same(&BTreeMap::from([('"', 1)]));
        same(&BTreeMap::from([(Some("k"), 1)]));
        same(&BTreeMap::from([(Wrapped(5), 1)]));
        same(&BTreeMap::from([(2.5f64.to_bits(), 1)]));
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum K {
            A,
        }
        same(&BTreeMap::from([(K::A, 1)]));
        let refused = to_vec(&BTreeMap::from([(vec![1], 1)])).unwrap_err();
        assert_eq!(refused.to_string(), "key must be a string");
        assert!(serde_json::to_vec(&BTreeMap::from([(vec![1], 1)])).is_err());
        struct F(f64);
        impl Serialize for F {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut m = ser::Serializer::serialize_map(s, None)?;
                ser::SerializeMap::serialize_entry(&mut m, &self.0, &0)?;
                ser::SerializeMap::end(m)
            }
        }
        same(&F(0.25));
        assert!(to_vec(&F(f64::NAN)).is_err() && serde_json::to_vec(&F(f64::NAN)).is_err());
    }

    /// The pods of the benchmark reviews, typed as the webhook reads them.
    #[test]
    fn the_pods_of_the_reviews() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reviews");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(review["request"]["object"].clone()).unwrap();
            same(&pod);
            same(&review);
            seen += 1;
        }
        assert!(seen >= 4, "{seen} reviews in {dir}");
    }
}
