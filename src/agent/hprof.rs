//! The structure of an HPROF heap dump, as HotSpot writes it (the JDK's
//! `src/hotspot/share/services/heapDumper.cpp`, documented in `docs/dumps.md`): the header
//! `JAVA PROFILE 1.0.x\0`, the identifier size (u32) and a time (u64), then records, each a tag
//! (u8), a time offset (u32) and a body length (u32, big-endian) before its body.
//!
//! [`check`] walks the records without reading their bodies (a seek per record), so a dump of
//! gigabytes is checked in milliseconds. A dump is *complete* when its records end exactly at
//! the end of the file and the heap part is closed: `HEAP DUMP END` after segments (1.0.2), or
//! one `HEAP DUMP` record (1.0.1, JDK 8's small heaps). A dump HotSpot is still writing, or one
//! cut short by a kill, is incomplete.

use std::io::{self, Read, Seek, SeekFrom};

/// `HEAP DUMP`: the whole heap in one record (1.0.1).
pub const HEAP_DUMP: u8 = 0x0C;
/// `HEAP DUMP SEGMENT`: part of the heap (1.0.2).
pub const HEAP_DUMP_SEGMENT: u8 = 0x1C;
/// `HEAP DUMP END`: after the last segment.
pub const HEAP_DUMP_END: u8 = 0x2C;

/// Top-level record tags HotSpot writes: UTF8 strings, classes, frames, traces, the heap.
const KNOWN_TAGS: [u8; 17] = [
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
    0x09,
    0x0A,
    0x0B,
    0x0D,
    0x0E,
    0x0F,
    HEAP_DUMP,
    HEAP_DUMP_SEGMENT,
    HEAP_DUMP_END,
];

const MAGIC_PREFIX: &[u8] = b"JAVA PROFILE 1.0.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `1.0.1` or `1.0.2`.
    pub version: String,
    /// 4 or 8: the size of object identifiers.
    pub id_size: u32,
    /// Top-level records that fit in the file.
    pub records: u64,
    /// `HEAP DUMP` and `HEAP DUMP SEGMENT` records.
    pub heap_records: u64,
    pub complete: bool,
    /// Why not complete, when not.
    pub incomplete: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HprofError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not an HPROF heap dump: {0}")]
    NotHprof(String),
    #[error("record {index} at byte {offset} has the unknown tag {tag:#04x}")]
    UnknownTag { index: u64, offset: u64, tag: u8 },
}

/// Checks the dump `r` holds, `len` bytes long (the length the caller saw: a file still being
/// written is judged as it was then).
pub fn check<R: Read + Seek>(mut r: R, len: u64) -> Result<Summary, HprofError> {
    let mut magic = Vec::with_capacity(MAGIC_PREFIX.len() + 2);
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 || magic.len() > MAGIC_PREFIX.len() + 1 {
            return Err(HprofError::NotHprof(format!(
                "the header does not start with {:?}",
                String::from_utf8_lossy(MAGIC_PREFIX)
            )));
        }
        if byte[0] == 0 {
            break;
        }
        magic.push(byte[0]);
    }
    if !magic.starts_with(MAGIC_PREFIX) || magic.len() != MAGIC_PREFIX.len() + 1 {
        return Err(HprofError::NotHprof(format!(
            "the header is {:?}",
            String::from_utf8_lossy(&magic)
        )));
    }
    let version = String::from_utf8_lossy(&magic["JAVA PROFILE ".len()..]).into_owned();
    let mut fixed = [0u8; 12];
    r.read_exact(&mut fixed)
        .map_err(|_| HprofError::NotHprof("the header is cut short".into()))?;
    let id_size = u32::from_be_bytes(fixed[..4].try_into().expect("4 bytes"));
    if id_size != 4 && id_size != 8 {
        return Err(HprofError::NotHprof(format!(
            "identifier size {id_size} (4 or 8 expected)"
        )));
    }
    let mut offset = magic.len() as u64 + 1 + 12;
    let (mut records, mut heap_records, mut last_tag) = (0u64, 0u64, None);
    let mut head = [0u8; 9];
    let incomplete = loop {
        if offset == len {
            break None;
        }
        if len - offset < head.len() as u64 {
            break Some(format!("a record header is cut short at byte {offset}"));
        }
        r.read_exact(&mut head)?;
        let tag = head[0];
        if !KNOWN_TAGS.contains(&tag) {
            return Err(HprofError::UnknownTag {
                index: records,
                offset,
                tag,
            });
        }
        let body = u64::from(u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")));
        let end = offset + head.len() as u64 + body;
        if end > len {
            break Some(format!(
                "record {records} (tag {tag:#04x}) at byte {offset} runs {} bytes past the end",
                end - len
            ));
        }
        r.seek(SeekFrom::Current(body as i64))?;
        records += 1;
        if tag == HEAP_DUMP || tag == HEAP_DUMP_SEGMENT {
            heap_records += 1;
        }
        last_tag = Some(tag);
        offset = end;
    };
    let incomplete = incomplete.or_else(|| match (version.as_str(), last_tag) {
        (_, Some(HEAP_DUMP_END)) => None,
        ("1.0.1", _) if heap_records > 0 => None,
        _ => Some("the heap part is not closed (no HEAP DUMP END record)".into()),
    });
    Ok(Summary {
        version,
        id_size,
        records,
        heap_records,
        complete: incomplete.is_none(),
        incomplete,
    })
}

/// [`check`] on a regular file, judged at its length now. A link is not followed and the open
/// does not block (a FIFO put in its place cannot stall the caller).
pub fn check_file(path: &std::path::Path) -> Result<Summary, HprofError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(HprofError::NotHprof("not a regular file".into()));
    }
    let len = meta.len();
    check(io::BufReader::with_capacity(64 * 1024, file), len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn record(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![tag, 0, 0, 0, 0];
        r.extend_from_slice(&(body.len() as u32).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn dump(version: &str, records: &[Vec<u8>]) -> Vec<u8> {
        let mut d = format!("JAVA PROFILE {version}\0").into_bytes();
        d.extend_from_slice(&8u32.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        for r in records {
            d.extend_from_slice(r);
        }
        d
    }

    fn checked(d: &[u8]) -> Result<Summary, HprofError> {
        check(Cursor::new(d), d.len() as u64)
    }

    #[test]
    fn a_segmented_dump_is_complete_only_with_its_end_record() {
        let full = dump(
            "1.0.2",
            &[
                record(0x01, b"12345678name"),
                record(HEAP_DUMP_SEGMENT, &[7; 40]),
                record(HEAP_DUMP_END, &[]),
            ],
        );
        let s = checked(&full).unwrap();
        assert!(s.complete, "{s:?}");
        assert_eq!((s.records, s.heap_records, s.id_size), (3, 1, 8));
        assert_eq!(s.version, "1.0.2");

        // Without the end record: not closed.
        let open = &full[..full.len() - 9];
        let s = checked(open).unwrap();
        assert!(!s.complete);
        assert!(s.incomplete.unwrap().contains("not closed"));

        // Cut inside a segment, as a kill mid-write leaves it.
        let cut = &full[..full.len() - 20];
        let s = checked(cut).unwrap();
        assert!(!s.complete);
        assert!(s.incomplete.unwrap().contains("past the end"), "{cut:?}");
    }

    #[test]
    fn a_one_record_dump_of_jdk_8_is_complete() {
        let d = dump("1.0.1", &[record(0x01, b"x"), record(HEAP_DUMP, &[1; 10])]);
        assert!(checked(&d).unwrap().complete);
    }

    #[test]
    fn other_files_and_unknown_records_are_errors() {
        assert!(matches!(
            checked(b"PK\x03\x04 not a dump"),
            Err(HprofError::NotHprof(_))
        ));
        assert!(matches!(checked(b""), Err(HprofError::NotHprof(_))));
        let bad = dump("1.0.2", &[record(0x01, b"x"), record(0x77, b"")]);
        assert!(matches!(
            checked(&bad),
            Err(HprofError::UnknownTag {
                index: 1,
                tag: 0x77,
                ..
            })
        ));
        let mut four = dump("1.0.2", &[]);
        four[19..23].copy_from_slice(&5u32.to_be_bytes());
        assert!(matches!(checked(&four), Err(HprofError::NotHprof(m)) if m.contains("size 5")));
    }
}
