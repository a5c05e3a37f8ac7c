//! [`parse_cost`] on x86_64: the body 64 bytes at a time. SSE2 compares (every x86_64
//! processor has them) mark the quotes, backslashes, separators and brackets of a block; in a
//! block without a backslash, where the strings are follows from the quotes alone, the
//! separators outside them are counted at once, and only the brackets are visited one by one.
//! A block with a backslash, rare in a pod, is read byte by byte.

use super::PARSE_COST_PER_VALUE;
use super::{element_size, MAX_DEPTH, PARSE_COST_PER_FIELD_OBJECT, PARSE_COST_PER_OBJECT};

/// [`super::parse_cost`], a block at a time.
pub(super) fn parse_cost(body: &[u8]) -> usize {
    count(body).unwrap_or(body.len().saturating_mul(PARSE_COST_PER_OBJECT))
}

fn count(body: &[u8]) -> Result<usize, TooDeep> {
    let mut scan = Scan::default();
    let mut blocks = body.chunks_exact(BLOCK);
    for (k, block) in (&mut blocks).enumerate() {
        scan.block(body, k * BLOCK, block.try_into().expect("a whole block"))?;
    }
    // The last bytes, padded with spaces: nothing to count, in a string or out of one.
    let rest = blocks.remainder();
    let mut last = [b' '; BLOCK];
    last[..rest.len()].copy_from_slice(rest);
    scan.block(body, body.len() - rest.len(), &last)?;
    // Strings are copied once more out of the body.
    Ok(body.len() + scan.objects + scan.values * PARSE_COST_PER_VALUE)
}

/// Where the array or object whose opening bracket is at `i`, outside strings, ends: just
/// after its closing bracket, found a block at a time as [`parse_cost`] reads; `None` when the
/// body ends first. `lean`'s way over the values it does not look into.
pub(in crate::webhook) fn container_end(body: &[u8], i: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut at = i;
    while at < body.len() {
        let n = BLOCK.min(body.len() - at);
        let mut last = [b' '; BLOCK];
        let window: &[u8; BLOCK] = match body[at..].first_chunk() {
            Some(whole) => whole,
            None => {
                last[..n].copy_from_slice(&body[at..]);
                &last
            }
        };
        let c = Classes::of(window);
        if c.backslashes != 0 || escaped {
            for (k, &b) in window[..n].iter().enumerate() {
                if escaped {
                    escaped = false;
                } else if in_string {
                    escaped = b == b'\\';
                    in_string = b != b'"';
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                return Some(at + k + 1);
                            }
                        }
                        _ => {}
                    }
                }
            }
        } else {
            let inside = prefix_xor(c.quotes) ^ if in_string { !0 } else { 0 };
            in_string = inside >> (BLOCK - 1) == 1;
            let mut brackets = c.brackets & !inside;
            while brackets != 0 {
                let k = brackets.trailing_zeros() as usize;
                brackets &= brackets - 1;
                if matches!(window[k], b'[' | b'{') {
                    depth += 1;
                } else {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(at + k + 1);
                    }
                }
            }
        }
        at += n;
    }
    None
}

/// The bytes [`parse_cost`] reads at once: a bit of a `u64` each.
const BLOCK: usize = 64;

/// [`parse_cost`]'s count so far, and where the block before left it.
#[derive(Default)]
struct Scan {
    /// Per open container: for an array, what each object in it is charged; `None` for an
    /// object.
    open: Vec<Option<usize>>,
    objects: usize,
    values: usize,
    in_string: bool,
    /// The block before ended in a string on a backslash: this one starts escaped.
    escaped: bool,
}

/// Nesting past [`MAX_DEPTH`]: charged as the worst case.
struct TooDeep;

impl Scan {
    /// One block of the body, which starts at `at`. A block without a backslash is read a
    /// vector at a time: where its strings are from its quotes alone, then only its brackets
    /// one by one; one with a backslash (rare in a pod) byte by byte.
    fn block(&mut self, body: &[u8], at: usize, bytes: &[u8; BLOCK]) -> Result<(), TooDeep> {
        let c = Classes::of(bytes);
        if c.backslashes != 0 || self.escaped {
            return self.byte_by_byte(body, at, bytes);
        }
        // Bit i: byte i is in a string (an opening quote in, a closing one out).
        let carried = if self.in_string { !0 } else { 0 };
        let inside = prefix_xor(c.quotes) ^ carried;
        self.in_string = inside >> (BLOCK - 1) == 1;
        self.values += (c.separators & !inside).count_ones() as usize;
        let mut brackets = c.brackets & !inside;
        while brackets != 0 {
            let i = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            self.bracket(body, at + i, bytes[i])?;
        }
        Ok(())
    }

    fn byte_by_byte(&mut self, body: &[u8], at: usize, bytes: &[u8; BLOCK]) -> Result<(), TooDeep> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.escaped {
                self.escaped = false;
            } else if self.in_string {
                self.escaped = b == b'\\';
                self.in_string = b != b'"';
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b':' | b',' => self.values += 1,
                    b'[' | b']' | b'{' | b'}' => self.bracket(body, at + i, b)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// A bracket outside strings, at `i`.
    #[inline(always)]
    fn bracket(&mut self, body: &[u8], i: usize, b: u8) -> Result<(), TooDeep> {
        let opened = match b {
            b'[' => {
                self.values += 1;
                let each = key_before(body, i).and_then(element_size);
                Some(each.unwrap_or(PARSE_COST_PER_OBJECT))
            }
            b'{' => {
                self.objects += match self.open.last() {
                    Some(Some(each)) => *each,
                    _ => PARSE_COST_PER_FIELD_OBJECT,
                };
                None
            }
            _ => {
                self.open.pop();
                return Ok(());
            }
        };
        if self.open.len() >= MAX_DEPTH {
            return Err(TooDeep);
        }
        self.open.push(opened);
        Ok(())
    }
}

/// Which bytes of a block are what, a bit each (bit i for byte i).
struct Classes {
    quotes: u64,
    backslashes: u64,
    /// `:` and `,`.
    separators: u64,
    /// `[`, `]`, `{` and `}`.
    brackets: u64,
}

impl Classes {
    /// SSE2, which every x86_64 processor has: 16 bytes compared at once.
    fn of(bytes: &[u8; BLOCK]) -> Classes {
        use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128};
        use std::arch::x86_64::{_mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
        let mut c = Classes {
            quotes: 0,
            backslashes: 0,
            separators: 0,
            brackets: 0,
        };
        for (k, chunk) in bytes.chunks_exact(16).enumerate() {
            // SAFETY: SSE2 is part of every x86_64 target; `chunk` is 16 bytes to read, and
            // the load needs no alignment.
            unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let eq = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
                let any = |a: u8, b: u8| _mm_or_si128(eq(a), eq(b));
                let bits = |m: __m128i| u64::from(_mm_movemask_epi8(m) as u16) << (16 * k);
                c.quotes |= bits(eq(b'"'));
                c.backslashes |= bits(eq(b'\\'));
                c.separators |= bits(any(b':', b','));
                c.brackets |= bits(_mm_or_si128(any(b'[', b']'), any(b'{', b'}')));
            }
        }
        c
    }
}

/// Bit i set where an odd number of bits up to and including i are.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// The key an array at `i` is the value of: `"key"` and `:` right before it. `None` when
/// there is none, or when the key holds a backslash (no list of a Pod does): charged as the
/// worst case.
fn key_before(body: &[u8], i: usize) -> Option<&[u8]> {
    let before = body[..i].trim_ascii_end().strip_suffix(b":")?;
    let before = before.trim_ascii_end().strip_suffix(b"\"")?;
    let start = memchr::memrchr(b'"', before)?;
    let key = &before[start + 1..];
    (!key.contains(&b'\\') && before[..start].last() != Some(&b'\\')).then_some(key)
}
