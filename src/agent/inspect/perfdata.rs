//! The HotSpot performance-data file (`hsperfdata_<user>/<pid>`), version 2.0, as `jps` and
//! `jstat` read it: a prologue, then a chain of entries, each a named counter or string.
//!
//! The layout is HotSpot's `PerfDataPrologue` and `PerfDataEntry` (`perfMemory.hpp`), read the
//! way `sun.jvmstat.perfdata.monitor.v2_0.PerfDataBuffer` reads it. Every offset and length is
//! checked against the buffer before use: bad input is a [`PerfDataError`], never a panic, and
//! nothing is allocated beyond the (capped) size of the file.

use std::collections::BTreeMap;

/// Files larger than this are refused: HotSpot's default is 32 KiB (`-XX:PerfDataMemorySize`,
/// rounded to pages), and nobody runs with megabytes of counters.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// The first four bytes, whatever the byte order (HotSpot stores `0xcafec0c0` in its own order
/// of a value it wrote to read back big-endian).
const MAGIC: [u8; 4] = [0xca, 0xfe, 0xc0, 0xc0];
/// `PerfDataPrologue`: magic (4), byte order, major, minor, accessible (1 each), used (4),
/// overflow (4), mod_time_stamp (8), entry_offset (4), num_entries (4).
const PROLOGUE_LEN: usize = 32;
/// `PerfDataEntry`'s fixed part: entry_length, name_offset, vector_length (4 each), data_type,
/// flags, data_units, data_variability (1 each), data_offset (4).
const ENTRY_HEADER_LEN: usize = 20;
/// `PERFDATA_BIG_ENDIAN` and `PERFDATA_LITTLE_ENDIAN`.
const BIG_ENDIAN: u8 = 0;
const LITTLE_ENDIAN: u8 = 1;
/// `U_String`: a byte vector holding text.
const UNITS_STRING: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Big,
    Little,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A scalar `jlong` (`J`): every counter HotSpot publishes.
    Long(i64),
    /// A byte vector with string units (`B`, `U_String`), up to its first NUL.
    String(String),
    /// Any other type or shape (none in HotSpot today): kept by its type code, not read.
    Other { data_type: u8 },
}

/// A parsed file: the prologue's facts and the entries by name (a repeated name: the last
/// wins, as in jstat's map).
#[derive(Debug, Clone, PartialEq)]
pub struct PerfData {
    pub byte_order: ByteOrder,
    pub major: u8,
    pub minor: u8,
    pub entries: BTreeMap<String, Value>,
}

impl PerfData {
    pub fn long(&self, name: &str) -> Option<i64> {
        match self.entries.get(name) {
            Some(Value::Long(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        match self.entries.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PerfDataError {
    #[error("{len} bytes, shorter than the {PROLOGUE_LEN}-byte prologue")]
    Truncated { len: usize },
    #[error("larger than {MAX_FILE_BYTES} bytes: not a HotSpot performance-data file")]
    TooLarge,
    #[error("magic {found:02x?}, expected ca fe c0 c0: not a HotSpot performance-data file")]
    BadMagic { found: [u8; 4] },
    #[error("byte order {0}, expected 0 (big-endian) or 1 (little-endian)")]
    BadByteOrder(u8),
    #[error("version {major}.{minor}, only 2.0 is known")]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("not accessible yet: the JVM has not finished creating it")]
    NotAccessible,
    #[error("the prologue's {field} is negative ({value})")]
    NegativeField { field: &'static str, value: i32 },
    #[error("entry {index} at offset {offset} is not 4-byte aligned")]
    Misaligned { index: usize, offset: usize },
    #[error(
        "entry {index} at offset {offset} (length {length}) runs past the end of the data \
         ({end} bytes)"
    )]
    EntryOutOfBounds {
        index: usize,
        offset: usize,
        length: u64,
        end: usize,
    },
    #[error("entry {index} at offset {offset}: {problem}")]
    BadEntry {
        index: usize,
        offset: usize,
        problem: &'static str,
    },
    #[error("entry {index} at offset {offset}: its {what} is not UTF-8")]
    NotUtf8 {
        index: usize,
        offset: usize,
        what: &'static str,
    },
}

/// Reads the bytes of a file. Only the prologue's byte order decides how integers are read.
pub fn parse(buf: &[u8]) -> Result<PerfData, PerfDataError> {
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(PerfDataError::TooLarge);
    }
    if buf.len() < PROLOGUE_LEN {
        return Err(PerfDataError::Truncated { len: buf.len() });
    }
    let found: [u8; 4] = buf[0..4].try_into().expect("4 bytes");
    if found != MAGIC {
        return Err(PerfDataError::BadMagic { found });
    }
    let order = match buf[4] {
        BIG_ENDIAN => ByteOrder::Big,
        LITTLE_ENDIAN => ByteOrder::Little,
        other => return Err(PerfDataError::BadByteOrder(other)),
    };
    let (major, minor) = (buf[5], buf[6]);
    if (major, minor) != (2, 0) {
        return Err(PerfDataError::UnsupportedVersion { major, minor });
    }
    if buf[7] == 0 {
        return Err(PerfDataError::NotAccessible);
    }
    let r = Reader { buf, order };
    let entry_offset = r.prologue_count(24, "entry_offset")?;
    let num_entries = r.prologue_count(28, "num_entries")?;

    let mut entries = BTreeMap::new();
    let mut offset = entry_offset;
    // No allocation from `num_entries`: each entry takes at least its header from the buffer,
    // so the walk ends within len / 20 steps whatever the prologue claims.
    for index in 0..num_entries {
        if offset % 4 != 0 {
            return Err(PerfDataError::Misaligned { index, offset });
        }
        if offset == buf.len() {
            break;
        }
        let out_of_bounds = |length: u64| PerfDataError::EntryOutOfBounds {
            index,
            offset,
            length,
            end: buf.len(),
        };
        let Some(header) = offset
            .checked_add(ENTRY_HEADER_LEN)
            .and_then(|end| buf.get(offset..end))
        else {
            return Err(out_of_bounds(ENTRY_HEADER_LEN as u64));
        };
        let h = Reader { buf: header, order };
        let entry_length = h.i32_at(0);
        if entry_length == 0 {
            // The rest of the region is unused.
            break;
        }
        let bad = |problem| PerfDataError::BadEntry {
            index,
            offset,
            problem,
        };
        let entry_length = usize::try_from(entry_length)
            .ok()
            .filter(|&l| l >= ENTRY_HEADER_LEN)
            .ok_or_else(|| bad("its length is negative or shorter than its header"))?;
        let Some(entry) = offset
            .checked_add(entry_length)
            .and_then(|end| buf.get(offset..end))
        else {
            return Err(out_of_bounds(entry_length as u64));
        };
        let name_offset = usize::try_from(h.i32_at(4))
            .ok()
            .filter(|&o| o >= ENTRY_HEADER_LEN && o < entry_length)
            .ok_or_else(|| bad("its name lies outside the entry"))?;
        let vector_length =
            usize::try_from(h.i32_at(8)).map_err(|_| bad("its vector length is negative"))?;
        let (data_type, units) = (header[12], header[14]);
        let data_offset = usize::try_from(h.i32_at(16))
            .ok()
            .filter(|&o| o >= name_offset && o <= entry_length)
            .ok_or_else(|| bad("its data lies outside the entry or before its name"))?;

        // The name runs to its NUL, which comes before the data (padding may follow it).
        let name_area = &entry[name_offset..data_offset];
        let name_len = name_area
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("its name has no NUL before the data"))?;
        let name =
            std::str::from_utf8(&name_area[..name_len]).map_err(|_| PerfDataError::NotUtf8 {
                index,
                offset,
                what: "name",
            })?;
        if name.is_empty() {
            return Err(bad("its name is empty"));
        }
        let data = &entry[data_offset..];
        let value = match (data_type, vector_length) {
            (b'J', 0) => {
                let bytes = data
                    .get(..8)
                    .ok_or_else(|| bad("its long value runs past the entry"))?;
                Value::Long(Reader { buf: bytes, order }.i64_at(0))
            }
            (b'B', n) if n > 0 && units == UNITS_STRING => {
                let bytes = data
                    .get(..n)
                    .ok_or_else(|| bad("its string runs past the entry"))?;
                let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
                let text = std::str::from_utf8(text).map_err(|_| PerfDataError::NotUtf8 {
                    index,
                    offset,
                    what: "string value",
                })?;
                Value::String(text.to_string())
            }
            (data_type, _) => Value::Other { data_type },
        };
        entries.insert(name.to_string(), value);
        offset += entry_length;
    }
    Ok(PerfData {
        byte_order: order,
        major,
        minor,
        entries,
    })
}

/// Integers in the file's byte order. Callers slice first, so every read is in bounds.
struct Reader<'a> {
    buf: &'a [u8],
    order: ByteOrder,
}

impl Reader<'_> {
    fn i32_at(&self, at: usize) -> i32 {
        let bytes: [u8; 4] = self.buf[at..at + 4].try_into().expect("4 bytes");
        match self.order {
            ByteOrder::Big => i32::from_be_bytes(bytes),
            ByteOrder::Little => i32::from_le_bytes(bytes),
        }
    }

    fn i64_at(&self, at: usize) -> i64 {
        let bytes: [u8; 8] = self.buf[at..at + 8].try_into().expect("8 bytes");
        match self.order {
            ByteOrder::Big => i64::from_be_bytes(bytes),
            ByteOrder::Little => i64::from_le_bytes(bytes),
        }
    }

    /// A non-negative `jint` of the prologue.
    fn prologue_count(&self, at: usize, field: &'static str) -> Result<usize, PerfDataError> {
        let value = self.i32_at(at);
        usize::try_from(value).map_err(|_| PerfDataError::NegativeField { field, value })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rstest::rstest;

    use super::*;

    /// Builds files the way HotSpot lays them out (`PerfData::create_entry`): header, name and
    /// NUL, padding to the element size, data, the whole entry padded to 8 bytes.
    pub(crate) struct Builder {
        order: ByteOrder,
        entries: Vec<u8>,
        count: i32,
    }

    impl Builder {
        pub(crate) fn new(order: ByteOrder) -> Builder {
            Builder {
                order,
                entries: Vec::new(),
                count: 0,
            }
        }

        fn int(&self, v: i32) -> [u8; 4] {
            match self.order {
                ByteOrder::Big => v.to_be_bytes(),
                ByteOrder::Little => v.to_le_bytes(),
            }
        }

        fn entry(&mut self, name: &[u8], data_type: u8, units: u8, vector: i32, data: &[u8]) {
            let size = if data_type == b'J' { 8 } else { 1 };
            let mut name_part = name.to_vec();
            name_part.push(0);
            let unpadded = ENTRY_HEADER_LEN + name_part.len();
            let data_offset = unpadded.div_ceil(size) * size;
            let length = (data_offset + data.len()).div_ceil(8) * 8;
            let mut e = Vec::with_capacity(length);
            e.extend(self.int(length as i32));
            e.extend(self.int(ENTRY_HEADER_LEN as i32));
            e.extend(self.int(vector));
            e.extend([data_type, 1, units, 1]);
            e.extend(self.int(data_offset as i32));
            e.extend(&name_part);
            e.resize(data_offset, 0);
            e.extend(data);
            e.resize(length, 0);
            self.entries.extend(e);
            self.count += 1;
        }

        pub(crate) fn long(mut self, name: &str, v: i64) -> Builder {
            let data = match self.order {
                ByteOrder::Big => v.to_be_bytes(),
                ByteOrder::Little => v.to_le_bytes(),
            };
            self.entry(name.as_bytes(), b'J', 2, 0, &data);
            self
        }

        pub(crate) fn string(self, name: &str, v: &str) -> Builder {
            self.raw_string(name.as_bytes(), v.as_bytes())
        }

        fn raw_string(mut self, name: &[u8], v: &[u8]) -> Builder {
            // HotSpot sizes string vectors beyond the text and fills the rest with NULs.
            let mut data = v.to_vec();
            data.resize(v.len() + 4, 0);
            self.entry(name, b'B', UNITS_STRING, data.len() as i32, &data);
            self
        }

        pub(crate) fn build(self) -> Vec<u8> {
            let mut out = MAGIC.to_vec();
            out.push(match self.order {
                ByteOrder::Big => BIG_ENDIAN,
                ByteOrder::Little => LITTLE_ENDIAN,
            });
            out.extend([2, 0, 1]);
            let used = (PROLOGUE_LEN + self.entries.len()) as i32;
            out.extend(self.int(used));
            out.extend(self.int(0));
            out.extend([0; 8]);
            out.extend(self.int(PROLOGUE_LEN as i32));
            out.extend(self.int(self.count));
            out.extend(&self.entries);
            // The unused rest of the region, as in a real file.
            out.resize(out.len() + 64, 0);
            out
        }
    }

    fn sample(order: ByteOrder) -> Vec<u8> {
        Builder::new(order)
            .string("java.property.java.vm.name", "OpenJDK 64-Bit Server VM")
            .long("sun.gc.generation.0.maxCapacity", 89_456_640)
            .long("negative", -5)
            .string("sun.rt.javaCommand", "")
            .build()
    }

    #[rstest]
    #[case::big(ByteOrder::Big)]
    #[case::little(ByteOrder::Little)]
    fn reads_both_byte_orders(#[case] order: ByteOrder) {
        let data = parse(&sample(order)).unwrap();
        assert_eq!(data.byte_order, order);
        assert_eq!((data.major, data.minor), (2, 0));
        assert_eq!(
            data.string("java.property.java.vm.name"),
            Some("OpenJDK 64-Bit Server VM")
        );
        assert_eq!(
            data.long("sun.gc.generation.0.maxCapacity"),
            Some(89_456_640)
        );
        assert_eq!(data.long("negative"), Some(-5));
        assert_eq!(data.string("sun.rt.javaCommand"), Some(""));
        assert_eq!(data.entries.len(), 4);
    }

    #[test]
    fn the_walk_stops_at_an_empty_entry_and_at_num_entries() {
        let mut buf = sample(ByteOrder::Little);
        // Claim many more entries than there are: the zero length after the last one ends it.
        buf[28..32].copy_from_slice(&1000i32.to_le_bytes());
        assert_eq!(parse(&buf).unwrap().entries.len(), 4);
        // Claim fewer: only those are read.
        buf[28..32].copy_from_slice(&1i32.to_le_bytes());
        assert_eq!(parse(&buf).unwrap().entries.len(), 1);
    }

    #[test]
    fn a_claimed_entry_at_the_very_end_is_the_end() {
        let mut buf = Builder::new(ByteOrder::Big).long("a", 1).build();
        buf.truncate(buf.len() - 64);
        buf[28..32].copy_from_slice(&5i32.to_be_bytes());
        assert_eq!(parse(&buf).unwrap().entries.len(), 1);
    }

    /// Offsets in a little-endian sample: its first entry starts at 32.
    const FIRST: usize = PROLOGUE_LEN;

    fn with(edit: impl FnOnce(&mut Vec<u8>)) -> Result<PerfData, PerfDataError> {
        let mut buf = sample(ByteOrder::Little);
        edit(&mut buf);
        parse(&buf)
    }

    fn put(buf: &mut [u8], at: usize, v: i32) {
        buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[rstest]
    #[case::empty(|b: &mut Vec<u8>| b.clear(), "Truncated")]
    #[case::short_prologue(|b: &mut Vec<u8>| b.truncate(31), "Truncated")]
    #[case::magic(|b: &mut Vec<u8>| b[0] = 0x7f, "BadMagic")]
    #[case::byte_order(|b: &mut Vec<u8>| b[4] = 2, "BadByteOrder")]
    #[case::major(|b: &mut Vec<u8>| b[5] = 1, "UnsupportedVersion")]
    #[case::minor(|b: &mut Vec<u8>| b[6] = 1, "UnsupportedVersion")]
    #[case::not_accessible(|b: &mut Vec<u8>| b[7] = 0, "NotAccessible")]
    #[case::negative_entry_offset(|b: &mut Vec<u8>| put(b, 24, -8), "NegativeField")]
    #[case::negative_count(|b: &mut Vec<u8>| put(b, 28, -1), "NegativeField")]
    #[case::misaligned(|b: &mut Vec<u8>| put(b, 24, 34), "Misaligned")]
    #[case::entries_outside(|b: &mut Vec<u8>| put(b, 24, 1 << 20), "EntryOutOfBounds")]
    #[case::header_cut(|b: &mut Vec<u8>| b.truncate(FIRST + 10), "EntryOutOfBounds")]
    #[case::entry_cut(|b: &mut Vec<u8>| b.truncate(FIRST + 40), "EntryOutOfBounds")]
    #[case::huge_length(|b: &mut Vec<u8>| put(b, FIRST, i32::MAX), "EntryOutOfBounds")]
    #[case::negative_length(|b: &mut Vec<u8>| put(b, FIRST, -20), "BadEntry")]
    #[case::length_below_header(|b: &mut Vec<u8>| put(b, FIRST, 12), "BadEntry")]
    #[case::name_in_header(|b: &mut Vec<u8>| put(b, FIRST + 4, 4), "BadEntry")]
    #[case::name_past_entry(|b: &mut Vec<u8>| put(b, FIRST + 4, 1 << 16), "BadEntry")]
    #[case::negative_vector(|b: &mut Vec<u8>| put(b, FIRST + 8, -1), "BadEntry")]
    #[case::data_past_entry(|b: &mut Vec<u8>| put(b, FIRST + 16, 1 << 16), "BadEntry")]
    #[case::data_before_name(|b: &mut Vec<u8>| put(b, FIRST + 16, 8), "BadEntry")]
    #[case::vector_past_entry(|b: &mut Vec<u8>| put(b, FIRST + 8, 1000), "BadEntry")]
    #[case::unterminated_name(|b: &mut Vec<u8>| {
        let data = FIRST + 20 + "java.property.java.vm.name".len();
        b[data] = b'x';
    }, "BadEntry")]
    #[case::empty_name(|b: &mut Vec<u8>| b[FIRST + 20] = 0, "BadEntry")]
    #[case::name_not_utf8(|b: &mut Vec<u8>| b[FIRST + 20] = 0xff, "NotUtf8")]
    #[case::value_not_utf8(|b: &mut Vec<u8>| {
        let value = FIRST + 20 + "java.property.java.vm.name".len() + 1;
        b[value] = 0xc3;
        b[value + 1] = 0x28;
    }, "NotUtf8")]
    fn bad_input_is_a_typed_error(#[case] edit: impl FnOnce(&mut Vec<u8>), #[case] kind: &str) {
        let err = with(edit).unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{err:?}");
        // Every error reads as a sentence about the file.
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn a_long_past_its_entry_is_refused() {
        // A scalar long whose 8 bytes would run past its entry's end.
        let mut buf = Builder::new(ByteOrder::Little).long("x", 1).build();
        let data_offset = i32::from_le_bytes(buf[FIRST + 16..FIRST + 20].try_into().unwrap());
        put(&mut buf, FIRST + 16, data_offset + 4);
        assert!(matches!(parse(&buf), Err(PerfDataError::BadEntry { .. })));
    }

    #[test]
    fn too_large_is_refused_before_parsing() {
        let buf = vec![0u8; MAX_FILE_BYTES as usize + 1];
        assert_eq!(parse(&buf), Err(PerfDataError::TooLarge));
    }

    #[test]
    fn other_types_are_kept_unread() {
        let mut b = Builder::new(ByteOrder::Big);
        b.entry(b"an.int.vector", b'I', 1, 2, &[0; 8]);
        let data = parse(&b.string("s", "v").build()).unwrap();
        assert_eq!(
            data.entries["an.int.vector"],
            Value::Other { data_type: b'I' }
        );
        assert_eq!(data.string("s"), Some("v"));
    }
}
